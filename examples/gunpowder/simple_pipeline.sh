#!/usr/bin/env bash
# gunpowder's "Simple pipeline" tutorial as chunkflow command lines, on a bundled 2D image: one
# section (100 x 200 voxels) of the FIB-SEM training volume in data/gala_fibsem, with its
# ground truth. Each step names the gunpowder nodes it stands for.
# Usage: examples/gunpowder/simple_pipeline.sh [OUTPUT_DIR]   (default: simple-pipeline)
# BATCHES (default 5) sets how many random batches the augmentation steps write.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-simple-pipeline}
DATA=data/gala_fibsem
rm -rf "$OUT"
mkdir -p "$OUT/fixed" "$OUT/random" "$OUT/augmented" "$OUT/with-gt"

echo "== the sample: a 2D image and its ground truth in one zarr store (ZarrSource)"
# a 2D image is one z section (here section 25); the ground truth covers less, 8 and 16 voxels
# in from the image's edge
chunkflow \
  read-h5 -f "$DATA/train-image.h5" -t 25 0 0 -s 1 100 200 -o raw \
  read-h5 -f "$DATA/train-gt.lzf.h5" -t 25 8 16 -s 1 84 168 -e uint32 -o gt \
  save-zarr -i raw -f "$OUT/sample.zarr" -d raw \
  save-zarr -i gt -f "$OUT/sample.zarr" -d gt

echo "== a batch at a fixed place (BatchRequest with a Roi)"
chunkflow load-zarr -f "$OUT/sample.zarr" -d raw -t 25 50 150 -s 1 48 48 -o raw \
  write-h5 -i raw -f "$OUT/fixed/"

echo "== batches at random places (RandomLocation), mirrored and transposed (SimpleAugment)"
chunkflow random-location -f "$OUT/sample.zarr" -d raw -s 1 48 48 -n "${BATCHES:-5}" --seed 1 \
  load-zarr -f "$OUT/sample.zarr" -d raw -o raw \
  simple-augment -i raw --mirror-axes 1,2 --seed 2 \
  write-h5 -i raw -f "$OUT/random/"

echo "== elastic, intensity and noise augmentation (ElasticAugment, Normalize,"
echo "   IntensityAugment, NoiseAugment); one file per batch (Stack)"
# elastic-augment asks for the context its warp needs: the reader reads it around each box,
# and random-location keeps that context inside the image
chunkflow random-location -f "$OUT/sample.zarr" -d raw -s 1 48 48 -n "${BATCHES:-5}" --seed 1 \
  load-zarr -f "$OUT/sample.zarr" -d raw -o raw \
  simple-augment -i raw --mirror-axes 1,2 --seed 2 \
  elastic-augment -i raw --control-point-spacing 1 16 16 --jitter-sigma 0 2 2 \
    --rotation-interval 0 90 --seed 3 \
  normalize -i raw -o raw \
  intensity-augment -i raw -o raw --scale 0.9 1.1 --shift -0.1 0.1 --seed 4 \
  noise-augment -i raw -o raw --seed 5 \
  write-h5 -i raw -f "$OUT/augmented/"

echo "== raw and ground truth together; the ground truth is offset (MergeProvider)"
# the two arrays cover different boxes: they combine by world coordinates, and the random
# boxes are drawn inside the ground truth
chunkflow random-location -f "$OUT/sample.zarr" -d gt -s 1 48 48 -n "${BATCHES:-5}" --seed 1 \
  load-zarr -f "$OUT/sample.zarr" -d raw -o raw \
  load-zarr -f "$OUT/sample.zarr" -d gt -o gt \
  simple-augment -i raw,gt --mirror-axes 1,2 --seed 2 \
  elastic-augment -i raw,gt --control-point-spacing 1 16 16 --jitter-sigma 0 2 2 \
    --rotation-interval 0 90 --seed 3 \
  write-h5 -i raw -f "$OUT/with-gt/" -d raw write-h5 -i gt -f "$OUT/with-gt/" -d gt

echo "== predict with an (untrained) 2D U-Net over the whole image (Predict, Scan)"
# inference scans the image patch by patch and blends the overlapping patches
chunkflow load-zarr -f "$OUT/sample.zarr" -d raw -o raw \
  normalize -i raw -o raw \
  inference -i raw -o prediction --framework pytorch -m examples/gunpowder/unet2d.py \
    --patch-size 1 48 48 --patch-overlap 0 16 16 --output-crop-margin 0 0 0 \
    --num-output-channels 1 --device cpu \
  save-zarr -i prediction -f "$OUT/sample.zarr" -d prediction

echo "Results in $OUT"
