#!/usr/bin/env bash
# gunpowder's "Boundary prediction for instance segmentation" tutorial as chunkflow command
# lines, on the bundled FIB-SEM volumes (data/gala_fibsem: train and test, 50 x 100 x 200,
# about 10 nm isotropic) with the bundled 3D U-Net model file (examples/inference/unet.py):
#   1. train it to predict affinities: random locations, elastic, mirror/transpose and
#      intensity augmentation, grown boundaries, affinities in gunpowder's sign, balanced
#      loss weights, snapshots (Hdf5Source, Normalize, RandomLocation, ElasticAugment,
#      SimpleAugment, IntensityAugment, GrowBoundary, AddAffinities, BalanceLabels, Train,
#      Snapshot, PrintProfilingStats),
#   2. predict the test volume block by block into a zarr array (Hdf5Source, Normalize,
#      Predict, ZarrWrite, Scan): each block is read with the context the network needs,
#   3. agglomerate the affinities and evaluate the segmentation against the ground truth,
#   4. with NEUROGLANCER_SECONDS set, show image and affinities in neuroglancer for that long.
# Usage: examples/gunpowder/boundary_prediction.sh [OUTPUT_DIR]   (default: boundary-prediction)
# ITERATIONS (default 300) sets the length of the training, PATCH_SIZE (default "16 48 48",
# each size divisible by 4) the network's patch, REGION_SIZE (default "50 100 200", the whole
# volume) and BLOCK_SIZE (default "25 50 100") the region predicted and its blocks.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-boundary-prediction}
PATCH_SIZE=${PATCH_SIZE:-16 48 48}
REGION_SIZE=${REGION_SIZE:-50 100 200}
BLOCK_SIZE=${BLOCK_SIZE:-25 50 100}
DATA=data/gala_fibsem
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. training (${ITERATIONS:-300} iterations)"
# the neighbourhood is gunpowder's, [[-1,0,0],[0,-1,0],[0,0,-1]], with its sign. The
# tutorial's elastic control points [4,40,40] and jitter [0,2,2] are for CREMI's 40x4x4 nm
# voxels; on these isotropic voxels they would slide every section against the next, so the
# spacing is left to its default (40 in-plane voxels, the same distance in world units along
# z: 4 40 40 on CREMI, 40 40 40 here) and the jitter is the same along every axis.
chunkflow \
  read-h5 -f "$DATA/train-image.h5" -o image \
  read-h5 -f "$DATA/train-gt.lzf.h5" -e uint32 -o labels \
  train -m examples/inference/unet.py -c "$OUT/train" --patch-size $PATCH_SIZE --batch-size 2 \
    --iterations "${ITERATIONS:-300}" --num-workers 0 --seed 0 \
    --elastic-augment --jitter-sigma 2 2 2 \
    --rotation-interval 0 1.5708 --rotation-unit radians \
    --prob-slip 0.05 --prob-shift 0.05 --max-misalign 5 \
    --transpose-only 1,2 \
    --intensity-scale 0.9 1.1 --intensity-shift -0.1 0.1 --intensity-z-section-wise \
    --grow-boundary 1 --grow-boundary-only-xy \
    --neighborhood '-1,0,0;0,-1,0;0,0,-1' --neighborhood-sign gunpowder \
    --snapshot-interval "${ITERATIONS:-300}" --profile-interval "${ITERATIONS:-300}"

echo "== 2. blockwise prediction into zarr"
# the output array first, then one task per block (Scan): inference asks for the context its
# patches need (--read-context: the overlap they crop), so the reader reads each block with a
# margin (daisy's read box) and the affinities cover the block exactly (its write box); at the
# volume's edge the image is mirrored in
chunkflow create-chunk -s $REGION_SIZE -c 3 -t float32 --pattern zero --layer-type affinity_map \
  -o affs save-zarr -i affs -f "$OUT/prediction.zarr" -d affs
chunkflow generate-tasks --roi-start 0 0 0 --roi-stop $REGION_SIZE -c $BLOCK_SIZE \
  read-h5 -f "$DATA/test-image.h5" -o image \
  inference -i image -o affs --framework pytorch -m examples/inference/unet.py \
    -w "$OUT/train/model.pt" \
    --patch-size $PATCH_SIZE --patch-overlap 4 8 8 --read-context --pad reflect \
    --num-output-channels 3 --device cpu \
  save-zarr -i affs -f "$OUT/prediction.zarr" -d affs

echo "== 3. segmentation and evaluation"
chunkflow load-zarr -f "$OUT/prediction.zarr" -d affs -o affs \
  agglomerate -i affs -o seg --threshold 0.7 \
  read-h5 -f "$DATA/test-gt.lzf.h5" -e uint32 -t 0 0 0 -s $REGION_SIZE -o gt \
  evaluate-segmentation -s seg -g gt -o "$OUT/evaluation.json" \
  save-zarr -i seg -f "$OUT/prediction.zarr" -d seg

if [ -n "${NEUROGLANCER_SECONDS:-}" ]; then
  echo "== 4. neuroglancer (for $NEUROGLANCER_SECONDS s)"
  chunkflow read-h5 -f "$DATA/test-image.h5" -o image \
    load-zarr -f "$OUT/prediction.zarr" -d affs -o affs \
    load-zarr -f "$OUT/prediction.zarr" -d seg -o seg \
    neuroglancer -i image,affs,seg --serve-seconds "$NEUROGLANCER_SECONDS"
fi
echo "Results in $OUT"
