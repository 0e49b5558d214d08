"""Watershed and mean-affinity agglomeration of affinity maps (waterz).

Affinity convention: a float32 map (3, z, y, x); channel order z, y, x; channel c of voxel p is
the affinity between p and p − e_c, the previous voxel along axis c. This is what waterz reads.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager

import numpy as np

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError

logger = logging.getLogger("chunkflow")

MEAN_AFFINITY = "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"


@contextmanager
def _quiet_stdout():
    """waterz prints its progress (from Python and C++); send it to the debug log instead."""
    import io
    import sys
    from contextlib import redirect_stdout

    sys.stdout.flush()
    saved = os.dup(1)
    python_side = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            with redirect_stdout(python_side):
                yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            text = python_side.getvalue() + sink.read().decode(errors="replace")
            if text.strip():
                logger.debug("waterz: %s", " | ".join(text.strip().splitlines()[-5:]))


def affinity_array(affs: Chunk) -> np.ndarray:
    """The affinities as a contiguous float32 (3, z, y, x) array (uint8 maps to [0, 1])."""
    array = np.asarray(affs)
    if array.ndim != 4 or array.shape[0] != 3:
        raise ChunkflowError(
            f"an affinity map (3, z, y, x) is required, got a chunk of shape {array.shape}"
        )
    if array.dtype.kind != "f":
        if array.dtype == np.uint8:
            return np.ascontiguousarray(array, dtype=np.float32) / 255.0
        raise ChunkflowError(f"affinities must be float (or uint8), not {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_range(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ChunkflowError(f"{name} {value} is out of range: expected a value in [0, 1]")


def agglomerate(
    affs: Chunk,
    threshold: float = 0.7,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
    scoring_function: str = MEAN_AFFINITY,
    fragments: Chunk | None = None,
    return_fragments: bool = False,
):
    """Watershed (unless `fragments` are given) and agglomeration up to `threshold`.

    Returns the segmentation (uint64), or (segmentation, fragments) with `return_fragments`.
    """
    import waterz

    for name, value in (
        ("--threshold", threshold),
        ("--aff-threshold-low", aff_threshold_low),
        ("--aff-threshold-high", aff_threshold_high),
    ):
        _check_range(name, value)
    array = affinity_array(affs)
    seeds = None
    if fragments is not None:
        if tuple(fragments.shape[-3:]) != array.shape[1:] or fragments.bbox != affs.bbox:
            raise ChunkflowError(
                f"fragments {fragments.bbox} and affinities {affs.bbox} do not cover the same "
                "voxels"
            )
        if np.asarray(fragments).dtype.kind not in "iu":
            raise ChunkflowError(f"fragments must be integer labels, not {fragments.dtype}")
        seeds = np.array(fragments, dtype=np.uint64)  # waterz relabels it in place
    thresholds = [0.0, threshold] if return_fragments else [threshold]
    results = []
    with _quiet_stdout():
        for seg in waterz.agglomerate(
            array,
            thresholds,
            fragments=seeds,
            aff_threshold_low=aff_threshold_low,
            aff_threshold_high=aff_threshold_high,
            scoring_function=scoring_function,
        ):
            results.append(seg.copy())
    chunks = [Chunk(r, affs.voxel_offset, affs.voxel_size, LayerType.SEGMENTATION) for r in results]
    return (chunks[-1], chunks[0]) if return_fragments else chunks[-1]


def watershed(
    affs: Chunk, aff_threshold_low: float = 0.0001, aff_threshold_high: float = 0.9999
) -> Chunk:
    """Watershed fragments only (no agglomeration)."""
    return agglomerate(affs, 0.0, aff_threshold_low, aff_threshold_high)
