#!/usr/bin/env bash
# Many chunkflow workers on one big machine, sharing a local task queue (a folder):
#   1. generate-tasks puts the tasks into the queue (once; an existing queue is resumed),
#   2. NUM_WORKERS identical workers each lease one task at a time (fetch-task), run the chain
#      and delete the task (delete-task-in-queue), until the queue stays empty.
# Workers run under GNU parallel when it is installed, else in a bash loop (`&` and `wait`).
# The GNU parallel line at the heart of it, for your own chain:
#   parallel -N0 -j 8 --delay 1 --halt now,fail=1 chunkflow fetch-task -q file:///scratch/queue -v 300 -r 3 -w 2 cutout -v file:///scratch/image save -v file:///scratch/copy delete-task-in-queue ::: $(seq 8)
# (-N0: each of the 8 arguments after ::: starts one worker but is not appended to the command.)
#
# Usage, from anywhere, with chunkflow on PATH (e.g. source .venv/bin/activate):
#   distributed/parallel/run.sh [NUM_WORKERS]          (default 2)
# With no settings, the whole pipeline runs on the bundled data: data/gala_fibsem/test-image.h5
# -> precomputed volume -> 8 tasks in a local queue -> affinities predicted by the bundled U-Net
# (examples/inference) -> the OUTPUT_VOLUME precomputed volume. Settings (environment):
#   WORK_DIR        queue and demo volumes [default: a new temporary folder]
#   INPUT_VOLUME    [default: $WORK_DIR/image, made from the bundled HDF5 file]
#   OUTPUT_VOLUME   [default: $WORK_DIR/affs]; its info must exist, except for the demo volume
#                   (create it once with `chunkflow create-info`, see distributed/README.md)
#   QUEUE           [default: file://$WORK_DIR/queue]; set it to a folder on a shared filesystem
#                   and start this script on several machines to share one queue
#   CHUNK_SIZE      task size "Z Y X" [default: 25 50 100]
#   MIP [0], VISIBILITY_TIMEOUT [300], RETRIES [3], WAIT [2]: a worker ends once it found nothing
#                   to fetch for (RETRIES + 1) x WAIT seconds with no task leased elsewhere
#   CONVNET_MODEL, CONVNET_WEIGHT_PATH, PATCH_SIZE ["16 48 48"], PATCH_OVERLAP ["4 16 16"],
#   THREADS         torch threads per worker [default: CPU cores / NUM_WORKERS]
#   USE_PARALLEL=0  the bash loop even when GNU parallel is installed
# A failing task is retried twice, then moved to the queue's dead/ folder with its error, and
# the workers go on. The script exits 0 only when the queue is drained with no dead letter
# (`chunkflow queue-status --check`); otherwise fix the cause, move the dead letters back (or
# queue-purge and regenerate) and rerun with the same WORK_DIR (or QUEUE).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
num_workers=${1:-2}
WORK_DIR=${WORK_DIR:-$(mktemp -d)}
mkdir -p "$WORK_DIR"
WORK_DIR=$(cd "$WORK_DIR" && pwd)

