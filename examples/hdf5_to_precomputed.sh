#!/usr/bin/env bash
# HDF5 -> Neuroglancer precomputed volume, then a sub-volume cut back out of it and written as
# HDF5 and TIFF.
#
# Usage, from the repository root with chunkflow on PATH:
#   bash examples/hdf5_to_precomputed.sh [INPUT.h5] [OUTPUT_DIR]
# INPUT.h5 defaults to data/gala_fibsem/test-image.h5 (50 x 100 x 200 voxels, uint8);
# OUTPUT_DIR defaults to a fresh temporary folder.
set -euo pipefail

input=${1:-data/gala_fibsem/test-image.h5}
outdir=${2:-$(mktemp -d)}
mkdir -p "$outdir"

# 1. Read the whole HDF5 dataset and write it as a precomputed volume. The volume's info (size,
#    offset, voxel size, dtype) is created from the chunk; storage blocks are 32 x 64 x 64 (z y x).
chunkflow read-h5 -f "$input" -o image \
    save -i image -v "$outdir/image" -b 32 64 64

# 2. Cut out 32 x 64 x 64 voxels starting at z=10, y=20, x=30 and write them as HDF5 and TIFF
#    (both keep the voxel offset, so read-h5/read-tif put the chunk back at the same place).
chunkflow create-bbox -s 10 20 30 -z 32 64 64 \
    cutout -v "$outdir/image" -o sub \
    write-h5 -i sub -f "$outdir/sub.h5" \
    write-tif -i sub -f "$outdir/sub.tif"

echo "outputs in $outdir:"
ls "$outdir"
