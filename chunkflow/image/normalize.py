"""Intensity normalization: per-section contrast stretch, scaling to [0, 1], quantization.

Section contrast (`normalize_section_contrast`), for each z section of a uint8 image:

- the histogram has 256 bins; bin 0 is ignored (0 means missing data). Let N be the count of
  nonzero voxels and cdf(v) the count of nonzero voxels <= v.
- the lower level `lo` is the smallest value with cdf(lo) > lower_clip_fraction * N: at most that
  fraction of the voxels lies below it. The upper level `hi` is the largest value with more than
  upper_clip_fraction * N voxels at or above it: at most that fraction lies above it. With both
  fractions 0 the levels are the smallest and the largest nonzero value.
- each nonzero value v becomes round((v - lo) / (hi - lo) * (maxval - minval) + minval), clipped
  to [minval, maxval]; 0 stays 0. A section with no nonzero voxel, or with hi <= lo (a single
  value), is left unchanged.

The histograms come from the chunk itself (each section of this chunk only), or from files
`{levels_path}/{z}` named by the global z index, as igneous' luminance-levels task writes them:
JSON with `"levels"`, a list of 256 counts. All-zero sections need no file (a cutout grown past
the volume's edge has such sections, at z indices that have no histogram).
"""

from __future__ import annotations

import json

import numpy as np

from chunkflow.chunk import Chunk, LayerType, from_unit, to_unit
from chunkflow.errors import ChunkflowError, ParameterError

QUANTIZE_MODES = ("xy", "z", "mean")


# section contrast ----------------------------------------------------------------------------
def section_histogram(section) -> np.ndarray:
    """The 256-bin histogram (int64 counts) of a uint8 array."""
    return np.bincount(np.asarray(section, dtype=np.uint8).ravel(), minlength=256).astype(np.int64)


def clip_levels(
    histogram, lower_clip_fraction: float = 0.01, upper_clip_fraction: float = 0.01
) -> tuple[int, int] | None:
    """The (lo, hi) levels of a 256-bin histogram, ignoring bin 0; None if it is empty."""
    _check_fractions(lower_clip_fraction, upper_clip_fraction)
    counts = np.array(histogram, dtype=np.float64).ravel()
    if counts.shape != (256,):
        raise ChunkflowError(f"a histogram needs 256 counts, got {counts.size}")
    counts[0] = 0
    total = counts.sum()
    if total <= 0:
        return None
    cdf = np.cumsum(counts)
    lo = int(np.searchsorted(cdf, lower_clip_fraction * total, side="right"))
    above = total - cdf  # voxels above each value, non-increasing
    hi = int(np.searchsorted(-above, -upper_clip_fraction * total, side="left"))
    return min(lo, 255), min(hi, 255)


def contrast_lookup_table(
    levels: tuple[int, int] | None, minval: int = 1, maxval: int = 255
) -> np.ndarray:
    """The uint8 lookup table (256 entries) that stretches [lo, hi] to [minval, maxval]."""
    _check_range(minval, maxval)
    values = np.arange(256, dtype=np.float64)
    if levels is None or levels[1] <= levels[0]:
        return values.astype(np.uint8)
    lo, hi = levels
    table = (values - lo) / (hi - lo) * (maxval - minval) + minval
    table = np.clip(np.rint(table), minval, maxval).astype(np.uint8)
    table[0] = 0
    return table


def read_levels(levels_path: str, zs) -> dict[int, np.ndarray]:
    """Read the histograms `{levels_path}/{z}` of sections `zs` (any cloudfiles path)."""
    from cloudfiles import CloudFiles

    zs = [int(z) for z in zs]
    try:
        results = CloudFiles(levels_path).get([str(z) for z in zs])
    except Exception as err:  # a storage failure: one line naming the path
        raise ParameterError(f"`levels_path` {levels_path}: cannot read ({err})") from None
    contents = {str(r["path"]): r for r in results}
    histograms = {}
    for z in zs:
        where = f"{levels_path.rstrip('/')}/{z}"
        result = contents.get(str(z), {})
        if result.get("error") is not None:
            raise ChunkflowError(f"histogram {where}: cannot read ({result['error']})")
        if result.get("content") is None:
            raise ParameterError(f"histogram {where} is missing (`levels_path`, section z={z})")
        try:
            levels = json.loads(result["content"])["levels"]
            histogram = np.asarray(levels, dtype=np.int64)
        except (ValueError, KeyError, TypeError):
            raise ChunkflowError(
                f"histogram {where}: expected JSON with a 'levels' list of 256 counts"
            ) from None
        if histogram.shape != (256,):
            raise ChunkflowError(
                f"histogram {where}: expected 256 counts, got shape {histogram.shape}"
            )
        histograms[z] = histogram
    return histograms


