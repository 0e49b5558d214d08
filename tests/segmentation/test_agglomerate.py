"""Watershed/agglomeration with waterz, and the affinity convention as an executable decision."""

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.segmentation.agglomerate import agglomerate, watershed
from chunkflow.segmentation.evaluate import evaluate_segmentation
from tests.conftest import GALA, read_stack


def affinities(labels: np.ndarray) -> np.ndarray:
    """Channel c of p = 1 where p and p - e_c share a (nonzero) label; order z, y, x."""
    out = np.zeros((3, *labels.shape), np.float32)
    same = labels != 0
    out[0, 1:] = (labels[1:] == labels[:-1]) & same[1:]
    out[1, :, 1:] = (labels[:, 1:] == labels[:, :-1]) & same[:, 1:]
    out[2, :, :, 1:] = (labels[:, :, 1:] == labels[:, :, :-1]) & same[:, :, 1:]
    return out


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_channel_c_links_p_and_p_minus_e_c(axis):
    labels = np.ones((6, 6, 6), np.uint32)
    cut = [slice(None)] * 3
    cut[axis] = slice(3, None)
    labels[tuple(cut)] = 2
    seg = agglomerate(Chunk(affinities(labels)), 0.5)
    assert len(np.unique(seg.array)) == 2  # the cut along `axis` is seen
    swapped = affinities(labels)[::-1].copy()  # the other channel order misses z/x cuts
    if axis != 1:
        assert len(np.unique(agglomerate(Chunk(swapped), 0.5).array)) != 2


def test_perfect_affinities_reproduce_real_ground_truth():
    gt = read_stack(GALA / "test-gt.lzf.h5")[:20, :50, :50]
    seg = agglomerate(Chunk(affinities(gt), (1, 2, 3)), 0.5)
    assert seg.voxel_offset == (1, 2, 3) and seg.is_segmentation
    metrics = evaluate_segmentation(seg.array, gt)
    assert metrics["voi_split"] < 0.05 and metrics["voi_merge"] < 0.05


def p1_affinities():
    """Affinities from the gala boundary map: 1 - mean boundary of the two voxels."""
    p = read_stack(GALA / "test-p1.lzf.h5")
    out = np.zeros((3, *p.shape), np.float32)
    out[0, 1:] = 1 - (p[1:] + p[:-1]) / 2
    out[1, :, 1:] = 1 - (p[:, 1:] + p[:, :-1]) / 2
    out[2, :, :, 1:] = 1 - (p[:, :, 1:] + p[:, :, :-1]) / 2
    return out


def test_agglomerate_given_fragments_on_real_data():
    ws = read_stack(GALA / "test-ws.lzf.h5")
    seg = agglomerate(Chunk(p1_affinities()), 0.5, fragments=Chunk(ws))
    metrics = evaluate_segmentation(seg.array, read_stack(GALA / "test-gt.lzf.h5"))
    assert metrics["voi_merge"] == pytest.approx(0.187, abs=0.02)
    assert metrics["voi_split"] == pytest.approx(1.144, abs=0.02)
    assert ws.max() == read_stack(GALA / "test-ws.lzf.h5").max()  # input not modified


def test_fragments_and_watershed():
    affs = Chunk(p1_affinities()[:, :20, :50, :50])
    seg, fragments = agglomerate(affs, 0.3, return_fragments=True)
    assert len(np.unique(fragments.array)) >= len(np.unique(seg.array))
    np.testing.assert_array_equal(watershed(affs).array, fragments.array)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(affs=np.zeros((4, 4, 4), np.float32)), "affinity map \\(3, z, y, x\\) is required"),
        (dict(threshold=1.5), "--threshold 1.5 is out of range"),
        (dict(aff_threshold_low=-0.1), "--aff-threshold-low"),
        (dict(fragments=np.zeros((4, 4, 5), np.uint32)), "do not cover the same voxels"),
    ],
)
def test_bad_input(kwargs, message):
    affs = Chunk(kwargs.pop("affs", np.zeros((3, 4, 4, 4), np.float32)))
    if "fragments" in kwargs:
        kwargs["fragments"] = Chunk(kwargs["fragments"])
    with pytest.raises(ChunkflowError, match=message):
        agglomerate(affs, **{"threshold": 0.5, **kwargs})
