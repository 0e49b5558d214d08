"""Targets equal gunpowder's and the lsds package's for the same labels.

The reference arrays in gunpowder_reference.npz were computed once by gunpowder 1.5.0 and
lsds 0.1.3 in a separate virtual environment (neither is a chunkflow dependency), by
tests/training/make_gunpowder_reference.py; its docstring says how to run it again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.training.targets import (
    Target,
    add_affinities,
    balance_labels,
    boundary_mask,
    foreground_mask,
    grow_boundary,
    local_shape_descriptors,
    neighborhood_from,
    signed_distance,
)

REFERENCE = np.load(Path(__file__).with_name("gunpowder_reference.npz"))


def labels(voxel_size=(1, 1, 1)) -> Chunk:
    return Chunk(REFERENCE["labels"], (0, 0, 0), voxel_size, LayerType.SEGMENTATION)


def inner_slices():
    offset, shape = REFERENCE["affinities_offset"], REFERENCE["affinities"].shape[1:]
    return (slice(None), *(slice(o, o + n) for o, n in zip(offset, shape)))


def test_affinities_with_gunpowders_neighborhood_sign_equal_gunpowders():
    neighborhood = neighborhood_from(REFERENCE["neighborhood"], "gunpowder")
    affs, mask = add_affinities(labels(), neighborhood)
    inner = inner_slices()
    np.testing.assert_array_equal(np.asarray(affs)[inner], REFERENCE["affinities"])
    np.testing.assert_array_equal(np.asarray(mask)[inner], REFERENCE["affinities_mask"])
    # typed in chunkflow's sign, the same offsets link the other neighbour: not equal
    wrong, _ = add_affinities(labels(), [tuple(n) for n in REFERENCE["neighborhood"]])
    assert not np.array_equal(np.asarray(wrong)[inner], REFERENCE["affinities"])


def test_the_two_signs_of_the_default_neighborhood():
    assert neighborhood_from([(-1, 0, 0), (0, -1, 0), (0, 0, -1)], "gunpowder") == (
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
    )
    with pytest.raises(ChunkflowError, match="neighborhood sign 'funkelab'"):
        neighborhood_from([(1, 0, 0)], "funkelab")


def test_balanced_weights_equal_gunpowders_per_channel_balance():
    affs = Chunk(REFERENCE["affinities"].astype(np.float32), (0, 0, 0), (1, 1, 1))
    mask = Chunk(REFERENCE["affinities_mask"].astype(np.float32), (0, 0, 0), (1, 1, 1))
    weights = balance_labels(affs, mask)
    np.testing.assert_allclose(np.asarray(weights), REFERENCE["balance_weights"], rtol=1e-6)


@pytest.mark.parametrize("only_xy", [False, True])
def test_grow_boundary_equals_gunpowders(only_xy):
    grown = grow_boundary(labels(), 2, only_xy)
    expected = REFERENCE["grown_2_xy" if only_xy else "grown_2"]
    np.testing.assert_array_equal(np.asarray(grown), expected)


def test_boundary_and_foreground_masks():
    boundary = boundary_mask(labels(), 2)
    np.testing.assert_array_equal(np.asarray(boundary)[0], REFERENCE["boundary_2"])
    assert boundary.dtype == np.float32 and boundary.shape == (1, 10, 28, 28)
    foreground = foreground_mask(labels())
    np.testing.assert_array_equal(np.asarray(foreground)[0], REFERENCE["labels"] != 0)


def test_local_shape_descriptors_equal_the_lsds_package():
    voxel_size = tuple(REFERENCE["lsd_voxel_size"])
    lsd = local_shape_descriptors(labels(voxel_size), REFERENCE["lsd_sigma"])
    assert lsd.shape == (10, 10, 28, 28) and lsd.dtype == np.float32
    np.testing.assert_allclose(np.asarray(lsd), REFERENCE["lsd"], atol=2e-4)
    assert np.asarray(lsd)[:, REFERENCE["labels"] == 0].max() == 0  # background


def test_2d_local_shape_descriptors_equal_the_lsds_package():
    section = Chunk(REFERENCE["labels"][4:5], (0, 0, 0), tuple(REFERENCE["lsd_voxel_size"]))
    lsd = local_shape_descriptors(section, REFERENCE["lsd_sigma"], dims=2)
    assert lsd.shape == (6, 1, 28, 28)
    np.testing.assert_allclose(np.asarray(lsd)[:, 0], REFERENCE["lsd_2d"], atol=2e-4)


def test_signed_distance_against_scipy_per_object():
    voxel_size = (4, 2, 1)
    ids = REFERENCE["labels"]
    distance = np.asarray(signed_distance(labels(voxel_size)))[0]
    expected = np.zeros(ids.shape)
    for label in np.unique(ids):
        inside = ids == label
        # scipy: distance to the nearest voxel outside this object, in world units
        d = ndimage.distance_transform_edt(inside, sampling=voxel_size)
        expected[inside] = -d[inside] if label == 0 else d[inside]
    np.testing.assert_allclose(distance, expected, rtol=1e-5)
    assert distance[ids != 0].min() >= 1 and distance[ids == 0].max() <= -1
    squashed = np.asarray(signed_distance(labels(voxel_size), scale=3.0))[0]
    np.testing.assert_allclose(squashed, np.tanh(expected / 3.0), rtol=1e-5, atol=1e-6)


def test_target_masks_and_channels():
    lsd = Target("lsd", sigma=4.0)
    target, known = lsd.compute(labels())
    assert target.shape == (10, 10, 28, 28) and lsd.channels(3) == 10 and lsd.channels(2) == 6
    np.testing.assert_array_equal(np.asarray(known)[0], REFERENCE["labels"] != 0)
    mask = Chunk((np.arange(28) < 14).astype(np.uint8)[None, None].repeat(10, 0).repeat(28, 1))
    _, known = Target("distance").compute(labels(), mask)
    np.testing.assert_array_equal(np.asarray(known)[0, :, :, 0], 1)
    np.testing.assert_array_equal(np.asarray(known)[0, :, :, 20], 0)
    affs = Target("affinities", neighborhood=[(2, 0, 0), (0, 0, 3)])
    assert affs.channels() == 2 and affs.context() == (2, 0, 3)
    assert Target("boundary").loss == "balanced-bce" and Target("lsd").loss == "mse"
    assert Target("foreground", loss="weighted-bce").loss == "balanced-bce"
    with pytest.raises(ChunkflowError, match="the loss balanced-mse balances binary targets"):
        Target("distance", loss="weighted-mse")
    with pytest.raises(ChunkflowError, match="unknown target 'edges'"):
        Target("edges")
    with pytest.raises(ChunkflowError, match="unknown loss 'hinge'"):
        Target("boundary", loss="hinge")