def normalize_section_contrast(
    chunk: Chunk,
    lower_clip_fraction: float = 0.01,
    upper_clip_fraction: float = 0.01,
    minval: int = 1,
    maxval: int = 255,
    levels_path: str | None = None,
) -> Chunk:
    """Stretch the contrast of each z section of a uint8 image (see the module doc)."""
    _check_fractions(lower_clip_fraction, upper_clip_fraction)
    _check_range(minval, maxval)
    array = np.asarray(chunk)
    if array.dtype != np.uint8 or (array.ndim == 4 and array.shape[0] != 1):
        raise ChunkflowError(
            f"section contrast needs a one-channel uint8 image, got {array.dtype} of shape "
            f"{array.shape}"
        )
    z0 = chunk.voxel_offset.z
    num_sections = array.shape[-3]
    if levels_path is not None:
        # an all-zero section (missing data, or read past the volume's edge) stays as it is and
        # needs no histogram
        filled = np.flatnonzero(
            array.reshape(-1, num_sections, *array.shape[-2:]).any(axis=(0, 2, 3))
        )
        histograms = read_levels(levels_path, [z0 + i for i in filled])
    out = np.empty_like(array)
    for i in range(num_sections):
        section = array[..., i, :, :]
        if levels_path is not None and z0 + i not in histograms:
            out[..., i, :, :] = section
            continue
        histogram = histograms[z0 + i] if levels_path is not None else section_histogram(section)
        levels = clip_levels(histogram, lower_clip_fraction, upper_clip_fraction)
        out[..., i, :, :] = contrast_lookup_table(levels, minval, maxval)[section]
    return chunk.with_array(out)


def _check_fractions(lower: float, upper: float) -> None:
    for name, value in (("lower", lower), ("upper", upper)):
        if not 0 <= value < 1:
            raise ParameterError(f"`{name}_clip_fraction` {value}: expected a number in [0, 1)")
    if lower + upper >= 1:
        raise ParameterError(
            f"`lower_clip_fraction` {lower} plus `upper_clip_fraction` {upper} must be below 1"
        )


def _check_range(minval: int, maxval: int) -> None:
    if not 0 <= minval < maxval <= 255:
        raise ParameterError(
            f"`minval` {minval} and `maxval` {maxval}: expected 0 <= minval < maxval <= 255"
        )


# intensity -----------------------------------------------------------------------------------
def normalize_intensity(chunk: Chunk) -> Chunk:
    """Scale to float32 in [0, 1]: integers by their dtype range, floats by their min and max.

    uint8 v becomes v / 255, uint16 v / 65535, int8 (v + 128) / 255. A float chunk is mapped
    min -> 0, max -> 1, taking the min and max of its finite values: NaN stays NaN (no value to
    scale) and -inf / +inf become 0 / 1, so one bad voxel does not blank the chunk. A constant
    float chunk becomes all zeros.
    """
    if chunk.is_segmentation or chunk.dtype == np.bool_:
        raise ChunkflowError(
            f"normalize-intensity needs an image, got a {chunk.dtype} {chunk.layer_type.value}"
        )
    array = np.asarray(chunk)
    if array.dtype.kind in "iu":
        out = to_unit(array)
    elif array.dtype.kind == "f":
        low, high = _finite_range(array)
        if high > low:
            out = (array.astype(np.float64) - low) / (high - low)
        else:
            out = (array > high).astype(np.float64)  # +inf is 1, the rest 0
        out[np.isnan(array)] = np.nan
        np.clip(out, 0.0, 1.0, out=out)
    else:
        raise ChunkflowError(
            f"normalize-intensity needs integer or float values, not {array.dtype}"
        )
    return Chunk(out.astype(np.float32), chunk.voxel_offset, chunk.voxel_size, chunk.layer_type)


def _finite_range(array: np.ndarray) -> tuple[float, float]:
    """The min and max of the finite values ((0, 0) when there are none)."""
    if not array.size:
        return 0.0, 0.0
    low, high = float(array.min()), float(array.max())
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    finite = array[np.isfinite(array)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def quantize(chunk: Chunk, mode: str = "xy") -> Chunk:
    """A float map in [0, 1] as a uint8 image: round(v * 255), values clipped to [0, 1].

    A 3-channel affinity map (channels z, y, x) is reduced first: `xy` the mean of channels 1
    and 2, `z` channel 0, `mean` all channels. A one-channel map is used as it is; `mean` also
    works for any number of channels. NaN becomes 0.
    """
    if mode not in QUANTIZE_MODES:
        raise ParameterError(f"`mode` {mode!r}: expected one of {', '.join(QUANTIZE_MODES)}")
    array = np.asarray(chunk)
    if array.dtype.kind != "f":
        raise ChunkflowError(f"quantize needs a float map in [0, 1], got {array.dtype}")
    if array.ndim == 3:
        values = array
    elif array.shape[0] == 1:
        values = array[0]
    elif mode == "mean":
        values = array.mean(axis=0, dtype=np.float32)
    elif array.shape[0] != 3:
        raise ParameterError(
            f"quantize `mode` {mode} needs a 3-channel affinity map or one channel, got "
            f"{array.shape[0]} channels (use `mode` mean)"
        )
    elif mode == "xy":
        values = (array[1].astype(np.float32) + array[2]) / np.float32(2)
    else:
        values = array[0]
    out = from_unit(np.nan_to_num(values.astype(np.float32, copy=False), nan=0.0), np.uint8, True)
    return Chunk(out, chunk.voxel_offset, chunk.voxel_size, LayerType.IMAGE)
