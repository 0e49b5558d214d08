"""Watershed and mean-affinity agglomeration of affinity maps (waterz's algorithms).

Affinity convention: a float32 map (3, z, y, x); channel order z, y, x; channel c of voxel p is
the affinity between p and p − e_c, the previous voxel along axis c. This is what waterz reads.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager

import numpy as np

from chunkflow.chunk import Chunk, LayerType, check_same_grid, to_unit
from chunkflow.errors import ChunkflowError, ParameterError

logger = logging.getLogger(__name__)

MEAN_AFFINITY = "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"


# Scoring functions ------------------------------------------------------------------------------
#
# waterz compiles the scoring function, a C++ type, into the agglomeration. What it is given is
# therefore never the user's text: the text is parsed against waterz's documented vocabulary
# (waterz/backend/MergeFunctions.hpp and Operators.hpp) and written out again from the parse.

# name -> the template arguments after RegionGraphType: "score" is ScoreValue, "bool" an
# optional true|false, (low, high) an integer in that range
_STATISTICS = {
    "MeanAffinity": ("score",),
    "MinAffinity": ("score",),
    "MaxAffinity": ("score",),
    "QuantileAffinity": ((0, 100), "score", "bool"),
    "HistogramQuantileAffinity": ((0, 100), "score", (1, 1024), "bool"),
    "MeanMaxKAffinity": ((1, 100), "score"),
    "MinSize": (),
    "MaxSize": (),
    "ContactArea": (),
    "Random": (),
    "Constant": ((-(2**31), 2**31 - 1),),
}
_UNARY = ("OneMinus", "Invert", "Square")
_BINARY = ("Add", "Subtract", "Multiply", "Divide", "Step")
_MAX_FUNCTIONS = 16  # statistics and operators in one scoring function
SCORING_GRAMMAR = (
    "F = OneMinus|Invert|Square<F> | Add|Subtract|Multiply|Divide|Step<F, F> | "
    "MeanAffinity|MinAffinity|MaxAffinity<RegionGraphType, ScoreValue> | "
    "QuantileAffinity<RegionGraphType, Q, ScoreValue[, true|false]> | "
    "HistogramQuantileAffinity<RegionGraphType, Q, ScoreValue, BINS[, true|false]> | "
    "MeanMaxKAffinity<RegionGraphType, K, ScoreValue> | "
    "MinSize|MaxSize|ContactArea|Random<RegionGraphType> | Constant<RegionGraphType, C> "
    "(Q 0-100, BINS 1-1024, K 1-100, C an integer)"
)


class _Tokens:
    def __init__(self, text: str):
        import re

        self.items = []
        for match in re.finditer(r"\s*(?:([A-Za-z_]\w*)|(-?\d+)|([<>,])|(\S))", text):
            if match.group(4) is not None:
                raise ChunkflowError(f"unexpected {match.group(4)!r}")
            self.items.append(next(g for g in match.groups() if g is not None))
        self.position = 0

    def next(self, expected: str) -> str:
        if self.position == len(self.items):
            raise ChunkflowError(f"it ends where {expected} is expected")
        token = self.items[self.position]
        self.position += 1
        return token

    def expect(self, literal: str) -> None:
        token = self.next(repr(literal))
        if token != literal:
            raise ChunkflowError(f"{token!r} where {literal!r} is expected")

    def peek(self) -> str | None:
        return self.items[self.position] if self.position < len(self.items) else None


def _function(tokens: _Tokens, count: list) -> str:
    count[0] += 1
    if count[0] > _MAX_FUNCTIONS:
        raise ChunkflowError(f"more than {_MAX_FUNCTIONS} functions")
    name = tokens.next("a function name")
    tokens.expect("<")
    if name in _UNARY:
        args = [_function(tokens, count)]
    elif name in _BINARY:
        args = [_function(tokens, count)]
        tokens.expect(",")
        args.append(_function(tokens, count))
    elif name in _STATISTICS:
        tokens.expect("RegionGraphType")
        args = ["RegionGraphType"]
        for kind in _STATISTICS[name]:
            if kind == "bool":
                if tokens.peek() != ",":
                    break
                tokens.expect(",")
                value = tokens.next("true or false")
                if value not in ("true", "false"):
                    raise ChunkflowError(f"{value!r} where true or false is expected")
                args.append(value)
                continue
            tokens.expect(",")
            if kind == "score":
                tokens.expect("ScoreValue")
                args.append("ScoreValue")
                continue
            low, high = kind
            value = tokens.next(f"an integer in {low}..{high}")
            if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
                raise ChunkflowError(f"{value!r} where an integer in {low}..{high} is expected")
            args.append(str(int(value)))
    else:
        raise ChunkflowError(f"unknown function {name!r}")
    tokens.expect(">")
    return f"{name}<{', '.join(args)}>"


def parse_scoring_function(text: str) -> str:
    """The waterz scoring function `text` names, written out from its parse (see
    `SCORING_GRAMMAR`); a one-line `ChunkflowError` for anything else."""
    try:
        tokens = _Tokens(str(text))
        parsed = _function(tokens, [0])
        if tokens.peek() is not None:
            raise ChunkflowError(f"{tokens.peek()!r} after the end")
    except ChunkflowError as err:
        raise ChunkflowError(
            f"{text!r} is not a waterz scoring function ({err}); expected {SCORING_GRAMMAR}, "
            f"e.g. {MEAN_AFFINITY}"
        ) from None
    return parsed


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
    """The affinities as a contiguous float32 (3, z, y, x) array (uint8 in [0, 1] units)."""
    array = np.asarray(affs)
    if array.ndim != 4 or array.shape[0] != 3:
        raise ParameterError(
            f"`affs`: an affinity map (3, z, y, x) is required, got a chunk of shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return np.ascontiguousarray(to_unit(array))
    if array.dtype.kind != "f":
        raise ParameterError(f"`affs` must be float (or uint8), not {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_range(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"`{name}` {value} is out of range: expected a value in [0, 1]")


def _check_limits(low: float, high: float) -> None:
    for name, value in (("aff_threshold_low", low), ("aff_threshold_high", high)):
        _check_range(name, value)
    if low >= high:
        raise ParameterError(f"`aff_threshold_low` {low} must be below `aff_threshold_high` {high}")


def _waterz(array, thresholds, seeds, low, high, scoring_function) -> list[np.ndarray]:
    """waterz's segmentation at each threshold (its watershed unless `seeds` are given)."""
    import waterz

    with _quiet_stdout():
        return [
            seg.copy()
            for seg in waterz.agglomerate(
                array,
                thresholds,
                fragments=seeds,
                aff_threshold_low=low,
                aff_threshold_high=high,
                scoring_function=scoring_function,
            )
        ]


