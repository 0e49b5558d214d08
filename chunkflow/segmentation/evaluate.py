"""Segmentation metrics against ground truth.

Conventions (those of waterz and gala): voxels where the ground truth is 0 are ignored; VOI is
in bits; VOI split = H(seg | gt) (over-segmentation), VOI merge = H(gt | seg) (under-
segmentation). With n_ij the voxel count of segment i and ground-truth object j:

- Rand split = Σ n_ij² / Σ_j n_j² (recall of voxel pairs; 1 = no splits)
- Rand merge = Σ n_ij² / Σ_i n_i² (precision of voxel pairs; 1 = no merges)
- adapted Rand error = 1 − F-score of the two (CREMI)
- adjusted Rand error = 1 − adjusted Rand index (Hubert and Arabie, chance corrected)
"""

from __future__ import annotations

import numpy as np

from chunkflow.errors import ChunkflowError

METRIC_NAMES = {
    "rand_split": "Rand split",
    "rand_merge": "Rand merge",
    "voi_split": "VOI split",
    "voi_merge": "VOI merge",
    "adapted_rand_error": "Adapted Rand error",
    "adjusted_rand_error": "Adjusted Rand error",
}


def contingency(seg: np.ndarray, gt: np.ndarray):
    """Counts n_ij of (segment, gt object) pairs over voxels with gt != 0."""
    import fastremap

    if seg.shape != gt.shape:
        raise ChunkflowError(
            f"segmentation {seg.shape} and ground truth {gt.shape} differ in shape"
        )
    for name, array in (("segmentation", seg), ("ground truth", gt)):
        if array.dtype.kind not in "iub":
            raise ChunkflowError(f"the {name} must hold integer labels, not {array.dtype}")
    keep = gt != 0
    seg_ids, _ = fastremap.renumber(np.ascontiguousarray(seg[keep]), start=0, preserve_zero=False)
    gt_ids, _ = fastremap.renumber(np.ascontiguousarray(gt[keep]), start=0, preserve_zero=False)
    width = int(gt_ids.max()) + 1 if gt_ids.size else 1
    pairs = seg_ids.astype(np.uint64) * np.uint64(width) + gt_ids.astype(np.uint64)
    _, counts = np.unique(pairs, return_counts=True)
    _, seg_counts = np.unique(seg_ids, return_counts=True)
    _, gt_counts = np.unique(gt_ids, return_counts=True)
    return counts.astype(np.float64), seg_counts.astype(np.float64), gt_counts.astype(np.float64)


def _entropy(counts: np.ndarray, total: float) -> float:
    p = counts / total
    return float(-(p * np.log2(p)).sum())


def evaluate_segmentation(seg: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Rand split/merge, VOI split/merge, adapted and adjusted Rand errors (see module doc)."""
    n_ij, n_i, n_j = contingency(np.asarray(seg), np.asarray(gt))
    total = float(n_ij.sum())
    if total == 0:
        raise ChunkflowError("the ground truth is all 0 (ignored): nothing to evaluate")
    h_joint = _entropy(n_ij, total)
    sum_ij, sum_i, sum_j = (n_ij**2).sum(), (n_i**2).sum(), (n_j**2).sum()
    rand_split, rand_merge = sum_ij / sum_j, sum_ij / sum_i
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    index, expected = pairs(n_ij), pairs(n_i) * pairs(n_j) / (total * (total - 1) / 2)
    maximum = (pairs(n_i) + pairs(n_j)) / 2
    adjusted = (index - expected) / (maximum - expected) if maximum != expected else 1.0
    return {
        "rand_split": float(rand_split),
        "rand_merge": float(rand_merge),
        "voi_split": h_joint - _entropy(n_j, total),
        "voi_merge": h_joint - _entropy(n_i, total),
        "adapted_rand_error": float(1 - 2 * rand_split * rand_merge / (rand_split + rand_merge)),
        "adjusted_rand_error": float(1 - adjusted),
    }


def format_metrics(metrics: dict[str, float]) -> str:
    """The tutorial's lines: `Rand split: 0.958776` ..."""
    return "\n".join(f"{METRIC_NAMES[k]}: {metrics[k]:.6f}" for k in METRIC_NAMES)
