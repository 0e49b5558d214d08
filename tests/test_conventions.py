"""Decisions about conventions, recorded as tests: each answers one question a user would ask.

Changing an answer here changes what users' files and command lines mean, so it is a decision,
not a refactor.
"""

import copy
import pickle

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox, Cartesian, grid_bboxes
from chunkflow.segmentation.evaluate import evaluate_segmentation
from chunkflow.training.targets import add_affinities


def test_axis_order_is_zyx_and_xyz_only_at_the_cloud_volume_boundary():
    v = Cartesian(40, 4, 2)
    assert (v.z, v.y, v.x) == (40, 4, 2)
    assert v.xyz == (2, 4, 40)
    assert Cartesian.from_xyz((2, 4, 40)) == v


def test_bbox_string_is_zyx_half_open_in_voxels():
    box = BoundingBox.from_string("0-64_128-256_-5--2")
    assert box.start == (0, 128, -5) and box.stop == (64, 256, -2)
    assert box.shape == (64, 128, 3)
    assert str(box) == "0-64_128-256_-5--2"
    # a path whose file name is the string, with a suffix, names the same box
    assert BoundingBox.from_string("out/0-64_128-256_-5--2.h5") == box


def test_numpy_scalars_are_numbers_everywhere():
    v = Cartesian(np.int64(1), np.int32(2), 3)
    assert type(v[0]) is int
    assert v + np.int64(2) == (3, 4, 5)
    assert v * np.uint8(2) == (2, 4, 6)
    assert BoundingBox((0, 0, 0), (4, 4, 4)).grow(np.int64(1)) == BoundingBox((-1,) * 3, (5,) * 3)
    with pytest.raises(ValueError, match="integers"):
        Cartesian(1.5, 0, 0)


def test_grow_takes_negative_and_positive_sides_as_funlib():
    box = BoundingBox((10, 10, 10), (20, 20, 20))
    assert box.grow(2) == BoundingBox((8, 8, 8), (22, 22, 22))
    assert box.grow((1, 2, 3), 0) == BoundingBox((9, 8, 7), (20, 20, 20))
    assert box.grow(0, (1, 2, 3)) == BoundingBox((10, 10, 10), (21, 22, 23))
    assert box.grow(-5) == BoundingBox((15, 15, 15), (15, 15, 15))


def test_geometry_is_immutable_but_voxels_are_not():
    box = BoundingBox((0, 0, 0), (2, 2, 2))
    with pytest.raises(AttributeError):
        box._start = Cartesian(1, 1, 1)
    chunk = Chunk(np.zeros((2, 2, 2), np.uint8), voxel_offset=(1, 2, 3), voxel_size=(4, 4, 4))
    for name, value in [
        ("voxel_offset", (0, 0, 0)),
        ("voxel_size", (1, 1, 1)),
        ("array", np.ones((2, 2, 2))),
        ("layer_type", "segmentation"),
    ]:
        with pytest.raises(AttributeError, match="cannot be reassigned"):
            setattr(chunk, name, value)
    chunk[0, 0, 0] = 7  # voxels are data, written in place
    assert chunk.array[0, 0, 0] == 7
    moved = Chunk(chunk.array, voxel_offset=(0, 0, 0), voxel_size=chunk.voxel_size)
    assert moved.voxel_offset == (0, 0, 0) and chunk.voxel_offset == (1, 2, 3)


def test_geometry_survives_pickle_and_copy_for_worker_processes():
    chunk = Chunk(np.arange(8, dtype=np.uint32).reshape(2, 2, 2), (1, 2, 3), (40, 4, 4), "seg")
    grid = grid_bboxes(BoundingBox((0, 0, 0), (10, 10, 10)), (4, 4, 4))[3:7]
    for clone in (pickle.loads(pickle.dumps(chunk)), copy.deepcopy(chunk), copy.copy(chunk)):
        assert clone.same_geometry(chunk) and clone.layer_type == chunk.layer_type
        assert np.array_equal(clone.array, chunk.array)
    assert pickle.loads(pickle.dumps(grid)) == grid
    assert copy.deepcopy(grid.roi) == grid.roi


def test_offsets_are_in_voxels_and_world_units_are_offset_times_voxel_size():
    chunk = Chunk(np.zeros((2, 3, 4), np.uint8), voxel_offset=(10, 20, 30), voxel_size=(40, 4, 4))
    assert chunk.bbox == BoundingBox((10, 20, 30), (12, 23, 34))  # voxels, not nanometres
    assert chunk.voxel_offset * chunk.voxel_size == (400, 80, 120)  # the world offset in nm


def test_affinity_channel_c_links_a_voxel_with_the_previous_one_along_axis_c():
    labels = np.zeros((3, 3, 3), np.uint32)
    labels[1:, :, :] = 1  # z = 0 is background, z = 1 and 2 one object
    affs, mask = add_affinities(Chunk(labels, layer_type="segmentation"))
    z = np.asarray(affs)[0]
    assert z[1].max() == 0  # z=1 and its previous voxel z=0 (background): no link
    assert z[2].min() == 1  # z=2 and z=1: same object
    assert np.asarray(mask)[0][0].max() == 0  # z=0 has no previous voxel inside the chunk


def test_voi_split_is_over_segmentation_and_merge_is_under_segmentation():
    gt = np.ones((1, 2, 4), np.uint32)
    split = np.array([[[1, 1, 2, 2], [1, 1, 2, 2]]], np.uint32)  # one object cut in two
    metrics = evaluate_segmentation(split, gt)
    assert metrics["voi_split"] == pytest.approx(1.0)  # one bit: which half
    assert metrics["voi_merge"] == pytest.approx(0.0)
    merged = evaluate_segmentation(gt, split)  # roles swapped: two objects joined
    assert merged["voi_split"] == pytest.approx(0.0) and merged["voi_merge"] == pytest.approx(1.0)


def test_the_package_lists_its_core_types_without_importing_them():
    import subprocess
    import sys

    code = (
        "import chunkflow, sys; print(sorted(set(chunkflow.__all__) - set(dir(chunkflow))));"
        "print('chunkflow.chunk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "False"]
