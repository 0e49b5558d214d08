#!/usr/bin/env bash
# Segment a whole precomputed volume on one machine: every phase of a segmentation job runs as
# tasks in a local queue, worked by WORKERS chunkflow processes. The same commands run on many
# machines with SQS, Kubernetes or Slurm (README.md, "Whole-volume segmentation").
#
# Usage: examples/segment_volume.sh MODE INPUT OUTPUT CZ CY CX WORKERS [THRESHOLD]
#   MODE        agglomerate: INPUT holds 3-channel float32 affinities (the agglomerate
#                 convention); THRESHOLD is the merge threshold (default 0.7).
#               cc: INPUT holds labels or a uint8 volume; nonzero voxels are foreground and
#                 distinct ids stay distinct; THRESHOLD, if given, makes foreground of the
#                 voxels above it (needed for a float map).
#   INPUT       precomputed volume (file://, gs://, s3:// or a local folder)
#   OUTPUT      the new precomputed uint64 segmentation; it must not exist yet
#   CZ CY CX    size of a task's chunk (z y x)
#   WORKERS     worker processes per phase
# Environment:
#   SEGMENT_OPTIONS      more segment-setup options, e.g. "--margin 4 8 8" or "--connectivity 26"
#   VISIBILITY_TIMEOUT   seconds after which a task of a worker that died goes to another worker
#                        (default 30; a live worker's heartbeat keeps its task however long)
# Exit status 0 means every task of every phase is done (segment-status says so at the end).
set -euo pipefail
if [ $# -lt 7 ]; then
    sed -n '2,19p' "$0" >&2
    exit 2
fi
mode=$1 input=$2 output=$3 workers=$7 threshold=${8:-}
chunk_size=("$4" "$5" "$6")
visibility_timeout=${VISIBILITY_TIMEOUT:-30}
queues=$(mktemp -d)
trap 'rm -rf "$queues"' EXIT

# shellcheck disable=SC2086  # SEGMENT_OPTIONS is a list of options
chunkflow segment-setup --mode "$mode" -i "$input" -o "$output" -c "${chunk_size[@]}" \
    ${threshold:+--threshold "$threshold"} ${SEGMENT_OPTIONS:-}

run_phase() {  # all tasks of one phase, by $workers queue workers
    local phase=$1 queue="file://$queues/$1"
    chunkflow -q generate-tasks -v "$output" -c "${chunk_size[@]}" -q "$queue"
    # A worker waits for tasks leased by others before it stops: the task of a worker that
    # died comes back after the visibility timeout and is done by another. A task that keeps
    # failing is retried twice, then dead-lettered (queue-status names it and its error).
    local pids=() failed=0
    for _ in $(seq "$workers"); do
        chunkflow -q fetch-task -q "$queue" --visibility-timeout "$visibility_timeout" \
            --wait-seconds 1 "segment-$phase" -o "$output" delete-task-in-queue &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    if [ "$failed" = 1 ]; then
        chunkflow queue-status -q "$queue" >&2
    fi
    chunkflow -q segment-status -o "$output" --phase "$phase" >/dev/null 2>&1 || {
        chunkflow -q segment-status -o "$output" --phase "$phase"  # names what is missing, fails
        return 1
    }
    echo "segment-$phase: all tasks done"
}

run_phase fragments
run_phase edges
chunkflow -q segment-merge -o "$output"
run_phase relabel
chunkflow -q segment-status -o "$output"