export MIP=${MIP:-0}
export QUEUE=${QUEUE:-file://$WORK_DIR/queue}
export VISIBILITY_TIMEOUT=${VISIBILITY_TIMEOUT:-300}
export RETRIES=${RETRIES:-3}
export WAIT=${WAIT:-2}
export OUTPUT_VOLUME=${OUTPUT_VOLUME:-file://$WORK_DIR/affs}
export CONVNET_MODEL=${CONVNET_MODEL:-$repo/examples/inference/unet.py}
export CONVNET_WEIGHT_PATH=${CONVNET_WEIGHT_PATH:-$repo/examples/inference/unet.pt}
export PATCH_SIZE=${PATCH_SIZE:-16 48 48}
export PATCH_OVERLAP=${PATCH_OVERLAP:-4 16 16}
export THREADS=${THREADS:-$(( $(nproc) / num_workers > 0 ? $(nproc) / num_workers : 1 ))}
read -r -a chunk_size <<< "${CHUNK_SIZE:-25 50 100}"

count_tasks() { # tasks waiting or leased in a local queue
    find "$1/pending" "$1/leased" -type f | wc -l
}

local_path() { # the folder of a local volume or queue, or nothing for a cloud path
    case $1 in
        file://*) echo "${1#file://}" ;;
        *://*) ;;
        *) echo "$1" ;;
    esac
}

if [ -z "${INPUT_VOLUME:-}" ]; then
    export INPUT_VOLUME=file://$WORK_DIR/image
    if [ ! -e "$WORK_DIR/image/info" ]; then
        echo "== the bundled test volume as a precomputed volume: $INPUT_VOLUME"
        chunkflow read-h5 -f "$repo/data/gala_fibsem/test-image.h5" --voxel-size 10 10 10 \
            save -v "$INPUT_VOLUME" -b 25 50 50
    fi
    output=$(local_path "$OUTPUT_VOLUME")
    if [ -n "$output" ] && [ ! -e "$output/info" ]; then
        # the whole region (50 x 100 x 200 voxels); blocks of a task size, so no two workers
        # write the same block
        chunkflow create-info -v "$OUTPUT_VOLUME" -c 3 -t affinity_map -d float32 \
            -s 10 10 10 -z 50 100 200 -b "${chunk_size[@]}"
    fi
fi
export INPUT_VOLUME
output=$(local_path "$OUTPUT_VOLUME")
if [ -n "$output" ] && [ ! -e "$output/info" ]; then
    echo "run.sh: $OUTPUT_VOLUME has no info: create it first (chunkflow create-info)" >&2
    exit 2
fi

queue_dir=$(local_path "$QUEUE")
if [ -n "$queue_dir" ] && [ -d "$queue_dir/pending" ]; then
    echo "== resuming the queue $QUEUE: $(count_tasks "$queue_dir") tasks left"
else
    echo "== tasks into the queue $QUEUE"
    chunkflow generate-tasks -v "$INPUT_VOLUME" -c "${chunk_size[@]}" --respect-stop -q "$QUEUE"
fi

worker() {
    # ====================== WORKER CHAIN: edit here ======================
    exec chunkflow --mip "$MIP" \
        fetch-task -q "$QUEUE" -v "$VISIBILITY_TIMEOUT" -r "$RETRIES" -w "$WAIT" \
        cutout -v "$INPUT_VOLUME" -o image \
        inference -i image -o affs --framework pytorch \
            --convnet-model "$CONVNET_MODEL" --convnet-weight-path "$CONVNET_WEIGHT_PATH" \
            --input-patch-size $PATCH_SIZE --output-patch-overlap $PATCH_OVERLAP \
            --num-output-channels 3 --batch-size 4 --mask-output-chunk --num-threads "$THREADS" \
        save -i affs -v "$OUTPUT_VOLUME" \
        delete-task-in-queue
    # =====================================================================
}

status=0
if [ "${USE_PARALLEL:-1}" != 0 ] && command -v parallel > /dev/null; then
    echo "== $num_workers workers (GNU parallel, $THREADS threads each)"
    export -f worker
    SHELL=$(command -v bash) parallel -N0 -j "$num_workers" --delay 1 --halt now,fail=1 \
        --line-buffer --tagstring "worker {#}:" worker ::: $(seq "$num_workers") || status=$?
else
    echo "== $num_workers workers (bash loop, $THREADS threads each)"
    pids=()
    trap 'kill "${pids[@]}" 2> /dev/null; exit 130' INT TERM
    for _ in $(seq "$num_workers"); do
        worker &
        pids+=($!)
        sleep 1
    done
    for _ in "${pids[@]}"; do
        wait -n || {
            status=$?
            echo "run.sh: a worker failed (exit $status): stopping the others" >&2
            kill "${pids[@]}" 2> /dev/null || true
            wait || true
            break
        }
    done
fi

chunkflow queue-status -q "$QUEUE" --check || status=$?
if [ "$status" -ne 0 ]; then
    echo "run.sh: workers failed; rerun with WORK_DIR=$WORK_DIR (or QUEUE=$QUEUE) to finish" >&2
    exit "$status"
fi
echo "== done: $OUTPUT_VOLUME"
