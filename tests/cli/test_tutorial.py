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
from chunkflow.io.precomputed import create_info, write_precomputed


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
