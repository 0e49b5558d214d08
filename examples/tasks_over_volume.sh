#!/usr/bin/env bash
# Cut a precomputed volume into a grid of tasks and process each one: cut it out and write it
# to OUTPUT_DIR/h5/{bbox}.h5. Each finished task leaves an empty marker OUTPUT_DIR/done/{bbox};
# skip-task-by-file skips tasks that have one, so a rerun (or a restarted worker) only does
# what is left. The script runs the chain twice to show that: the second run skips every task.
#
# Usage, from the repository root with chunkflow on PATH:
#   bash examples/tasks_over_volume.sh [VOLUME] [OUTPUT_DIR]
# VOLUME (a local folder, file://, gs:// or s3:// path) defaults to a precomputed copy of
# data/gala_fibsem/test-image.h5 made in OUTPUT_DIR; OUTPUT_DIR defaults to a fresh temporary
# folder. CHUNK_SIZE="Z Y X" sets the task size (default 25 50 100: 8 tasks over the default).
set -euo pipefail

outdir=${2:-$(mktemp -d)}
mkdir -p "$outdir/h5" "$outdir/done"    # write-h5 and mark-complete need existing folders
volume=${1:-$outdir/image}
read -r -a chunk_size <<< "${CHUNK_SIZE:-25 50 100}"

if [ -z "${1:-}" ] && [ ! -e "$volume/info" ]; then
    chunkflow read-h5 -f data/gala_fibsem/test-image.h5 save -v "$volume"
fi

process() {
    # --respect-stop clips the last tasks at the volume's end instead of reading past it.
    chunkflow generate-tasks -v "$volume" -c "${chunk_size[@]}" --respect-stop \
        skip-task-by-file -p "$outdir/done/" -m exist \
        cutout -v "$volume" \
        write-h5 -i chunk -f "$outdir/h5/" \
        mark-complete -p "$outdir/done/"
}

echo "== first run: every task is processed"
process
echo "== second run: every task is skipped"
process

echo "$(ls "$outdir/h5" | wc -l) files in $outdir/h5, $(ls "$outdir/done" | wc -l) markers in $outdir/done"
