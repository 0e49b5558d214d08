"""Immutable 3D geometry: `Cartesian` vectors and `BoundingBox` regions.

Axis order is always (z, y, x), numpy order. Conversion to (x, y, z) happens only at the
boundary with cloud-volume (`Cartesian.xyz`, `Cartesian.from_xyz`).

The bounding-box string `z0-z1_y0-y1_x0-x1` names tasks and files; `BoundingBox.from_string`
and `str(bbox)` convert both ways (negative coordinates are written as `-5--2`).
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Iterable, Iterator, Sequence

from chunkflow.errors import ChunkflowError

__all__ = ["Cartesian", "BoundingBox", "BoxGrid", "grid_bboxes"]


class Cartesian(tuple):
    """A 3-vector of integers in (z, y, x) order.

    Arithmetic is element-wise and works with another 3-vector (any sequence of three numbers)
    or a scalar (any `numbers.Number`, numpy scalars included); it never concatenates like a
    plain tuple would.
    """

    __slots__ = ()

    def __new__(cls, *args) -> Cartesian:
        if len(args) == 1:
            args = tuple(args[0])
        if len(args) != 3:
            raise ValueError(f"a Cartesian needs 3 values (z, y, x), got {len(args)}: {args}")
        values = []
        for v in args:
            iv = int(v)
            if iv != v:
                raise ValueError(f"Cartesian values must be integers, got {args}")
            values.append(iv)
        return super().__new__(cls, values)

    @classmethod
    def from_xyz(cls, xyz: Sequence) -> Cartesian:
        """Build from an (x, y, z) sequence, as cloud-volume and neuroglancer use."""
        x, y, z = xyz
        return cls(z, y, x)

    @property
    def xyz(self) -> tuple[int, int, int]:
        return (self[2], self[1], self[0])

    z = property(operator.itemgetter(0))
    y = property(operator.itemgetter(1))
    x = property(operator.itemgetter(2))

    def _apply(self, other, op) -> Cartesian:
        if isinstance(other, numbers.Number):
            return Cartesian(*(op(a, other) for a in self))
        other = tuple(other)
        if len(other) != 3:
            raise ValueError(f"cannot combine {self} with {other}: need 3 values")
        return Cartesian(*(op(a, b) for a, b in zip(self, other)))

    def __add__(self, other):
        return self._apply(other, operator.add)

    __radd__ = __add__

    def __sub__(self, other):
        return self._apply(other, operator.sub)

    def __rsub__(self, other):
        return self._apply(other, lambda a, b: b - a)

    def __mul__(self, other):
        return self._apply(other, operator.mul)

    __rmul__ = __mul__

    def __floordiv__(self, other):
        return self._apply(other, operator.floordiv)

    def __mod__(self, other):
        return self._apply(other, operator.mod)

    def __truediv__(self, other):
        """Exact division; raises if any component does not divide evenly."""

        def div(a, b):
            if a % b:
                raise ValueError(f"{self} is not divisible by {other}")
            return a // b

        return self._apply(other, div)

    def __neg__(self):
        return Cartesian(*(-a for a in self))

    def ceildiv(self, other) -> Cartesian:
        return self._apply(other, lambda a, b: -(-a // b))

    def maximum(self, other) -> Cartesian:
        return self._apply(other, max)

    def minimum(self, other) -> Cartesian:
        return self._apply(other, min)

    @property
    def prod(self) -> int:
        return math.prod(self)

    def __repr__(self) -> str:
        return f"Cartesian({self[0]}, {self[1]}, {self[2]})"


_BBOX_RE = re.compile(r"^(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)$")


class BoundingBox:
    """A half-open box [start, stop) in voxel coordinates, (z, y, x) order. Immutable."""

    __slots__ = ("_start", "_stop")

    def __init__(self, start: Iterable, stop: Iterable):
        start, stop = Cartesian(start), Cartesian(stop)
        object.__setattr__(self, "_start", start)
        object.__setattr__(self, "_stop", stop)

    def __setattr__(self, name, value):
        raise AttributeError("BoundingBox is immutable")

    def __reduce__(self):  # pickle and copy through the constructor: attributes are fixed
        return (BoundingBox, (tuple(self._start), tuple(self._stop)))

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_delta(cls, start: Iterable, size: Iterable) -> BoundingBox:
        start = Cartesian(start)
        return cls(start, start + Cartesian(size))

    @classmethod
    def from_string(cls, text: str) -> BoundingBox:
        """Parse `z0-z1_y0-y1_x0-x1` (a path or a file name ending in it also works)."""
        name = text.rstrip("/").split("/")[-1]
        for suffix_start in (len(name), name.find(".")):
            if suffix_start <= 0:
                continue
            match = _BBOX_RE.match(name[:suffix_start])
            if match:
                v = [int(g) for g in match.groups()]
                return cls((v[0], v[2], v[4]), (v[1], v[3], v[5]))
        raise ChunkflowError(
            f"bad bounding box string {text!r}: expected z0-z1_y0-y1_x0-x1, e.g. 0-64_0-512_0-512"
        )

    @classmethod
    def from_slices(cls, slices: Sequence[slice]) -> BoundingBox:
        slices = tuple(slices)[-3:]
        return cls([s.start for s in slices], [s.stop for s in slices])

    @classmethod
    def _of_ints(cls, start: tuple[int, int, int], stop: tuple[int, int, int]) -> BoundingBox:
        """A box from two 3-tuples of ints, unchecked: for loops over millions of boxes."""
        box = object.__new__(cls)
        object.__setattr__(box, "_start", tuple.__new__(Cartesian, start))
        object.__setattr__(box, "_stop", tuple.__new__(Cartesian, stop))
        return box

    # properties -----------------------------------------------------------------------------
    @property
    def start(self) -> Cartesian:
        return self._start

    @property
    def stop(self) -> Cartesian:
        return self._stop

    @property
    def shape(self) -> Cartesian:
        return self._stop - self._start

    size = shape

    @property
    def voxel_count(self) -> int:
        return max(0, self.shape.prod) if not self.is_empty else 0

    @property
    def is_empty(self) -> bool:
        return any(b <= a for a, b in zip(self._start, self._stop))

    @property
    def string(self) -> str:
        s, e = self._start, self._stop
        return f"{s[0]}-{e[0]}_{s[1]}-{e[1]}_{s[2]}-{e[2]}"

    def __str__(self) -> str:
        return self.string

    def __repr__(self) -> str:
        return f"BoundingBox(start={tuple(self._start)}, stop={tuple(self._stop)})"

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, BoundingBox)
            and self._start == other._start
            and self._stop == other._stop
        )

    def __hash__(self) -> int:
        return hash((self._start, self._stop))

    # verbs (funlib.geometry vocabulary) -----------------------------------------------------
    def to_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self._start, self._stop))

    def shift(self, offset: Iterable) -> BoundingBox:
        offset = Cartesian(offset)
        return BoundingBox(self._start + offset, self._stop + offset)

    def grow(self, neg, pos=None) -> BoundingBox:
        """Move the start down by `neg` and the stop up by `pos` (default: `neg`), as funlib's
        `Roi.grow`; each a scalar or a 3-vector of voxels, negative shrinks."""

        def vector(amount) -> Cartesian:
            if isinstance(amount, numbers.Number):
                return Cartesian(amount, amount, amount)
            return Cartesian(amount)

        neg = vector(neg)
        pos = neg if pos is None else vector(pos)
        return BoundingBox(self._start - neg, self._stop + pos)

    def intersect(self, other: BoundingBox) -> BoundingBox:
        start = self._start.maximum(other.start)
        stop = self._stop.minimum(other.stop)
        return BoundingBox(start, stop.maximum(start))

    def union(self, other: BoundingBox) -> BoundingBox:
        return BoundingBox(self._start.minimum(other.start), self._stop.maximum(other.stop))

    def contains(self, other) -> bool:
        """True if `other` (a BoundingBox or a point) lies inside this box."""
        if isinstance(other, BoundingBox):
            if other.is_empty:
                return True
            return all(a <= b for a, b in zip(self._start, other.start)) and all(
                a >= b for a, b in zip(self._stop, other.stop)
            )
        point = Cartesian(other)
        return all(a <= p < b for a, p, b in zip(self._start, point, self._stop))

    def snap_to_grid(self, grid: Iterable, mode: str = "grow") -> BoundingBox:
        """Align start and stop to multiples of `grid`.

        mode: `grow` (outwards), `shrink` (inwards) or `closest`.
        """
        grid = Cartesian(grid)
        if mode == "grow":
            return BoundingBox((self._start // grid) * grid, self._stop.ceildiv(grid) * grid)
        if mode == "shrink":
            return BoundingBox(self._start.ceildiv(grid) * grid, (self._stop // grid) * grid)
        if mode == "closest":
            half = grid // 2
            return BoundingBox(
                ((self._start + half) // grid) * grid, ((self._stop + half) // grid) * grid
            )
        raise ValueError(f"snap_to_grid mode must be grow, shrink or closest, not {mode!r}")

    def is_aligned(self, grid: Iterable) -> bool:
        grid = Cartesian(grid)
        return all(v == 0 for v in self._start % grid) and all(v == 0 for v in self._stop % grid)

    def scale(self, factor: Iterable, mode: str = "grow") -> BoundingBox:
        """Map to a coarser grid (divide by `factor`); `grow` keeps every touched voxel."""
        factor = Cartesian(factor)
        if mode == "grow":
            return BoundingBox(self._start // factor, self._stop.ceildiv(factor))
        return BoundingBox(self._start.ceildiv(factor), self._stop // factor)


def grid_bboxes(
    roi: BoundingBox,
    chunk_size: Iterable,
    stride: Iterable | None = None,
    grid_size: Iterable | None = None,
    respect_stop: bool = False,
) -> BoxGrid:
    """Cut `roi` into a grid of chunks.

    Chunks of `chunk_size` start at `roi.start + i * stride` (stride defaults to the chunk size,
    a larger chunk than stride gives overlapping chunks). Without `grid_size`, the grid holds just
    enough chunks to cover the roi::

        roi        |<------------ roi ------------>|
        overhang   [chunk 0][chunk 1][chunk 2][chunk 3]      (default: last chunk may pass stop)
        shrink     [chunk 0][chunk 1][chunk 2][ch 3]|        (respect_stop: stops clipped to roi)

    With `respect_stop`, chunks that would start at or past the roi stop are left out.

    Returns the boxes in z, y, x raster order as a `BoxGrid`: a sequence computed from the index,
    so a grid of any size costs nothing until its boxes are read.
    """
    chunk_size = Cartesian(chunk_size)
    stride = Cartesian(stride) if stride is not None else chunk_size
    if min(chunk_size) <= 0 or min(stride) <= 0:
        raise ChunkflowError(
            f"chunk size {tuple(chunk_size)} and stride {tuple(stride)} must be positive"
        )
    if grid_size is None:
        if roi.is_empty:
            raise ChunkflowError(f"region of interest {roi} is empty")
        remainder = (roi.shape - chunk_size).maximum(0)
        grid_size = remainder.ceildiv(stride) + 1
    grid_size = Cartesian(grid_size)
    if min(grid_size) <= 0:
        raise ChunkflowError(f"grid size {tuple(grid_size)} must be positive")
    if respect_stop:  # a clipped chunk is empty exactly when it starts at or past the stop
        grid_size = grid_size.minimum(roi.shape.maximum(0).ceildiv(stride))
    return BoxGrid(roi, chunk_size, stride, grid_size, respect_stop)


class BoxGrid(Sequence):
    """The boxes of `grid_bboxes`, in z, y, x raster order, computed from their index.

    Box `k` starts at `roi.start + stride * (iz, iy, ix)` with `k = (iz * ny + iy) * nx + ix`
    for a grid of `shape = (nz, ny, nx)` boxes; with `clip`, its stop is clipped to the roi's.
    Slicing gives another `BoxGrid` (a range of indices), so `grid[a:b]` of a grid of 10^12 boxes
    is immediate, and iterating holds one box at a time. Immutable.
    """

    __slots__ = ("roi", "chunk_size", "stride", "shape", "clip", "_indices")

    def __init__(
        self,
        roi: BoundingBox,
        chunk_size: Cartesian,
        stride: Cartesian,
        shape: Cartesian,
        clip: bool = False,
        indices: range | None = None,
    ):
        for name, value in (
            ("roi", roi),
            ("chunk_size", Cartesian(chunk_size)),
            ("stride", Cartesian(stride)),
            ("shape", Cartesian(shape).maximum(0)),
            ("clip", clip),
        ):
            object.__setattr__(self, name, value)
        if indices is None:
            indices = range(self.shape.prod)
        object.__setattr__(self, "_indices", indices)

    def __setattr__(self, name, value):
        raise AttributeError("BoxGrid is immutable")

    def __reduce__(self):
        return (
            BoxGrid,
            (self.roi, self.chunk_size, self.stride, self.shape, self.clip, self._indices),
        )

    @property
    def indices(self) -> range:
        """The raster indices of these boxes in the whole grid."""
        return self._indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return BoxGrid(
                self.roi, self.chunk_size, self.stride, self.shape, self.clip, self._indices[item]
            )
        return self._box(self._indices[item])

    def __iter__(self) -> Iterator[BoundingBox]:
        box = self._box
        for k in self._indices:
            yield box(k)

    def _box(self, k: int) -> BoundingBox:
        _, ny, nx = self.shape
        iz, rest = divmod(k, ny * nx)
        iy, ix = divmod(rest, nx)
        (z0, y0, x0), (sz, sy, sx), (cz, cy, cx) = self.roi.start, self.stride, self.chunk_size
        start = (z0 + iz * sz, y0 + iy * sy, x0 + ix * sx)
        stop = (start[0] + cz, start[1] + cy, start[2] + cx)
        if self.clip:
            stop = tuple(map(min, stop, self.roi.stop))
        return BoundingBox._of_ints(start, stop)

    def __eq__(self, other) -> bool:
        """Equal to another grid, or to any sequence, with the same boxes in the same order."""
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        if isinstance(other, BoxGrid) and repr(other) == repr(self):
            return True
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"BoxGrid(roi={self.roi}, chunk_size={tuple(self.chunk_size)}, "
            f"stride={tuple(self.stride)}, shape={tuple(self.shape)}, clip={self.clip}, "
            f"indices={self._indices})"
        )
