"""The tutorial's command lines, run as typed with only paths and sizes adapted.

The tutorial (chunkflow 1.x's docs) fetches its tasks from an SQS queue; here `generate-tasks`
over the output volume makes the same tasks. `cloud-watch` is left out (it needs AWS; see
tests/cli/test_logs.py). Everything else is the tutorial's spelling.
"""

from __future__ import annotations

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.cli.framework import NAMES, OPERATORS
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.precomputed import create_info, read_precomputed, write_precomputed

VOXEL = (40, 4, 4)  # mip 0; mip 1 is 40 8 8 (factor 1 2 2 per mip)


def volume(path, array, mip, dtype="uint8", channels=1, layer="image", block=(6, 32, 32), top=1):
    """A precomputed volume of 18 x 192 x 192 voxels at mip 0, holding `array` at `mip`."""
    create_info(path, (18, 192, 192), VOXEL, (0, 0, 0), dtype, channels, layer, block, "raw", top)
    if array is not None:
        write_precomputed(Chunk(array, (0, 0, 0), (40, 4 * 2**mip, 4 * 2**mip)), path, mip)
    return path


def test_a_task_skipped_to_save_writes_zeros_of_the_volume(run_cli, tmp_path):
    """An image chunk skipped to a save into a 3-channel float volume: zeros of the volume's
    dtype and channels over the task's bbox, not the image (chunkflow 1.x's behaviour)."""
    out = volume(f"file://{tmp_path}/affs", None, 0, "float32", 3, "affinity_map", (6, 32, 32))
    run_cli(
        "create-bbox -b 6-12_32-64_32-64 create-chunk -s 10 48 48 --voxel-offset 4 24 24 "
        f"--pattern zero skip-all-zero --skip-to save save -v {out}"
    )
    zeros = read_precomputed(out, BoundingBox((6, 32, 32), (12, 64, 64)))
    assert zeros.shape == (3, 6, 32, 32) and zeros.dtype == np.float32
    assert not zeros.array.any()
    run_cli(
        "create-bbox -b 0-6_0-32_0-32 create-chunk -s 6 32 32 --pattern zero "
        f"skip-all-zero --skip-to save save -v {out} --skipped-tasks nothing"
    )
    with pytest.raises(ChunkflowError, match="data missing in 0-6_0-32_0-32"):
        read_precomputed(out, BoundingBox((0, 0, 0), (6, 32, 32)))
    # without an info there is no dtype to write zeros of: a warning, nothing written
    result = run_cli(
        "create-bbox -b 0-6_0-32_0-32 create-chunk -s 6 32 32 --pattern zero "
        f"skip-all-zero --skip-to save save -v {tmp_path}/none"
    )
    assert "has no info yet" in result.err
    assert not (tmp_path / "none").exists()


def test_only_the_operator_named_by_skip_to_sees_the_skip(run_cli, tmp_path):
    """A task resumed at an earlier operator reaches save as a normal task."""
    run_cli(
        "create-bbox -b 0-4_0-8_0-8 create-chunk -s 4 8 8 --pattern zero skip-all-zero "
        "--skip-to again create-chunk --name again -s 4 8 8 --pattern sin -t float32 "
        f"save -v {tmp_path}/out"
    )
    saved = read_precomputed(f"file://{tmp_path}/out", BoundingBox((0, 0, 0), (4, 8, 8)))
    assert saved.dtype == np.float32 and saved.array.any()


@pytest.fixture
def segmentation(gala, tmp_path):
    """The gala ground truth (50 x 100 x 200) as mip 3 of a volume of 45 x 5 x 5 nm voxels
    (45 x 40 x 40 at mip 3), as in the tutorial's meshing line (`--mip 3`)."""
    from tests.conftest import read_stack

    labels = read_stack(gala / "test-gt.lzf.h5").astype(np.uint32)
    path = f"file://{tmp_path}/seg"
    create_info(
        path, (50, 800, 1600), (45, 5, 5), (0, 0, 0), "uint32", 1, "segmentation",
        (25, 50, 100), "raw", 3,
    )  # fmt: skip
    write_precomputed(Chunk(labels, (0, 0, 0), (45, 40, 40), "segmentation"), path, 3)
    return path, labels


def test_meshing_line(run_cli, segmentation):
    """`cutout` writes `chunk` and `mesh` reads `chunk`: the tutorial's line needs no -i/-o."""
    from cloudvolume import CloudVolume

    path, labels = segmentation
    run_cli(
        f"--mip 3 generate-tasks -v {path} -c 26 51 101 --stride 25 50 100 --respect-stop "
        f"cutout -v {path} --fill-missing mesh --voxel-size 45 5 5 -o {path} "
        "--dust-threshold 100 delete-task-in-queue"
    )
    run_cli(f"mesh-manifest --volume-path {path} --prefix 7")
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    sevens = [int(i) for i, n in zip(ids, counts) if str(i).startswith("7") and n > 100]
    assert sevens
    vol = CloudVolume(path)
    for label in sevens:
        mesh = vol.mesh.get(label)
        mesh = mesh[label] if isinstance(mesh, dict) else mesh
        z, y, x = np.nonzero(labels == label)
        voxel = np.array([5, 5, 45])  # --voxel-size, x y z
        low = np.array([x.min(), y.min(), z.min()]) * voxel - voxel
        high = np.array([x.max() + 1, y.max() + 1, z.max() + 1]) * voxel + voxel
        assert len(mesh.faces) > 0, label
        assert np.all(mesh.vertices >= low) and np.all(mesh.vertices <= high), label


def test_skeletonize_after_cutout_needs_no_names(run_cli, segmentation):
    from cloudvolume import CloudVolume

    path, labels = segmentation
    run_cli(
        f"--mip 3 generate-tasks -v {path} -c 26 100 200 --stride 25 100 200 --respect-stop "
        f"cutout -v {path} --fill-missing skeletonize --voxel-size 45 5 5 -o {path} "
        "--dust-threshold 1000"
    )
    run_cli(f"skeleton-merge -v {path}")
    largest = int(np.bincount(labels.ravel())[1:].argmax()) + 1
    skeleton = CloudVolume(path).skeleton.get(largest)
    assert len(skeleton.vertices) > 10 and len(skeleton.components()) == 1


def test_single_input_operators_read_and_write_chunk_by_default():
    """A decision: an operator with one input chunk reads `chunk` and writes `chunk` unless
    told otherwise, so `cutout OP save` chains need no names (as in chunkflow 1.x)."""
    wrong = []
    for name, command in OPERATORS.items():
        for param in command.params:
            if param.name in ("input_chunk_name", "output_chunk_name"):
                single = param.type is not NAMES and isinstance(param.default, str)
                if single and param.default != "chunk":
                    wrong.append(f"{name} {param.opts[0]} {param.default}")
    assert not wrong