def mean_affinity_segments(
    fragments: np.ndarray, affs: np.ndarray, threshold: float, consecutive: bool = False
):
    """Fragments merged by mean affinity up to `threshold`, on their region graph: waterz's
    default agglomeration, run by chunkflow.segmentation.regiongraph (the merge
    `segment-merge` runs on a whole volume). Segment ids are 1, 2, ... in the order of the
    fragments' ids; 0 stays 0. `consecutive`: the fragment ids are 1 .. n already (as the
    watershed makes them), so they need no renumbering."""
    import fastremap

    from chunkflow.segmentation.regiongraph import cells, contacts, mean_affinity_agglomeration

    if not consecutive:
        fragments, _ = fastremap.renumber(fragments, preserve_zero=True, in_place=False)
    num = int(fragments.max()) + 1 if fragments.size else 1
    u, v, sums, counts = contacts(fragments, affs, num)
    segments = mean_affinity_agglomeration(
        u, v, sums, counts, num, threshold, overwrite=True, cells=cells(fragments, num)
    )
    segments -= np.uint64(1)  # node 0, the background, has no edge and comes first
    return segments[fragments]


def agglomerate(
    affs: Chunk,
    threshold: float = 0.7,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
    scoring_function: str | None = None,
    fragments: Chunk | None = None,
    return_fragments: bool = False,
):
    """Watershed (unless `fragments` are given) and agglomeration up to `threshold`.

    With the default scoring function (None), mean affinity, the watershed is `basins`'s
    (waterz's fragments) and the merge runs on the region graph (`mean_affinity_segments`:
    waterz's rule); any other scoring function goes to waterz, watershed and all. Returns the
    segmentation (uint64), or (segmentation, fragments) with `return_fragments`.
    """
    scoring_function = parse_scoring_function(scoring_function or MEAN_AFFINITY)
    _check_range("threshold", threshold)
    _check_limits(aff_threshold_low, aff_threshold_high)
    array = affinity_array(affs)
    seeds = None
    if fragments is not None:
        check_same_grid(("fragments", fragments), ("affinities", affs))
        if np.asarray(fragments).dtype.kind not in "iu":
            raise ParameterError(f"`fragments` must be integer labels, not {fragments.dtype}")
        seeds = np.array(fragments, dtype=np.uint64)  # waterz relabels it in place
    low, high = aff_threshold_low, aff_threshold_high
    if scoring_function == parse_scoring_function(MEAN_AFFINITY):
        from chunkflow.segmentation import basins

        given = seeds is not None
        if not given:
            seeds = basins.watershed(array, low, high)
        results = [seeds, mean_affinity_segments(seeds, array, threshold, not given)]
    else:
        thresholds = [0.0, threshold] if return_fragments else [threshold]
        results = _waterz(array, thresholds, seeds, low, high, scoring_function)
    chunks = [Chunk(r, affs.voxel_offset, affs.voxel_size, LayerType.SEGMENTATION) for r in results]
    return (chunks[-1], chunks[0]) if return_fragments else chunks[-1]


def watershed(
    affs: Chunk, aff_threshold_low: float = 0.0001, aff_threshold_high: float = 0.9999
) -> Chunk:
    """Watershed fragments only (no agglomeration): waterz's, computed by `basins`."""
    from chunkflow.segmentation import basins

    _check_limits(aff_threshold_low, aff_threshold_high)
    fragments = basins.watershed(affinity_array(affs), aff_threshold_low, aff_threshold_high)
    return Chunk(fragments, affs.voxel_offset, affs.voxel_size, LayerType.SEGMENTATION)
