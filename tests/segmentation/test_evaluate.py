"""Evaluation on the real gala volume, checked against gala's numbers, waterz and skimage."""

import itertools

import numpy as np
import pytest
import waterz
from skimage.metrics import adapted_rand_error

from chunkflow.errors import ChunkflowError
from chunkflow.segmentation.evaluate import evaluate_segmentation, format_metrics
from tests.conftest import GALA, read_stack


@pytest.fixture(scope="module")
def gt():
    return read_stack(GALA / "test-gt.lzf.h5")


@pytest.mark.parametrize("row, name", [(0, "test-ws"), (1, "test-seg1"), (2, "test-seg4")])
def test_voi_matches_gala(gt, row, name):
    expected = np.load(GALA / "vi-results.npy")[row]  # [merge, split]
    metrics = evaluate_segmentation(read_stack(GALA / f"{name}.lzf.h5"), gt)
    assert metrics["voi_merge"] == pytest.approx(expected[0], abs=1e-5)
    assert metrics["voi_split"] == pytest.approx(expected[1], abs=1e-5)


def test_watershed_numbers_from_the_issue(gt):
    metrics = evaluate_segmentation(read_stack(GALA / "test-ws.lzf.h5"), gt)
    assert metrics["voi_split"] == pytest.approx(1.647744, abs=1e-5)
    assert metrics["voi_merge"] == pytest.approx(0.184529, abs=1e-5)


@pytest.mark.parametrize("name", ["test-ws", "test-seg1", "test-seg4"])
def test_rand_against_waterz_and_skimage(gt, name):
    seg = read_stack(GALA / f"{name}.lzf.h5")
    ours = evaluate_segmentation(seg, gt)
    theirs = waterz.evaluate(seg.astype(np.uint64), gt.astype(np.uint64))
    for key in ("rand_split", "rand_merge", "voi_split", "voi_merge"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9)
    # skimage counts pairs without a voxel with itself, n(n-1): close, not identical
    error, precision, recall = adapted_rand_error(gt, seg, ignore_labels=(0,))
    assert ours["rand_split"] == pytest.approx(precision, abs=1e-4)  # / gt marginals
    assert ours["rand_merge"] == pytest.approx(recall, abs=1e-4)  # / seg marginals
    assert ours["adapted_rand_error"] == pytest.approx(error, abs=1e-4)


def brute_force_adjusted_rand(a, b):
    """Adjusted Rand index by counting voxel pairs one by one."""
    a, b = a.ravel(), b.ravel()
    same_a = same_b = same_both = pairs = 0
    for i, j in itertools.combinations(range(a.size), 2):
        pairs += 1
        sa, sb = a[i] == a[j], b[i] == b[j]
        same_a += sa
        same_b += sb
        same_both += sa and sb
    expected = same_a * same_b / pairs
    return (same_both - expected) / ((same_a + same_b) / 2 - expected)


def test_adjusted_rand_by_pair_counting():
    rng = np.random.default_rng(0)
    seg = rng.integers(0, 4, (3, 4, 5))
    gt = rng.integers(1, 4, (3, 4, 5))
    expected = 1 - brute_force_adjusted_rand(seg, gt)
    assert evaluate_segmentation(seg, gt)["adjusted_rand_error"] == pytest.approx(expected)


def test_conventions_split_versus_merge():
    gt = np.ones((1, 2, 4), np.uint32)
    split = np.array([[[1, 1, 2, 2], [1, 1, 2, 2]]])
    metrics = evaluate_segmentation(split, gt)
    assert metrics["voi_split"] == pytest.approx(1.0)  # one object cut in two halves: 1 bit
    assert metrics["voi_merge"] == 0 and metrics["rand_merge"] == 1
    merged = evaluate_segmentation(np.ones_like(gt), split)
    assert merged["voi_merge"] == pytest.approx(1.0) and merged["voi_split"] == 0


def test_gt_zero_is_ignored():
    gt = np.array([[[0, 0, 1, 1]]])
    assert evaluate_segmentation(np.array([[[5, 6, 7, 7]]]), gt)["voi_split"] == 0


def test_format_is_the_tutorials():
    lines = format_metrics(evaluate_segmentation(np.ones((1, 1, 2), int), np.ones((1, 1, 2), int)))
    assert lines.splitlines()[:4] == [
        "Rand split: 1.000000",
        "Rand merge: 1.000000",
        "VOI split: 0.000000",
        "VOI merge: 0.000000",
    ]


def test_bad_input():
    with pytest.raises(ChunkflowError, match="differ in shape"):
        evaluate_segmentation(np.ones((1, 2, 2), int), np.ones((1, 2, 3), int))
    with pytest.raises(ChunkflowError, match="integer labels"):
        evaluate_segmentation(np.ones((1, 2, 2), float), np.ones((1, 2, 2), int))
    with pytest.raises(ChunkflowError, match="all 0"):
        evaluate_segmentation(np.ones((1, 2, 2), int), np.zeros((1, 2, 2), int))
