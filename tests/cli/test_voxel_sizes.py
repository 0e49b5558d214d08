"""Every operator that combines chunks, or a chunk and a volume, refuses different voxel sizes
and boxes that do not line up, with one line naming the operator, both and their voxel sizes."""

import os

import numpy as np
import pytest

from tests.conftest import error_line

A = "--voxel-size 4 4 4"
B = "--voxel-size 8 8 8"
CHUNK = "create-chunk -s 8 16 16"
VOLUME = "create-info -z 8 16 16 -b 8 16 16 -s 8 8 8"


def _files(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


# (setup line or None, line that must fail, operator, names in the error)
VOXEL_SIZES = [
    (
        None,
        f"{CHUNK} -t uint32 {A} -o seg {CHUNK} -t uint32 {B} -o gt "
        "evaluate-segmentation -s seg -g gt -o metrics.json",
        "evaluate-segmentation",
        ("'seg'", "'gt'"),
    ),
    (
        None,
        f"{CHUNK} -c 3 -t float32 {A} -o affs {CHUNK} -t uint64 {B} -o frags "
        "agglomerate -i affs -f frags -o seg write-h5 -i seg -f seg.h5",
        "agglomerate",
        ("'frags'", "'affs'"),
    ),
    (
        f"{VOLUME} -v file://mask",
        f"{CHUNK} {A} -o image mask -i image -v file://mask write-h5 -i image -f masked.h5",
        "mask",
        ("'image'", "the mask volume file://{tmp}/mask at mip 0"),
    ),
    (
        f"{VOLUME} -v file://vol",
        f"{CHUNK} {A} -o image save -i image -v file://vol",
        "save",
        ("'image'", "the volume file://{tmp}/vol at mip 0"),
    ),
    (
        f"{VOLUME} -v file://vol",
        f"{CHUNK} {A} -o image downsample-upload -i image -v file://vol -f 1 2 2 --stop-mip 2",
        "downsample-upload",
        ("'image'", "the volume file://{tmp}/vol at mip 0"),
    ),
    (
        f"{CHUNK} {B} save-zarr -f sample.zarr -d raw",
        f"{CHUNK} {A} -o image save-zarr -i image -f sample.zarr -d raw",
        "save-zarr",
        ("'image'", "dataset sample.zarr/raw"),
    ),
    (
        None,
        f"{CHUNK} -t uint32 {A} -o labels {CHUNK} {B} -o known "
        "add-affinities -i labels -o affs --labels-mask known write-h5 -i affs -f affs.h5",
        "add-affinities",
        ("'known'", "'labels'"),
    ),
    (
        None,
        f"{CHUNK} -c 3 -t float32 {A} -o affs {CHUNK} {B} -o known "
        "balance-labels -i affs -o weights -m known write-h5 -i weights -f w.h5",
        "balance-labels",
        ("'known'", "'affs'"),
    ),
    (
        None,
        f"{CHUNK} {A} -o image {CHUNK} -t uint32 {B} -o labels simple-augment -i image,labels",
        "simple-augment",
        ("'labels'", "'image'"),
    ),
    (
        None,
        f"{CHUNK} {A} -o image {CHUNK} -t uint32 {B} -o labels elastic-augment -i image,labels",
        "elastic-augment",
        ("'labels'", "'image'"),
    ),
    (
        None,
        f"{CHUNK} {A} -o image {CHUNK} -t uint32 {B} -o seg view -i image -s seg",
        "view",
        ("'seg'", "'image'"),
    ),
    (
        f"{VOLUME} -v file://seg -t segmentation -d uint32",
        f"{CHUNK} -t uint32 {A} -o seg mesh -i seg -o file://seg",
        "mesh",
        ("'seg'", "the volume file://{tmp}/seg at mip 0"),
    ),
    (
        f"{VOLUME} -v file://seg -t segmentation -d uint32",
        f"{CHUNK} -t uint32 {A} -o seg skeletonize -i seg -o file://seg",
        "skeletonize",
        ("'seg'", "output volume"),
    ),
]


@pytest.mark.parametrize(
    "setup, line, operator, names", VOXEL_SIZES, ids=[case[2] for case in VOXEL_SIZES]
)
def test_every_multi_chunk_operator_refuses_other_voxel_sizes(
    run_cli, tmp_path, setup, line, operator, names
):
    if setup:
        run_cli(setup)
    before = {path: (tmp_path / path).read_bytes() for path in _files(tmp_path)}
    error = error_line(run_cli(line, expect=1))
    assert error.startswith(f"chunkflow: error: {operator} "), error
    assert "have different voxel sizes" in error
    assert "voxel size (4, 4, 4)" in error and "voxel size (8, 8, 8)" in error
    for name in names:
        assert name.format(tmp=tmp_path) in error, (name, error)
    # nothing was written or changed
    assert {path: (tmp_path / path).read_bytes() for path in _files(tmp_path)} == before


BOXES = [
    (
        None,
        f"{CHUNK} -t uint32 -o seg {CHUNK} -t uint32 --voxel-offset 0 0 1 -o gt "
        "evaluate-segmentation -s seg -g gt",
        "evaluate-segmentation",
        "chunk 'seg' (voxel size (1, 1, 1), box 0-8_0-16_0-16) and chunk 'gt' (voxel size "
        "(1, 1, 1), box 0-8_0-16_1-17) do not cover the same voxels",
    ),
    (
        None,
        f"{CHUNK} -c 3 -t float32 -o affs {CHUNK} -t uint64 --voxel-offset 8 0 0 -o frags "
        "agglomerate -i affs -f frags -o seg",
        "agglomerate",
        "chunk 'frags' (voxel size (1, 1, 1), box 8-16_0-16_0-16) and chunk 'affs' (voxel size "
        "(1, 1, 1), box 0-8_0-16_0-16) do not cover the same voxels",
    ),
    (
        None,
        f"{CHUNK} -o image {CHUNK} -t uint32 --voxel-offset 8 0 0 -o seg view -i image -s seg",
        "view",
        "chunk 'seg' (voxel size (1, 1, 1), box 8-16_0-16_0-16) and chunk 'image' (voxel size "
        "(1, 1, 1), box 0-8_0-16_0-16) do not overlap",
    ),
    (
        "create-info -z 8 16 16 -b 8 16 16 -v file://vol",
        f"{CHUNK} --voxel-offset 0 8 0 -o image save -i image -v file://vol",
        "save",
        "chunk 'image' (voxel size (1, 1, 1), box 0-8_8-24_0-16) is outside the volume "
        "file://{tmp}/vol at mip 0 (voxel size (1, 1, 1), box 0-8_0-16_0-16)",
    ),
]


@pytest.mark.parametrize("setup, line, operator, message", BOXES, ids=[c[2] for c in BOXES])
def test_boxes_that_do_not_line_up_are_refused(run_cli, tmp_path, setup, line, operator, message):
    if setup:
        run_cli(setup)
    error = error_line(run_cli(line, expect=1))
    assert error.startswith(f"chunkflow: error: {operator} "), error
    assert error.endswith(message.format(tmp=tmp_path)), error


def test_matching_voxel_sizes_still_combine(run_cli, tmp_path):
    run_cli(f"{VOLUME} -v file://vol")
    run_cli(f"{CHUNK} {B} --pattern random --seed 1 save -v file://vol")
    run_cli(f"{CHUNK} -t uint32 {B} -o seg copy-var -f seg -t gt evaluate-segmentation -o m.json")
    assert (tmp_path / "m.json").exists()
    from chunkflow.geometry import BoundingBox
    from chunkflow.io.precomputed import read_precomputed

    back = read_precomputed("file://vol", BoundingBox((0, 0, 0), (8, 16, 16)))
    assert back.voxel_size == (8, 8, 8) and np.asarray(back).any()
