"""The numba watershed gives waterz's fragments voxel for voxel."""

import numpy as np
import pytest

from chunkflow.segmentation.agglomerate import parse_scoring_function
from chunkflow.segmentation.basins import watershed
from tests.segmentation.test_agglomerate import MEAN, p1_affinities


def waterz_fragments(affs: np.ndarray, low: float, high: float) -> np.ndarray:
    import waterz

    return next(
        waterz.agglomerate(
            affs,
            [0.0],
            aff_threshold_low=low,
            aff_threshold_high=high,
            scoring_function=parse_scoring_function(MEAN),
        )
    ).copy()


def plateaus(shape, seed: int) -> np.ndarray:
    """Affinities with few distinct values: large plateaus and many ties to divide."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.float32([0.0, 0.2, 0.5, 0.5, 0.9, 1.0]), size=(3, *shape))


@pytest.mark.parametrize("low, high", [(0.001, 0.9999), (0.3, 0.8), (0.0, 1.0), (0.5, 0.6)])
@pytest.mark.parametrize("source", ["gala", "plateaus", "noise"])
def test_fragments_are_waterz_fragments(source, low, high):
    affs = {
        "gala": lambda: p1_affinities()[:, :30, :60],
        "plateaus": lambda: plateaus((9, 10, 11), 0),
        "noise": lambda: np.random.default_rng(1).random((3, 12, 13, 14), dtype=np.float32),
    }[source]()
    affs = np.ascontiguousarray(affs, dtype=np.float32)
    expected = waterz_fragments(affs, low, high)
    ours = watershed(affs, low, high)
    assert ours.dtype == np.uint64 and expected.max() > 1
    np.testing.assert_array_equal(ours, expected)


def test_no_affinity_above_low_gives_no_fragment():
    affs = np.full((3, 4, 5, 6), 0.25, np.float32)
    assert not watershed(affs, 0.5, 0.9).any()
    assert len(np.unique(watershed(affs, 0.1, 0.9))) == 1  # one plateau, one basin
