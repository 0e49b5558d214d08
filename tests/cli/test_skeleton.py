"""skeletonize and skeleton-merge through the real entry point, on the bundled gala data."""

import os

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.cli import skeleton as operators
from chunkflow.cli.framework import RunConfig
from chunkflow.task import Task
from tests.conftest import error_line, read_stack


@pytest.fixture
def seg_volume(run_cli, gala, tmp_path):
    """The gala ground truth as a uint32 segmentation volume, 10 nm voxels."""
    run_cli(
        "create-info -v seg --volume-size 50 100 200 -d uint32 -t segmentation -s 10 10 10 "
        f"read-h5 -f {gala}/test-gt.lzf.h5 -e uint32 -x 10 10 10 -o seg save -i seg -v seg"
    )
    return tmp_path / "seg"


def bounds(gt, label):
    zz, yy, xx = np.nonzero(gt == label)
    return (
        np.array([xx.min(), yy.min(), zz.min()]) * 10 - 10,
        np.array([xx.max(), yy.max(), zz.max()]) * 10 + 10,
    )


def check_gala_skeletons(vol, gala) -> None:
    """Skeletons of four gala labels, merged from two tasks split at z = 25, are one piece
    each, inside their label's bounds and reaching into both tasks."""
    gt = read_stack(gala / "test-gt.lzf.h5")
    for label in (21, 9, 1, 14):
        skeleton = vol.skeleton.get(label)
        low, high = bounds(gt, label)
        assert (skeleton.vertices >= low).all() and (skeleton.vertices <= high).all(), label
        z = skeleton.vertices[:, 2]  # cut at z = 25 voxels = 250 nm: reaches into both halves
        assert z.min() < 240 and z.max() > 260 and len(skeleton.components()) == 1, label


def test_two_tasks_then_merge(run_cli, gala, seg_volume):
    from cloudvolume import CloudVolume

    run_cli(
        "generate-tasks -v seg --chunk-size 26 100 200 --stride 25 100 200 --respect-stop "
        "cutout -v seg -o seg skeletonize -i seg -o seg"
    )
    names = set(os.listdir(seg_volume / "skeletons"))
    assert {"21:0-26_0-100_0-200", "21:25-50_0-100_0-200"} <= names
    result = run_cli("merge-skeletons -v seg")
    assert "45 skeletons merged" in result.err
    check_gala_skeletons(CloudVolume(f"file://{seg_volume}"), gala)


def test_ids_dust_and_the_volume_resolution(run_cli, gala, seg_volume):
    # the h5 chunk has voxel size 1 1 1, so the volume's 10 10 10 is used
    run_cli(f"read-h5 -f {gala}/test-gt.lzf.h5 -o seg skeletonize -i seg --ids 21,9 -o seg")
    fragments = sorted(n for n in os.listdir(seg_volume / "skeletons") if ":" in n)
    assert fragments == ["21:0-50_0-100_0-200", "9:0-50_0-100_0-200"]
    run_cli("skeleton-merge -v seg --prefix 2")
    assert {"21", "9"} & set(os.listdir(seg_volume / "skeletons")) == {"21"}
    from cloudvolume import CloudVolume

    skeleton = CloudVolume(f"file://{seg_volume}").skeleton.get(21)
    low, high = bounds(read_stack(gala / "test-gt.lzf.h5"), 21)
    assert skeleton.vertices[:, 0].max() > 1000  # 10 nm voxels, not 1
    assert (skeleton.vertices >= low).all() and (skeleton.vertices <= high).all()

    run_cli(f"read-h5 -f {gala}/test-gt.lzf.h5 -o seg skeletonize -i seg -d 40000 -o seg")
    big = {n.split(":")[0] for n in os.listdir(seg_volume / "skeletons") if ":" in n}
    assert big == {"21", "9", "14", "1", "49"}  # the objects of 40000 voxels or more


def test_dry_run_and_task_item(run_cli, gala, seg_volume):
    run_cli(f"--dry-run read-h5 -f {gala}/test-gt.lzf.h5 -o seg skeletonize -i seg --ids 21 -o seg")
    assert not (seg_volume / "skeletons").exists()
    task = Task(seg=Chunk(np.pad(np.ones((4, 6, 40), np.uint32), 2), voxel_size=(40, 4, 4)))
    operators.skeletonize(
        task,
        input_chunk_name="seg",
        volume_path=None,
        mip=None,
        voxel_size=None,
        dust_threshold=0,
        teasar_scale=1.5,
        teasar_const=300,
        ids=None,
        fix_branching=True,
        output_name="skel",
        config=RunConfig(),
    )
    assert list(task["skel"]) == [1] and task["skel"][1].vertices[:, 2].max() == 5 * 40


@pytest.mark.parametrize(
    "args, message",
    [
        (
            "create-chunk -s 8 16 16 -t float32 --layer-type segmentation -o seg "
            "skeletonize -i seg",
            "skeletonize (task 0-8_0-16_0-16): skeletons need a 3D integer segmentation chunk, "
            "got a chunk of float32",
        ),
        (
            "create-chunk -s 8 16 16 -t uint8 -o seg skeletonize -i seg",
            "got a chunk of uint8, shape (8, 16, 16) and layer type image",
        ),
        (
            "create-chunk -s 8 16 16 -t uint32 --pattern zero -o seg skeletonize -i seg -o nothere",
            "nothere: no segmentation info there",
        ),
        (
            "create-info -v img --volume-size 8 16 16 "
            "create-chunk -s 8 16 16 -t uint32 -o seg skeletonize -i seg -o img",
            "img is an image volume; skeletons need a segmentation volume",
        ),
        (
            "read-h5 -f {gala}/test-gt.lzf.h5 -o seg skeletonize -i seg --ids 21,9999,12345",
            "--ids 9999,12345: not in the chunk 0-50_0-100_0-200",
        ),
        (
            "read-h5 -f {gala}/test-gt.lzf.h5 -o seg skeletonize -i seg --ids 21,abc",
            "--ids: object ids must be integers, got 21,abc",
        ),
        ("skeleton-merge -v nothere", "nothere: no segmentation info there"),
        (
            "create-info -v s --volume-size 8 8 8 -t segmentation -d uint32 skeleton-merge -v s",
            "its info names no skeletons",
        ),
        (
            "create-info -v s --volume-size 8 8 8 -t segmentation -d uint32 "
            "skeleton-merge -v s -p x",
            "--prefix 'x': expected decimal digits",
        ),
    ],
)
def test_bad_input_is_one_line(run_cli, gala, args, message):
    line = error_line(run_cli(args.format(gala=gala), expect=1))
    assert message in line
