#!/usr/bin/env bash
# The main end-to-end job (`make demo`): real FIB-SEM EM data with ground truth
# (data/gala_fibsem, 50x100x200 voxels, about 10 nm isotropic) goes through chunkflow:
#   1. read the raw image and the ground-truth labels from HDF5, write both as
#      Neuroglancer precomputed volumes (labels with compressed_segmentation),
#   2. cut the volume into 8 tasks and process them one by one: cut out image and
#      labels, write one HDF5 file per task, mark each task complete,
#   3. cut out a sub-volume again and write it as HDF5, TIFF and zarr,
#   4. predict affinities with the bundled 3D U-Net (examples/inference), agglomerate them
#      into a segmentation, evaluate it against the ground truth, and mesh it for neuroglancer,
#   5. train the same U-Net from scratch for a short while with `train` on the training volume,
#      and segment and evaluate the test volume with it (about 2 minutes on 2 cores),
#   6. segment the affinities of step 4 as a whole-volume job in 8 chunks with 2 queue workers
#      (examples/segment_volume.sh), and evaluate it: the same segmentation as step 4's.
# Usage: examples/demo.sh [OUTPUT_DIR]   (default: demo-output)
# DEMO_TRAIN_ITERATIONS (default 300) sets the length of step 5.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo-output}
DATA=data/gala_fibsem
rm -rf "$OUT"
mkdir -p "$OUT/tasks" "$OUT/done"

echo "== 1. HDF5 -> precomputed"
chunkflow \
  read-h5 -f "$DATA/test-image.h5" --voxel-size 10 10 10 -o image \
  read-h5 -f "$DATA/test-gt.lzf.h5" --voxel-size 10 10 10 --dtype uint32 -o gt \
  save -i image -v "file://$OUT/image" --block-size 25 50 50 \
  save -i gt -v "file://$OUT/gt" --block-size 25 50 50 -e compressed_segmentation

echo "== 2. 8 tasks over the volume, one HDF5 file per task"
chunkflow \
  generate-tasks -v "file://$OUT/image" --chunk-size 25 50 100 \
  skip-task-by-file -p "$OUT/done/" -m exist \
  cutout -v "file://$OUT/image" -o image \
  cutout -v "file://$OUT/gt" -o gt \
  write-h5 -i image -f "$OUT/tasks/image_" \
  write-h5 -i gt -f "$OUT/tasks/gt_" \
  mark-complete -p "$OUT/done/"

echo "== 3. cut out a sub-volume again: HDF5, TIFF and zarr"
chunkflow \
  cutout -v "file://$OUT/image" --start 10 20 40 --size 32 64 128 -o image \
  cutout -v "file://$OUT/gt" --start 10 20 40 --size 32 64 128 -o gt \
  write-h5 -i image -f "$OUT/cutout-image.h5" \
  write-tif -i gt -f "$OUT/cutout-gt.tif" \
  save-zarr -i image -f "$OUT/cutout.zarr" -d raw \
  save-zarr -i gt -f "$OUT/cutout.zarr" -d labels

echo "== 4. inference -> affinities -> agglomeration -> evaluation against the ground truth"
chunkflow \
  read-h5 -f "$DATA/test-image.h5" --voxel-size 10 10 10 -o image \
  inference -i image -o affs --framework pytorch \
    --convnet-model examples/inference/unet.py --convnet-weight-path examples/inference/unet.pt \
    --input-patch-size 16 64 64 --output-patch-overlap 4 16 16 --num-output-channels 3 \
    --batch-size 4 --mask-output-chunk \
  write-h5 -i affs -f "$OUT/affs.h5" \
  save -i affs -v "file://$OUT/affs" --block-size 25 50 50 \
  agglomerate -i affs -o seg --threshold 0.7 --aff-threshold-low 0.001 --aff-threshold-high 0.9999 \
  save -i seg -v "file://$OUT/seg" --block-size 25 50 50 -e compressed_segmentation \
  mesh -i seg -o "file://$OUT/seg" --dust-threshold 100 \
  mesh-manifest -v "file://$OUT/seg" \
  read-h5 -f "$DATA/test-gt.lzf.h5" --voxel-size 10 10 10 -o gt \
  evaluate-segmentation -s seg -g gt -o "$OUT/evaluation.json"

echo "== 5. train the U-Net for ${DEMO_TRAIN_ITERATIONS:-300} iterations, then segment with it"
chunkflow \
  read-h5 -f "$DATA/train-image.h5" -o image \
  read-h5 -f "$DATA/train-gt.lzf.h5" --dtype uint32 -o labels \
  train -m examples/inference/unet.py -c "$OUT/training" --patch-size 16 48 48 --batch-size 4 \
    --iterations "${DEMO_TRAIN_ITERATIONS:-300}" --num-workers 2 --seed 0
chunkflow \
  read-h5 -f "$DATA/test-image.h5" --voxel-size 10 10 10 -o image \
  inference -i image -o affs --framework pytorch \
    --convnet-model examples/inference/unet.py --convnet-weight-path "$OUT/training/model.pt" \
    --input-patch-size 16 64 64 --output-patch-overlap 4 16 16 --num-output-channels 3 \
    --batch-size 4 --mask-output-chunk \
  agglomerate -i affs -o seg --threshold 0.7 --aff-threshold-low 0.001 --aff-threshold-high 0.9999 \
  read-h5 -f "$DATA/test-gt.lzf.h5" --voxel-size 10 10 10 -o gt \
  evaluate-segmentation -s seg -g gt -o "$OUT/evaluation-trained.json"

echo "== 6. the affinities of step 4 as a whole-volume job: 8 chunks, 2 workers"
SEGMENT_OPTIONS="--aff-threshold-low 0.001" \
  bash examples/segment_volume.sh agglomerate "file://$OUT/affs" "file://$OUT/seg-volume" \
    25 50 100 2 0.7
chunkflow \
  cutout -v "file://$OUT/seg-volume" --start 0 0 0 --size 50 100 200 -o seg \
  cutout -v "file://$OUT/gt" --start 0 0 0 --size 50 100 200 -o gt \
  evaluate-segmentation -s seg -g gt -o "$OUT/evaluation-volume.json"

echo
echo "Results in $OUT/:"
echo "  image/, gt/             precomputed volumes (open with neuroglancer or cloud-volume)"
echo "  tasks/                  $(ls "$OUT/tasks" | wc -l) HDF5 files, one per task and layer"
echo "  done/                   $(ls "$OUT/done" | wc -l) completion markers (a rerun skips these tasks)"
echo "  cutout-image.h5, cutout-gt.tif, cutout.zarr   the 32x64x128 cutout at 10 20 40"
echo "  affs.h5, affs/, seg/    predicted affinities and their agglomeration, with meshes"
echo "  evaluation.json         Rand and VOI of seg against the ground truth (printed above)"
echo "  training/               checkpoints and model.pt of step 5; evaluation-trained.json its scores"
echo "  seg-volume/             step 6's whole-volume segmentation; evaluation-volume.json its scores"
