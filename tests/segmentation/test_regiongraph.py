"""Region adjacency graphs: contact statistics checked voxel by voxel, and the graph-only
agglomeration checked against waterz on real data."""

import itertools

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.segmentation import basins
from chunkflow.segmentation.agglomerate import watershed
from chunkflow.segmentation.evaluate import evaluate_segmentation
from chunkflow.segmentation.regiongraph import (
    UnionFind,
    cells,
    contacts,
    fixed_point,
    mean_affinity_agglomeration,
    plane_contacts,
)
from tests.conftest import GALA, read_stack
from tests.segmentation.test_agglomerate import waterz_segmentation


def brute_force_contacts(labels, affs):
    stats = {}
    for z, y, x in itertools.product(*map(range, labels.shape)):
        for c, step in enumerate(((1, 0, 0), (0, 1, 0), (0, 0, 1))):
            q = (z - step[0], y - step[1], x - step[2])
            if min(q) < 0:
                continue
            a, b = int(labels[z, y, x]), int(labels[q])
            if a and b and a != b:
                entry = stats.setdefault((min(a, b), max(a, b)), [0.0, 0])
                entry[0] += float(affs[c, z, y, x])
                entry[1] += 1
    return stats


@pytest.mark.parametrize(
    "shape, ids, dtype, step",
    [
        ((4, 5, 6), 5, np.uint32, 1),
        ((9, 11, 13), 300, np.uint64, 1),  # many pairs: the table grows
        ((6, 9, 11), 40, np.int32, 9973),  # sparse ids
        ((6, 9, 11), 40, np.uint64, 1 << 40),  # pair keys past 64 bits: renumbered first
        ((1, 1, 7), 3, np.uint8, 1),
        ((3, 4, 5), 1, np.uint16, 1),  # all zero
    ],
)
def test_contacts_match_a_voxel_by_voxel_count(shape, ids, dtype, step):
    rng = np.random.default_rng(ids)
    labels = (rng.integers(0, ids, shape) * step).astype(dtype)
    affs = rng.random((3, *shape)).astype(np.float16)  # multiples of 2^-24: sums exact
    expected = brute_force_contacts(labels, affs)
    for num_ids in (None, int(labels.max()) + 1):
        u, v, sums, counts = contacts(labels, affs, num_ids)
        assert u.dtype == v.dtype == np.uint64 and counts.dtype == np.int64
        assert [(int(a), int(b)) for a, b in zip(u, v)] == sorted(expected)
        assert sums.tolist() == [expected[k][0] for k in sorted(expected)]
        assert counts.tolist() == [expected[k][1] for k in sorted(expected)]


def test_contacts_of_a_label_with_many_neighbours():
    """Its pairs overflow the near table's windows into the far table."""
    rng = np.random.default_rng(7)
    labels = rng.integers(2, 400, (8, 16, 16)).astype(np.uint32)
    labels[::2] = 1
    affs = rng.random((3, 8, 16, 16)).astype(np.float16)
    expected = brute_force_contacts(labels, affs)
    u, v, sums, counts = contacts(labels, affs, 400)
    assert sum(1 for a, _ in expected if a == 1) > 300
    assert [(int(a), int(b)) for a, b in zip(u, v)] == sorted(expected)
    assert sums.tolist() == [expected[k][0] for k in sorted(expected)]
    assert counts.tolist() == [expected[k][1] for k in sorted(expected)]


@pytest.mark.parametrize("labels", [[[[0, 5]]], [[[0, -1]]]])
def test_contacts_refuse_labels_out_of_range(labels):
    with pytest.raises(ChunkflowError, match=r"labels must lie in 0 \.\. 4"):
        contacts(np.array(labels), np.zeros((3, 1, 1, 2), np.float32), 5)


def test_plane_contacts():
    upper = np.array([[7, 7, 0], [9, 9, 9]], np.uint64)
    lower = np.array([[3, 5, 5], [3, 9, 3]], np.uint64)
    affs = np.array([[0.5, 1.0, 1.0], [0.25, 1.0, 0.75]], np.float32)
    u, v, sums, counts = plane_contacts(upper, lower, affs)
    assert list(zip(u.tolist(), v.tolist())) == [(3, 7), (3, 9), (5, 7)]
    assert sums.tolist() == [0.5, 1.0, 1.0] and counts.tolist() == [1, 2, 1]


@pytest.fixture(scope="module")
def gala_affinities():
    """Affinities of the gala test volume from its boundary map: 1 - the larger boundary
    probability of the two voxels an edge links."""
    boundary = read_stack(GALA / "test-p1.lzf.h5").astype(np.float32)
    affs = np.zeros((3, *boundary.shape), np.float32)
    for c in range(3):
        here = [slice(None)] * 3
        there = [slice(None)] * 3
        here[c], there[c] = slice(1, None), slice(None, -1)
        affs[c][tuple(here)] = 1 - np.maximum(boundary[tuple(here)], boundary[tuple(there)])
    return Chunk(affs, layer_type="affinity_map")


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_graph_agglomeration_is_waterz_on_the_whole_volume(gala_affinities, threshold):
    """Given waterz's fragments and their contacts, merging the graph alone gives the
    segmentation waterz gives from the volume. waterz keeps scores in float32, we in float64:
    edges whose scores differ by less than float32 resolution may merge in another order, which
    here changes at most one segment in a thousand."""
    fragments = np.asarray(watershed(gala_affinities, 0.001, 0.9999))
    expected = waterz_segmentation(np.asarray(gala_affinities), threshold)
    num = int(fragments.max()) + 1
    u, v, sums, counts = contacts(fragments, np.asarray(gala_affinities), num)
    assert len(u) > 5000
    objects = mean_affinity_agglomeration(u, v, sums, counts, num, threshold)
    ours = np.where(fragments > 0, objects[fragments], 0)
    ours_count, expected_count = len(np.unique(ours)), len(np.unique(expected))
    assert expected_count > 300 and abs(ours_count - expected_count) <= expected_count / 1000
    both = evaluate_segmentation(ours, expected + 1)  # + 1: waterz's 0 voxels count too
    assert both["voi_split"] + both["voi_merge"] < 0.002


