#!/usr/bin/env bash
# chunkflow as a Slurm job array: array task i runs task i of the grid that generate-tasks cuts
# the input volume into (cutout from INPUT_VOLUME -> save into OUTPUT_VOLUME). Each finished
# task leaves an empty marker {DONE_PREFIX}{bbox}; a resubmitted array skips those tasks.
#
# Before submitting:
#   1. Count the tasks (the log says "generate-tasks: N tasks ..."):
#        chunkflow --dry-run generate-tasks -v "$INPUT_VOLUME" -c 64 512 512 --respect-stop
#   2. Create the output volume once, covering the whole region (save would otherwise create it
#      from the first chunk it writes, with that chunk's bounds), e.g.
#        chunkflow create-info -v "$OUTPUT_VOLUME" -d uint8 -z Z Y X -o Z0 Y0 X0 -s 8 8 8 -b 64 64 64
#      The task size must be a multiple of the block size (-b) so workers never share a block.
# Submit, with --array=0-(N-1) and the settings as environment variables:
#   sbatch --array=0-99%20 \
#     --export=ALL,INPUT_VOLUME=gs://bucket/image,OUTPUT_VOLUME=gs://bucket/copy,CHUNK_SIZE="64 512 512" \
#     distributed/slurm/chunkflow-array.sh
# Settings: INPUT_VOLUME, OUTPUT_VOLUME (required); CHUNK_SIZE="Z Y X" (default 64 512 512);
# MIP (default 0); DONE_PREFIX (default $OUTPUT_VOLUME/done/); TASKS_PER_JOB (default 1: array
# task i runs tasks [i*TASKS_PER_JOB, (i+1)*TASKS_PER_JOB), for grids larger than MaxArraySize).
#
#SBATCH --job-name=chunkflow
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=01:00:00
#SBATCH --output=chunkflow-%A_%a.log
##SBATCH --gres=gpu:1            # for chains that run a model on the GPU
set -euo pipefail

# Load the environment that provides `chunkflow` here, e.g.
#   source /path/to/chunkflow/.venv/bin/activate
# or run it from the image: apptainer exec --nv docker://chunkflow:cuda chunkflow ...

: "${INPUT_VOLUME:?set INPUT_VOLUME}"
: "${OUTPUT_VOLUME:?set OUTPUT_VOLUME}"
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=...}"
read -r -a chunk_size <<< "${CHUNK_SIZE:-64 512 512}"
mip=${MIP:-0}
done_prefix=${DONE_PREFIX:-${OUTPUT_VOLUME%/}/done/}
per_job=${TASKS_PER_JOB:-1}
start=$((SLURM_ARRAY_TASK_ID * per_job))
stop=$((start + per_job))

# Local markers need their folder (cloud paths need none).
if [[ $done_prefix != *://* || $done_prefix == file://* ]]; then
    mkdir -p "${done_prefix#file://}"
fi

chunkflow --mip "$mip" \
    generate-tasks -v "$INPUT_VOLUME" -c "${chunk_size[@]}" --respect-stop \
        --task-index-start "$start" --task-index-stop "$stop" \
    skip-task-by-file -p "$done_prefix" -m exist \
    cutout -v "$INPUT_VOLUME" \
    save -v "$OUTPUT_VOLUME" \
    mark-complete -p "$done_prefix"
