#!/usr/bin/env bash
# A Slurm job array over a task file: array task i takes task i of the file (or tasks
# [i*TASKS_PER_JOB, (i+1)*TASKS_PER_JOB)), cuts it out of INPUT_VOLUME and saves it into
# OUTPUT_VOLUME. Each finished task leaves an empty marker {DONE_PREFIX}{bbox}; a resubmitted
# array skips those tasks, so resubmitting only redoes what failed.
#
# Once, before submitting (from a login node):
#   1. Write the tasks to a file on the shared filesystem; the log says "wrote N tasks":
#        chunkflow generate-tasks -v gs://bucket/image -c 64 512 512 --respect-stop -f tasks.npy
#   2. Create the output volume once, covering the whole region (save would otherwise create it
#      from the first chunk it writes, with that chunk's bounds), e.g.
#        chunkflow create-info -v gs://bucket/copy -d uint8 -z 1024 8192 8192 -o 0 0 0 -s 40 8 8 -b 64 512 512
#      The task size must be a multiple of the block size (-b) so workers never share a block.
#   3. Submit one array task per task (or per TASKS_PER_JOB tasks), at most 50 running at once:
#        N=$(python -c "import numpy; print(len(numpy.load('tasks.npy')))")
#        sbatch --array=0-$((N - 1))%50 \
#          --export=ALL,TASK_FILE=$PWD/tasks.npy,INPUT_VOLUME=gs://bucket/image,OUTPUT_VOLUME=gs://bucket/copy \
#          distributed/slurm/chunkflow-array.sh
# Settings (environment): TASK_FILE, INPUT_VOLUME, OUTPUT_VOLUME (required); MIP (default 0);
# DONE_PREFIX (default $OUTPUT_VOLUME/done/); TASKS_PER_JOB (default 1; for grids larger than
# the cluster's MaxArraySize: submit --array=0-$(( (N + K - 1) / K - 1 )) with TASKS_PER_JOB=K).
# Without Slurm, run one array task by hand: SLURM_ARRAY_TASK_ID=3 bash chunkflow-array.sh
#
#SBATCH --job-name=chunkflow
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=01:00:00
#SBATCH --output=chunkflow-%A_%a.log
##SBATCH --gres=gpu:1            # for chains that run a model on the GPU (inference)
set -euo pipefail

# Load the environment that provides `chunkflow` here, e.g.
#   source /path/to/chunkflow/.venv/bin/activate
# or run it from the image: apptainer exec --nv docker://chunkflow:cuda chunkflow --help

: "${TASK_FILE:?set TASK_FILE (generate-tasks -f tasks.npy)}"
: "${INPUT_VOLUME:?set INPUT_VOLUME}"
: "${OUTPUT_VOLUME:?set OUTPUT_VOLUME}"
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=...}"
mip=${MIP:-0}
done_prefix=${DONE_PREFIX:-${OUTPUT_VOLUME%/}/done/}
per_job=${TASKS_PER_JOB:-1}

# Local markers need their folder (cloud paths need none).
if [[ $done_prefix != *://* || $done_prefix == file://* ]]; then
    mkdir -p "${done_prefix#file://}"
fi

# ====================== WORKER CHAIN: edit here ======================
chunkflow --mip "$mip" \
    fetch-task-from-file -f "$TASK_FILE" -i "$SLURM_ARRAY_TASK_ID" -n "$per_job" \
    skip-task-by-file -p "$done_prefix" -m exist \
    cutout -v "$INPUT_VOLUME" \
    save -v "$OUTPUT_VOLUME" \
    mark-complete -p "$done_prefix"
# =====================================================================
