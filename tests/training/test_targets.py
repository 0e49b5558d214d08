"""Training targets: the affinity convention as a decision, GrowBoundary and BalanceLabels."""

import cc3d
import numpy as np
import pytest
from scipy import ndimage

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.segmentation.agglomerate import agglomerate
from chunkflow.training.targets import NEAREST, add_affinities, balance_labels, grow_boundary
from tests.conftest import GALA, read_stack
from tests.segmentation.test_agglomerate import affinities as reference_affinities


def row(*labels):
    """A (1, 1, n) label chunk along x."""
    return Chunk(np.array(labels, np.uint32).reshape(1, 1, -1), (5, 6, 7), (40, 4, 4))


# add_affinities --------------------------------------------------------------------------------


def test_affinity_convention_channel_links_p_and_p_minus_offset():
    affs, mask = add_affinities(row(1, 1, 2, 2, 0, 0))
    assert affs.shape == mask.shape == (3, 1, 1, 6)
    assert affs.dtype == mask.dtype == np.float32 and affs.is_affinity_map
    assert affs.voxel_offset == mask.voxel_offset == (5, 6, 7) and affs.voxel_size == (40, 4, 4)
    # channel 2 (x) of voxel p: labels[p] == labels[p - (0, 0, 1)] and not 0
    np.testing.assert_array_equal(affs.array[2, 0, 0], [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(mask.array[2, 0, 0], [0, 1, 1, 1, 1, 1])
    # z and y: the previous voxel is outside the chunk
    assert not affs.array[:2].any() and not mask.array[:2].any()


def test_long_range_and_negative_offsets():
    labels = row(1, 1, 2, 1, 1, 1)
    affs, mask = add_affinities(labels, [(0, 0, 3), (0, 0, -1), (0, 0, -2)])
    np.testing.assert_array_equal(affs.array[0, 0, 0], [0, 0, 0, 1, 1, 0])  # p and p - 3
    np.testing.assert_array_equal(mask.array[0, 0, 0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(affs.array[1, 0, 0], [1, 0, 0, 1, 1, 0])  # p and p + 1
    np.testing.assert_array_equal(mask.array[1, 0, 0], [1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(affs.array[2, 0, 0], [0, 1, 0, 1, 0, 0])  # p and p + 2
    np.testing.assert_array_equal(mask.array[2, 0, 0], [1, 1, 1, 1, 0, 0])
    far, far_mask = add_affinities(labels, [(0, 0, 6), (2, 0, 0)])  # nothing inside
    assert not far.array.any() and not far_mask.array.any()


def test_matches_brute_force_and_the_agglomerate_reference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (4, 5, 6)).astype(np.uint64)
    known = rng.random((4, 5, 6)) > 0.2
    offsets = [(1, 0, 0), (0, 2, 0), (0, 0, -3), (-1, 1, 2)]
    affs, mask = add_affinities(Chunk(labels), offsets, Chunk(known.astype(np.uint8)))
    for c, offset in enumerate(offsets):
        for p in np.ndindex(labels.shape):
            q = tuple(np.subtract(p, offset))
            inside = all(0 <= v < s for v, s in zip(q, labels.shape))
            same = inside and labels[p] == labels[q] != 0
            assert affs.array[(c, *p)] == same
            assert mask.array[(c, *p)] == (inside and known[p] and known[q])
    nearest, _ = add_affinities(Chunk(labels))
    np.testing.assert_array_equal(nearest.array, reference_affinities(labels))
    assert NEAREST == ((1, 0, 0), (0, 1, 0), (0, 0, 1))


def test_agglomerating_affinities_recovers_the_labels():
    """Perfect affinities give back every 6-connected piece of every label.

    Decisions recorded here: label 0 stays 0; a label that falls apart inside the crop comes
    back as several segments (affinities are local); a single-voxel object has no affinity
    above the watershed's low threshold, so waterz leaves it as background 0.
    """
    gt = read_stack(GALA / "test-gt.lzf.h5")[:20, :100, :100]
    affs, _ = add_affinities(Chunk(gt, (3, 0, 0)))
    seg = agglomerate(affs, 0.5).array
    assert affs.voxel_offset == (3, 0, 0)
    pieces = cc3d.connected_components(gt, connectivity=6)
    sizes = np.bincount(pieces.ravel())
    single = (sizes[pieces] == 1) & (gt != 0)
    assert 0 < single.sum() < 20
    assert not seg[(gt == 0) | single].any()
    keep = (gt != 0) & ~single
    pairs = np.unique(np.stack([pieces[keep], seg[keep]]), axis=1)
    assert len(pairs[0]) == len(np.unique(pairs[0])) == len(np.unique(pairs[1])) > 20
    assert 0 not in pairs[1]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: add_affinities(Chunk(np.zeros((2, 2, 2), np.float32))), "integer labels"),
        (lambda: add_affinities(row(1, 2), [(0, 0, 0)]), "links a voxel with itself"),
        (lambda: add_affinities(row(1, 2), [(0, 1)]), "three integers"),
        (lambda: add_affinities(row(1, 2), []), "neighborhood is empty"),
        (lambda: add_affinities(row(1, 2), labels_mask=row(1, 1, 1)), "do not cover the"),
    ],
)
def test_add_affinities_bad_input(call, message):
    with pytest.raises(ChunkflowError, match=message):
        call()


# grow_boundary ---------------------------------------------------------------------------------


def gunpowder_grow(labels, steps, only_xy):
    """gunpowder's GrowBoundary: keep the erosion (border_value=1) of every nonzero label."""
    if only_xy:
        return np.stack([gunpowder_grow(s[None], steps, False)[0] for s in labels])
    structure = ndimage.generate_binary_structure(3, 1)
    keep = np.zeros(labels.shape, bool)
    for label in np.unique(labels):
        if label:
            keep |= ndimage.binary_erosion(
                labels == label, structure, iterations=steps, border_value=1
            )
    return np.where(keep, labels, 0)


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("only_xy", [False, True])
def test_grow_boundary_matches_gunpowder(steps, only_xy):
    rng = np.random.default_rng(steps)
    blocks = rng.integers(0, 6, (3, 4, 4)).astype(np.uint16)
    labels = np.kron(blocks, np.ones((3, 5, 5), np.uint16))[:, 2:, 1:]
    grown = grow_boundary(Chunk(labels, (1, 2, 3), layer_type="segmentation"), steps, only_xy)
    assert grown.dtype == np.uint16 and grown.voxel_offset == (1, 2, 3) and grown.is_segmentation
    np.testing.assert_array_equal(grown.array, gunpowder_grow(labels, steps, only_xy))
    assert set(np.unique(grown.array)) <= set(np.unique(labels))


def test_grow_boundary_by_hand():
    grown = grow_boundary(row(1, 1, 1, 2, 2, 2, 2, 0, 3), steps=1)
    np.testing.assert_array_equal(grown.array[0, 0], [1, 1, 0, 0, 2, 2, 0, 0, 0])
    untouched = row(5, 5, 5)
    np.testing.assert_array_equal(grow_boundary(untouched, 4).array, untouched.array)
    assert grow_boundary(untouched, 0).array is not untouched.array
    with pytest.raises(ChunkflowError, match="steps >= 0"):
        grow_boundary(untouched, -1)


# balance_labels --------------------------------------------------------------------------------


def test_balanced_classes_weigh_the_same_and_masked_voxels_nothing():
    rng = np.random.default_rng(1)
    affs = (rng.random((3, 6, 20, 20)) < [[[[0.2]]], [[[0.5]]], [[[0.7]]]]).astype(np.float32)
    mask = (rng.random((3, 6, 20, 20)) > 0.3).astype(np.float32)
    weights = balance_labels(Chunk(affs, (1, 1, 1)), Chunk(mask, (1, 1, 1)))
    assert weights.dtype == np.float32 and weights.shape == affs.shape
    assert weights.voxel_offset == (1, 1, 1)
    assert not weights.array[mask == 0].any()
    for c in range(3):
        w, positive = weights.array[c], affs[c] > 0.5
        assert w[positive].sum() == pytest.approx(w[~positive].sum(), rel=1e-5)
        assert w.sum() == pytest.approx(mask[c].sum(), rel=1e-5)
    spatial = balance_labels(Chunk(affs), Chunk(mask[0]))  # one mask for all channels
    assert not spatial.array[:, mask[0] == 0].any()


def test_balance_clips_rare_classes_and_takes_3d_labels():
    labels = np.zeros((1, 10, 10), np.uint8)
    labels[0, 0, 0] = 1  # 1 % positives, clipped to 5 %
    weights = balance_labels(Chunk(labels)).array
    assert weights[0, 0, 0] == pytest.approx(0.5 / 0.05)
    assert weights[0, 5, 5] == pytest.approx(0.5 / 0.95)
    none = balance_labels(Chunk(labels), Chunk(np.zeros((1, 10, 10), np.uint8)))
    assert not none.array.any()
    with pytest.raises(ChunkflowError, match="clip"):
        balance_labels(Chunk(labels), clip=(0.0, 0.5))
    with pytest.raises(ChunkflowError, match="'mask' .* and chunk 'labels' .* do not cover the"):
        balance_labels(Chunk(labels), Chunk(np.ones((1, 10, 9), np.uint8)))
    with pytest.raises(ChunkflowError, match="have different voxel sizes"):
        balance_labels(Chunk(labels), Chunk(np.ones((1, 10, 10), np.uint8), voxel_size=(2, 1, 1)))