def test_agglomeration_decisions():
    # a chain 0 - 1 - 2 with mean affinities 0.75 and 0.25 (scores 0.25 and 0.75), 3 alone
    u, v = np.array([0, 1]), np.array([1, 2])
    sums, counts = np.array([1.5, 0.5]), np.array([2, 2])
    assert mean_affinity_agglomeration(u, v, sums, counts, 4, 0.5).tolist() == [1, 1, 2, 3]
    assert mean_affinity_agglomeration(u, v, sums, counts, 4, 0.8).tolist() == [1, 1, 1, 2]
    # an edge merges only below the threshold, never at it
    assert mean_affinity_agglomeration(u, v, sums, counts, 4, 0.25).tolist() == [1, 2, 3, 4]
    # edges that become parallel add their statistics: once 0 and 1 merged, 0-2 (0.25 over 1)
    # and 1-2 (2.25 over 3, score 0.25 alone) are one edge of mean 0.625, score 0.375
    u, v = np.array([0, 0, 1]), np.array([1, 2, 2])
    sums, counts = np.array([1.0, 0.25, 2.25]), np.array([1, 1, 3])
    assert mean_affinity_agglomeration(u, v, sums, counts, 3, 0.3).tolist() == [1, 1, 2]
    assert mean_affinity_agglomeration(u, v, sums, counts, 3, 0.4).tolist() == [1, 1, 1]
    with pytest.raises(ChunkflowError, match="distinct nodes"):
        mean_affinity_agglomeration([1], [1], [1.0], [1], 2, 0.5)
    # a forced edge merges first whatever its statistics (none at all here), and the edges it
    # makes parallel add theirs: 0-2 and 1-2 (0.25 and 0.75 over 1 each) become 0.5
    u, v = np.array([0, 0, 1]), np.array([1, 2, 2])
    sums, counts, forced = np.array([0.0, 0.25, 0.75]), np.array([0, 1, 1]), [True, False, False]
    assert mean_affinity_agglomeration(u, v, sums, counts, 3, 0.0, forced).tolist() == [1, 1, 2]
    assert mean_affinity_agglomeration(u, v, sums, counts, 3, 0.49, forced).tolist() == [1, 1, 2]
    assert mean_affinity_agglomeration(u, v, sums, counts, 3, 0.51, forced).tolist() == [1, 1, 1]
    with pytest.raises(ChunkflowError, match="at least one affinity"):
        mean_affinity_agglomeration(u, v, sums, counts, 3, 0.5)


def greedy_merge(u, v, sums, counts, num, threshold):
    """The definition, slowly: contract the edge of lowest (score, id) below the threshold,
    again and again; edges made parallel add their statistics and keep the higher id."""
    parent = list(range(num))
    fixed_sums, fixed_counts = fixed_point(sums, counts)
    edges = {
        frozenset((int(a), int(b))): [int(s), int(c), i]
        for i, (a, b, s, c) in enumerate(zip(u, v, fixed_sums, fixed_counts))
    }
    while True:
        pair, (s, c, i) = min(edges.items(), key=lambda item: (1 - item[1][0] / item[1][1],
                                                               item[1][2]))  # fmt: skip
        if 1 - s / c >= threshold:
            break
        a, b = sorted(pair)
        del edges[pair]
        parent = [a if p == b else p for p in parent]
        for key in [key for key in edges if b in key]:
            s, c, i = edges.pop(key)
            new = frozenset(a if node == b else node for node in key)
            old = edges.get(new, [0, 0, -1])
            edges[new] = [old[0] + s, old[1] + c, max(old[2], i)]
        if not edges:
            break
    first = {}
    return np.array([first.setdefault(p, len(first) + 1) for p in parent])


@pytest.mark.parametrize("seed", range(6))
def test_merge_in_blocks_is_the_greedy_merge(seed):
    """The merge's result is the definition's, edge ties included, whether it runs on the
    whole graph at once or block by block (block sizes 1 voxel to the whole volume)."""
    rng = np.random.default_rng(seed)
    affs = rng.random((3, 14, 15, 16)).astype(np.float32)
    if seed % 2:
        affs = np.round(affs * 4) / 4  # exact ties: many edges of equal score
    fragments = basins.watershed(affs.astype(np.float32), 0.05, 0.95)
    num = int(fragments.max()) + 1
    u, v, sums, counts = contacts(fragments, affs, num)
    assert len(u) > 300
    for threshold in (0.3, 0.5, 0.7):
        expected = greedy_merge(u, v, sums, counts, num, threshold)
        assert 1 < expected.max() < num - 10
        ours = mean_affinity_agglomeration(u, v, sums, counts, num, threshold)
        assert ours.tolist() == expected.tolist()
        for block_size in (1, 2, 4, 8, 16):
            ours = mean_affinity_agglomeration(
                u, v, sums, counts, num, threshold, cells=cells(fragments, num),
                block_size=block_size,
            )  # fmt: skip
            assert ours.tolist() == expected.tolist(), (threshold, block_size)


def test_union_find_streams_pairs_and_numbers_by_first_appearance():
    sets = UnionFind(7)
    sets.union([5, 1], [6, 4])
    sets.union([6], [3])
    assert sets.labels().tolist() == [1, 2, 3, 4, 2, 4, 4]
    assert sets.labels(start=10).tolist()[:2] == [10, 11]
