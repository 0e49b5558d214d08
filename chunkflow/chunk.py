"""`Chunk`: a numpy array placed in space.

A chunk is an array of shape (z, y, x) or channel-first (c, z, y, x) together with
`voxel_offset` (the global voxel coordinate of its first voxel), `voxel_size` (physical size of
one voxel, e.g. nm) and an explicit `layer_type`. Nothing here reads or writes files.

Numpy interop keeps geometry: `chunk + 1`, `np.sqrt(chunk)` or `chunk > 0` return chunks at the
same place; `np.asarray(chunk)` gives the plain array. Indexing with a `BoundingBox` (global
coordinates) crops or writes a region; any other index goes to the plain array.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import NamedTuple

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.memory import require_memory

__all__ = [
    "Chunk",
    "Grid",
    "LayerType",
    "cast_array",
    "check_same_grid",
    "from_unit",
    "to_unit",
    "unit_scale",
]


class LayerType(str, Enum):
    """What the values of a chunk mean. Stored, never guessed by scanning data."""

    IMAGE = "image"
    SEGMENTATION = "segmentation"
    PROBABILITY_MAP = "probability_map"
    AFFINITY_MAP = "affinity_map"

    @classmethod
    def default_for(cls, dtype, ndim: int, num_channels: int = 1) -> LayerType:
        """The type assumed when none is stored or given, from dtype and shape only.

        The default is the safe one (gunpowder's rule: only uint8 and float are interpolated):
        a label volume taken for an image gets interpolated and resampled into ids that do not
        exist, while an image taken for labels is at worst resampled with nearest neighbour.

        - bool and every integer dtype except uint8: segmentation (a uint16 EM image must be
          declared an image)
        - uint8 and 3D float: image
        - 4D float with 3 channels: affinity map; other 4D float: probability map
        """
        dtype = np.dtype(dtype)
        if dtype == np.bool_ or (dtype.kind in "iu" and dtype != np.uint8):
            return cls.SEGMENTATION
        if ndim == 4 and dtype.kind == "f":
            return cls.AFFINITY_MAP if num_channels == 3 else cls.PROBABILITY_MAP
        return cls.IMAGE

    @classmethod
    def parse(cls, value) -> LayerType:
        if isinstance(value, cls):
            return value
        text = str(value).lower().replace("-", "_")
        aliases = {
            "affinity": cls.AFFINITY_MAP,
            "probability": cls.PROBABILITY_MAP,
            "seg": cls.SEGMENTATION,
        }
        if text in aliases:
            return aliases[text]
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise ChunkflowError(f"unknown layer type {value!r}: expected one of {names}") from None

    @property
    def is_label(self) -> bool:
        return self is LayerType.SEGMENTATION


class Chunk(NDArrayOperatorsMixin):
    """An array of shape (z, y, x) or (c, z, y, x) with voxel offset, voxel size and layer type."""

    __slots__ = ("array", "voxel_offset", "voxel_size", "layer_type")

    def __init__(self, array, voxel_offset=(0, 0, 0), voxel_size=(1, 1, 1), layer_type=None):
        array = np.asarray(array)
        if array.ndim not in (3, 4):
            raise ChunkflowError(
                f"a chunk must be 3D (z,y,x) or 4D (c,z,y,x), got an array of shape {array.shape}"
            )
        voxel_size = Cartesian(voxel_size)
        if min(voxel_size) <= 0:
            raise ChunkflowError(f"voxel size must be positive, got {tuple(voxel_size)}")
        if layer_type is None:
            num_channels = array.shape[0] if array.ndim == 4 else 1
            layer_type = LayerType.default_for(array.dtype, array.ndim, num_channels)
        for name, value in (
            ("array", array),
            ("voxel_offset", Cartesian(voxel_offset)),
            ("voxel_size", voxel_size),
            ("layer_type", LayerType.parse(layer_type)),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        """The array, its geometry and layer type are fixed: `with_array`, `crop` or a new
        Chunk give another; the voxels themselves may be written in place."""
        raise AttributeError(f"Chunk.{name} cannot be reassigned: make a new Chunk")

    def __reduce__(self):
        return (Chunk, (self.array, self.voxel_offset, self.voxel_size, self.layer_type))

    # construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        size=(64, 64, 64),
        dtype="uint8",
        pattern: str = "sin",
        voxel_offset=(0, 0, 0),
        voxel_size=(1, 1, 1),
        num_channels: int = 1,
        layer_type=None,
        seed: int | None = None,
    ) -> Chunk:
        """A synthetic chunk: `sin` (smooth waves), `zero` or `random` (uniform, seeded)."""
        size = Cartesian(size)
        if min(size) <= 0 or num_channels <= 0:
            raise ChunkflowError(
                f"chunk size {tuple(size)} and channel count {num_channels} must be positive"
            )
        dtype = np.dtype(dtype)
        shape = tuple(size) if num_channels == 1 else (num_channels, *size)
        elements = math.prod(shape)
        work = 0 if pattern == "zero" else (8 if dtype.kind in "fb" else 24) * elements  # float64
        require_memory(
            elements * dtype.itemsize + work,
            f"a {pattern} chunk of shape {shape} and dtype {dtype}",
        )
        if pattern == "zero":
            array = np.zeros(shape, dtype=dtype)
        elif pattern in ("sin", "random"):
            if pattern == "sin":
                zz, yy, xx = np.ogrid[: size[0], : size[1], : size[2]]
                unit = (np.sin(zz / 4.0) + np.sin(yy / 8.0) + np.sin(xx / 8.0) + 3.0) / 6.0
                unit = np.broadcast_to(unit, shape)
            else:
                unit = np.random.default_rng(seed).random(shape)
            array = from_unit(unit, dtype)
        else:
            raise ChunkflowError(f"unknown pattern {pattern!r}: expected sin, zero or random")
        return cls(array, voxel_offset, voxel_size, layer_type)

    @classmethod
    def from_array(
        cls, value, voxel_offset=None, voxel_size=None, layer_type=None, name: str = "array"
    ) -> Chunk:
        """`value` as a chunk: an array at `voxel_offset` (default 0, 0, 0) with `voxel_size`
        (default 1, 1, 1); a chunk as it is, if the geometry given is its own (else refused:
        a chunk is not moved or rescaled silently)."""
        if not isinstance(value, Chunk):
            return cls(
                value,
                (0, 0, 0) if voxel_offset is None else voxel_offset,
                (1, 1, 1) if voxel_size is None else voxel_size,
                layer_type,
            )
        for what, given, own in (
            ("voxel_offset", voxel_offset, value.voxel_offset),
            ("voxel_size", voxel_size, value.voxel_size),
        ):
            if given is not None and Cartesian(given) != own:
                raise ChunkflowError(
                    f"{name}: {what} {tuple(Cartesian(given))} differs from the chunk's own "
                    f"{tuple(own)}"
                )
        if layer_type is not None and LayerType.parse(layer_type) != value.layer_type:
            raise ChunkflowError(
                f"{name}: layer_type {layer_type} differs from the chunk's {value.layer_type.value}"
            )
        return value

    def with_array(self, array, layer_type=None) -> Chunk:
        """A new chunk at the same place holding `array` (same spatial shape)."""
        array = np.asarray(array)
        if array.shape[-3:] != self.array.shape[-3:]:
            raise ValueError(
                f"array of shape {array.shape} does not fit chunk of shape {self.array.shape}"
            )
        if layer_type is None and array.dtype.kind == self.array.dtype.kind:
            layer_type = self.layer_type
        return Chunk(array, self.voxel_offset, self.voxel_size, layer_type)

    # geometry -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    @property
    def num_channels(self) -> int:
        return 1 if self.array.ndim == 3 else self.array.shape[0]

    @property
    def spatial_shape(self) -> Cartesian:
        return Cartesian(self.array.shape[-3:])

    @property
    def bbox(self) -> BoundingBox:
        return BoundingBox.from_delta(self.voxel_offset, self.spatial_shape)

    @property
    def voxel_stop(self) -> Cartesian:
        return self.voxel_offset + self.spatial_shape

    @property
    def is_image(self) -> bool:
        return self.layer_type is LayerType.IMAGE

    @property
    def is_segmentation(self) -> bool:
        return self.layer_type is LayerType.SEGMENTATION

    @property
    def is_affinity_map(self) -> bool:
        return self.layer_type is LayerType.AFFINITY_MAP

    @property
    def is_probability_map(self) -> bool:
        return self.layer_type is LayerType.PROBABILITY_MAP

    def same_geometry(self, other: Chunk) -> bool:
        return self.bbox == other.bbox and self.voxel_size == other.voxel_size

    # cropping and writing -------------------------------------------------------------------
    def _local_slices(self, bbox: BoundingBox) -> tuple:
        if not self.bbox.contains(bbox) or bbox.is_empty:
            raise ChunkflowError(f"bounding box {bbox} is not inside the chunk's {self.bbox}")
        local = bbox.shift(-self.voxel_offset)
        return (slice(None),) * (self.ndim - 3) + local.to_slices()

    def crop(self, bbox: BoundingBox) -> Chunk:
        """The part of this chunk inside `bbox` (global coordinates); a view, not a copy."""
        return Chunk(
            self.array[self._local_slices(bbox)], bbox.start, self.voxel_size, self.layer_type
        )

    cutout = crop

    def crop_margin(self, margin) -> Chunk:
        """Remove `margin` voxels (a 3-vector or an int) from both sides of every axis."""
        return self.crop(
            self.bbox.grow(
                -Cartesian(margin)
                if not isinstance(margin, int)
                else -Cartesian(margin, margin, margin)
            )
        )

    def blit(self, other: Chunk) -> None:
        """Copy the part of `other` that overlaps this chunk into this chunk.

        Both must have the same voxel size and overlap (`check_same_grid`).
        """
        check_same_grid(("source", other), ("target", self), boxes="overlap", what="blit")
        overlap = self.bbox.intersect(other.bbox)
        self.array[self._local_slices(overlap)] = other.array[other._local_slices(overlap)]

    def __getitem__(self, key):
        if isinstance(key, BoundingBox):
            return self.crop(key)
        return self.array[key]

    def __setitem__(self, key, value):
        if isinstance(key, BoundingBox):
            key = self._local_slices(key)
        self.array[key] = np.asarray(value)

    # numpy interop --------------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        if dtype is None and not copy:
            return self.array
        return np.array(self.array, dtype=dtype, copy=True if copy else None)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        unwrap = [np.asarray(x) if isinstance(x, Chunk) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(
                np.asarray(x) if isinstance(x, Chunk) else x for x in kwargs["out"]
            )
        result = getattr(ufunc, method)(*unwrap, **kwargs)
        return self._wrap(result)

    def _wrap(self, result):
        if isinstance(result, tuple):
            return tuple(self._wrap(r) for r in result)
        if (
            isinstance(result, np.ndarray)
            and result.ndim in (3, 4)
            and (result.shape[-3:] == self.array.shape[-3:])
        ):
            return self.with_array(result)
        return result

    def astype(self, dtype, layer_type=None) -> Chunk:
        array = self.array.astype(dtype, copy=False)
        return self.with_array(array, layer_type)

    def cast(self, dtype, rescale: bool = False) -> Chunk:
        """This chunk as `dtype`, refusing a cast that would change values (`cast_array`).

        The layer type is kept: a cast changes how values are stored, not what they mean.
        """
        return Chunk(
            cast_array(self.array, dtype, rescale),
            self.voxel_offset,
            self.voxel_size,
            self.layer_type,
        )

    def __len__(self) -> int:
        return len(self.array)

    def __repr__(self) -> str:
        return (
            f"Chunk(shape={self.shape}, dtype={self.dtype}, offset={tuple(self.voxel_offset)}, "
            f"voxel_size={tuple(self.voxel_size)}, layer_type={self.layer_type.value})"
        )


def cast_array(array, dtype, rescale: bool = False) -> np.ndarray:
    """`array` as `dtype`, refusing a cast that would change values; every `--dtype` option
    that converts data (readers, writers) goes through here.

    Without `rescale` a cast keeps every value or fails, counting the values it would change:

    - to an integer dtype (or bool, 0 and 1), every value must lie in the dtype's range and
      floats must be finite whole numbers (a float map in [0, 1] would become zeros and ones);
    - to a float dtype, finite floats must not overflow to inf and integers must stay whole
      numbers (at most 2^24 in magnitude for float32, 2^53 for float64).

    With `rescale`, floats in [0, 1] map onto the whole range of an integer dtype by
    `from_unit` (round(v * 255) for uint8, round(v * 255) - 128 for int8); values outside
    [0, 1], NaN included, are refused.
    """
    array = np.asarray(array)
    source, target = array.dtype, np.dtype(dtype)
    if rescale:
        if source.kind != "f" or target.kind not in "iu":
            raise ChunkflowError(
                f"rescaling maps floats in [0, 1] onto an integer range, not {source} onto {target}"
            )
        return from_unit(array, target)
    if source == target or source == np.bool_ or array.size == 0:
        return array.astype(target, copy=False)
    if source.kind not in "iuf" or target.kind not in "iufb":
        raise ChunkflowError(f"cannot cast {source} to {target}")
    problems = _cast_losses(array, target)
    if problems:
        count = sum(n for n, _ in problems)
        what = ", ".join(f"{n:,} {why}" for n, why in problems)
        raise ChunkflowError(
            f"casting {source} to {target} would change {count:,} of {array.size:,} values: "
            f"{what}{_span(array)}"
        )
    return array.astype(target)


def _cast_losses(array: np.ndarray, target: np.dtype) -> list[tuple[int, str]]:
    """(count, reason) of the values of `array` that `target` cannot hold exactly."""
    source = array.dtype
    if target.kind == "f":
        if source.kind == "f":
            if target.itemsize >= source.itemsize:
                return []
            limit = float(np.finfo(target).max)
            with np.errstate(invalid="ignore"):
                n = np.count_nonzero(np.isfinite(array) & (np.abs(array) > limit))
            return [(n, f"beyond {target}'s largest value {limit:g}")] if n else []
        limit = 2 ** (np.finfo(target).nmant + 1)
        if -limit <= array.min() and array.max() <= limit:
            return []
        n = np.count_nonzero((array < -limit) | (array > limit))
        return [(n, f"integers beyond {target}'s exact range ±{limit:,}")]
    low, high = (0, 1) if target == np.bool_ else (np.iinfo(target).min, np.iinfo(target).max)
    if source.kind in "iu":
        if low <= array.min() and array.max() <= high:
            return []
        return [(np.count_nonzero((array < low) | (array > high)), f"outside [{low}, {high}]")]
    finite = np.isfinite(array)
    problems = [(array.size - np.count_nonzero(finite), "not finite")]
    with np.errstate(invalid="ignore"):
        # float(high) + 1 is exact where float(high) is not (2^64 - 1 rounds up to 2^64)
        inside = finite & (array >= low) & (array < float(high) + 1)
        problems.append((np.count_nonzero(finite & ~inside), f"outside [{low}, {high}]"))
        whole = np.count_nonzero(inside & (np.floor(array) == array))
    problems.append((np.count_nonzero(inside) - whole, "not whole numbers"))
    return [(n, why) for n, why in problems if n]


def _span(array: np.ndarray) -> str:
    """` (the values span 0 to 1.5)`, of the finite ones for floats."""
    values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if not values.size:
        return ""
    which = "finite values" if values.size < array.size else "values"
    return f" (the {which} span {values.min():g} to {values.max():g})"


def unit_scale(dtype) -> tuple[float, float]:
    """The one rule that puts stored values into [0, 1] units: unit = (v - low) * scale.

    Integers span their dtype's range (uint8 v / 255, uint16 v / 65535, int8 (v + 128) / 255),
    bool is 0 or 1, floats are taken to be in units already (low 0, scale 1). `normalize`,
    `normalize-intensity` (for integers) and `inference` all convert through it, on the host
    with `to_unit` or on the device with the same two float32 operations; `from_unit` is the
    way back.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "fb":
        return 0.0, 1.0
    if dtype.kind not in "iu":
        raise ChunkflowError(f"cannot put values of dtype {dtype} into [0, 1] units")
    info = np.iinfo(dtype)
    return float(info.min), 1.0 / (float(info.max) - float(info.min))


def to_unit(array) -> np.ndarray:
    """A float32 copy of `array` in [0, 1] units (see `unit_scale`)."""
    array = np.asarray(array)
    low, scale = unit_scale(array.dtype)
    unit = array.astype(np.float32)
    if low:
        unit -= np.float32(low)
    if scale != 1.0:
        unit *= np.float32(scale)
    return unit


def from_unit(unit, dtype, clip: bool = False) -> np.ndarray:
    """`unit` ([0, 1] units) as `dtype`: the inverse of `to_unit`, the one way back.

    Integers span their dtype's whole range, v = round(min + u * (max - min)) (uint8
    round(u * 255), int8 round(u * 255) - 128), computed in float64 for dtypes wider than 16
    bits so that 1 lands on max exactly; bool is the one-bit integer (u > 0.5); floats keep
    their values. An integer dtype cannot hold values outside [0, 1] or NaN: they are refused,
    or with `clip` values are clipped into [0, 1] (for floats too; NaN is refused still).
    """
    dtype, unit = np.dtype(dtype), np.asarray(unit)
    if dtype.kind == "f":
        values = unit.astype(dtype)
        return np.clip(values, 0.0, 1.0, out=values) if clip else values
    if dtype.kind not in "iub":
        raise ChunkflowError(f"cannot put [0, 1] units into dtype {dtype}")
    work = np.float64 if dtype.itemsize > 2 or unit.dtype.itemsize > 4 else np.float32
    values = unit.astype(work)
    if clip:
        np.clip(values, 0.0, 1.0, out=values)
        bad, what = np.count_nonzero(np.isnan(values)), "NaN"
    else:
        with np.errstate(invalid="ignore"):
            bad = values.size - np.count_nonzero((values >= 0) & (values <= 1))
        what = "outside [0, 1]"
    low, high = (0, 1) if dtype == np.bool_ else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    if bad:
        raise ChunkflowError(
            f"rescaling {unit.dtype} [0, 1] onto {dtype} {low}..{high}: {bad:,} of "
            f"{values.size:,} values are {what}{_span(values)}"
        )
    if dtype == np.bool_:
        return values > 0.5
    values *= work(float(high) - float(low))
    if low:
        values += work(low)
    np.rint(values, out=values)
    if float(high) == high:
        return values.astype(dtype)
    # 64 bits: max rounds up to 2^63 or 2^64 in float64, one beyond the dtype
    top = values >= float(high)
    values[top] = 0
    out = values.astype(dtype)
    out[top] = high
    return out


class Grid(NamedTuple):
    """Where the voxels of something other than a chunk lie, e.g. a volume at one mip: its
    voxel size and, when known, its bounding box (both z, y, x)."""

    voxel_size: tuple
    bbox: BoundingBox | None = None


def check_same_grid(first, second, boxes: str | None = "same", what: str | None = None) -> None:
    """Refuse to combine two chunks, or a chunk and a volume, whose voxels do not line up.

    `first` and `second` are (name, Chunk or Grid) pairs. Their voxel sizes must be equal
    (chunks of different voxel sizes are never combined silently); `boxes` says what their
    bounding boxes must do: "same" cover the same voxels, "overlap" overlap, "inside" the
    first lies inside the second, None anything. `what` prefixes the error (library callers;
    the command line names the operator itself). The error is one line naming both, with their
    voxel sizes and boxes.
    """
    if boxes not in ("same", "overlap", "inside", None):
        raise ValueError(f"boxes must be same, overlap, inside or None, not {boxes!r}")
    (name_a, a), (name_b, b) = first, second
    one, other = _describe(name_a, a), _describe(name_b, b)
    if tuple(map(float, a.voxel_size)) != tuple(map(float, b.voxel_size)):
        problem = f"{one} and {other} have different voxel sizes"
    elif boxes is None or a.bbox is None or b.bbox is None:
        return
    elif boxes == "same":
        if a.bbox == b.bbox:
            return
        problem = f"{one} and {other} do not cover the same voxels"
    elif boxes == "overlap":
        if not a.bbox.intersect(b.bbox).is_empty:
            return
        problem = f"{one} and {other} do not overlap"
    else:
        if not a.bbox.is_empty and b.bbox.contains(a.bbox):
            return
        problem = f"{one} is outside {other}"
    raise ChunkflowError(f"{what}: {problem}" if what else problem)


def _describe(name: str, item) -> str:
    """`chunk 'seg' (voxel size (40, 4, 4), box 0-8_0-64_0-64)`; a Grid's name as given."""
    size = ", ".join(f"{float(v):g}" for v in item.voxel_size)
    where = f"voxel size ({size})" + (f", box {item.bbox}" if item.bbox is not None else "")
    return f"chunk {name!r} ({where})" if isinstance(item, Chunk) else f"{name} ({where})"
