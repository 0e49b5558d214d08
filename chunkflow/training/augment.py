"""Seeded augmentations of training samples, after gunpowder's augment nodes.

Every function takes a `numpy.random.Generator` and never touches global random state, so a
fixed seed repeats a run exactly.

Geometric augmentations (`simple_augment`, `ElasticTransform`, `elastic_augment`) take a dict of
named chunks that cover the same voxels and transform them together, so raw, labels and masks
stay aligned. Segmentation chunks and bool masks are resampled with nearest neighbour, so label
ids are never invented; everything else (images, float maps, uint8 masks typed as images) with
linear interpolation, rounded back to integer dtypes. The dtype and layer type never change.
Integer chunks other than uint8 are segmentations unless typed otherwise (`LayerType.default_for`:
a uint16 label volume is never interpolated); uint8 labels need the segmentation type or
`nearest`. `train` resamples its labels and mask with nearest neighbour whatever their type.
Affinity maps are refused: flipping or warping an affinity map does not give the affinities of
the flipped labels (the channels link p with p - e_c), so compute affinities after augmenting.

Intensity augmentations of the image alone are in `chunkflow.training.intensity`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from scipy import ndimage

from chunkflow.chunk import Chunk, check_same_grid
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.training.intensity import check_interval, check_probability

__all__ = [
    "ElasticTransform",
    "default_control_point_spacing",
    "elastic_augment",
    "simple_augment",
]

# ---------------------------------------------------------------------------------------------
# geometry


def _shared_bbox(chunks: Mapping[str, Chunk], what: str) -> BoundingBox:
    """The bounding box all chunks share; they may not be affinity maps."""
    if not chunks:
        raise ChunkflowError(f"{what} needs at least one chunk")
    first_name, first = next(iter(chunks.items()))
    for name, chunk in chunks.items():
        if chunk.is_affinity_map:
            raise ChunkflowError(
                f"{what} does not transform affinity maps ({name!r}): augment the labels and "
                "compute the affinities afterwards"
            )
        check_same_grid((name, chunk), (first_name, first))
    return first.bbox


def _check_axes(axes: Sequence[int], what: str) -> tuple[int, ...]:
    axes = tuple(int(a) for a in axes)
    if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise ChunkflowError(f"{what} must be distinct axes among 0, 1, 2 (z, y, x), got {axes}")
    return axes


def simple_augment(
    chunks: Mapping[str, Chunk],
    rng: np.random.Generator,
    mirror_axes: Sequence[int] = (0, 1, 2),
    transpose_axes: Sequence[int] = (1, 2),
) -> dict[str, Chunk]:
    """Random mirroring and transposition, the same for all chunks (gunpowder SimpleAugment).

    Each axis in `mirror_axes` (0 = z, 1 = y, 2 = x) is flipped with probability 1/2; the axes
    in `transpose_axes` (gunpowder's transpose_only) are randomly permuted among themselves,
    which needs them to have equal sizes. A channel axis stays in front. The chunks must cover
    the same voxels; affinity maps are refused (compute affinities after augmenting).
    """
    bbox = _shared_bbox(chunks, "simple-augment")
    mirror_axes = _check_axes(mirror_axes, "mirror axes")
    transpose_axes = _check_axes(transpose_axes, "transpose axes")
    sizes = {bbox.shape[a] for a in transpose_axes}
    if len(sizes) > 1:
        shape = " x ".join(str(bbox.shape[a]) for a in transpose_axes)
        raise ChunkflowError(
            f"cannot transpose axes {','.join(map(str, transpose_axes))} of unequal sizes "
            f"({shape}, chunk {bbox})"
        )
    flips = [a for a, draw in zip(mirror_axes, rng.random(len(mirror_axes))) if draw < 0.5]
    order = [0, 1, 2]
    for axis, source in zip(transpose_axes, rng.permutation(transpose_axes)):
        order[axis] = int(source)
    result = {}
    for name, chunk in chunks.items():
        array = np.asarray(chunk)
        lead = array.ndim - 3
        if flips:
            array = np.flip(array, axis=[lead + a for a in flips])
        array = array.transpose(*range(lead), *(lead + a for a in order))
        result[name] = Chunk(
            np.ascontiguousarray(array), chunk.voxel_offset, chunk.voxel_size, chunk.layer_type
        )
    return result


@functools.lru_cache(maxsize=64)
def _check_random(shape, spacing, sigma, rotation_interval, prob_slip, prob_shift) -> None:
    if min(shape) <= 0:
        raise ChunkflowError(f"the output shape {tuple(shape)} must be positive")
    if min(spacing) <= 0 or min(sigma) < 0:
        raise ChunkflowError(
            f"control point spacing {spacing} must be positive and jitter sigma {sigma} >= 0"
        )
    check_interval(rotation_interval, "rotation")
    check_probability(prob_slip, "prob_slip")
    check_probability(prob_shift, "prob_shift")
    if prob_slip + prob_shift > 1.0:
        raise ChunkflowError(f"prob_slip {prob_slip} + prob_shift {prob_shift} must be at most 1")


def _rotated_grid(shape: Cartesian, angle: float) -> np.ndarray:
    """Source coordinates (z, 3, y, x) of a rotation by `angle` in the yx plane about the
    output centre."""
    nz, ny, nx = shape
    z = np.arange(nz, dtype=np.float32).reshape(nz, 1, 1)
    y = np.arange(ny, dtype=np.float32).reshape(1, ny, 1)
    x = np.arange(nx, dtype=np.float32).reshape(1, 1, nx)
    grid = np.empty((nz, 3, ny, nx), np.float32)
    grid[:, 0] = z
    if angle:
        cy, cx = np.float32((ny - 1) / 2), np.float32((nx - 1) / 2)
        # exact quarter turns: cos(pi / 2) is 6e-17, not 0, and would widen the source box
        cos, sin = (np.float32(round(f(angle), 12)) for f in (math.cos, math.sin))
        grid[:, 1] = cy + cos * (y - cy) - sin * (x - cx)
        grid[:, 2] = cx + sin * (y - cy) + cos * (x - cx)
    else:
        grid[:, 1] = y
        grid[:, 2] = x
    return grid


def _add_jitter(grid, shape: Cartesian, spacing, sigma, rng: np.random.Generator) -> None:
    """Add control point displacements (Gaussian, `sigma` voxels per axis, `spacing` voxels
    apart), upsampled with cubic splines, to `grid` in place."""
    points = [max(1, round((n - 1) / s) + 1) for n, s in zip(shape, spacing)]
    mz, my, mx = (_upsample_matrix(p, n) for p, n in zip(points, shape))
    mx_rows = np.ascontiguousarray(mx.T)
    for axis in range(3):
        if sigma[axis] > 0:
            control = rng.normal(0.0, sigma[axis], points).astype(np.float32)
            # separable cubic upsampling, smallest products first (einsum: no BLAS threads for
            # these tiny products)
            field = np.einsum("za,abc->zbc", mz, control)
            field = np.einsum("yb,zbc->czy", my, field)[..., None]
            term = np.empty(shape, np.float32)
            for c in range(points[2]):
                np.multiply(field[c], mx_rows[c], out=term)
                grid[:, axis] += term


def _add_misalignment(grid, rng, prob_slip: float, prob_shift: float, max_misalign: int) -> None:
    """Per section, a slip (this section alone) or a shift (this and all following sections)
    of up to `max_misalign` voxels in y and x, added to `grid` in place."""
    nz = grid.shape[0]
    shifts = np.zeros((nz, 2), np.float32)
    offset = np.zeros(2, np.float32)
    for section, draw in enumerate(rng.random(nz)):
        if draw < prob_slip:
            shifts[section] = offset + rng.integers(-max_misalign, max_misalign + 1, 2)
            continue
        if draw < prob_slip + prob_shift:
            offset = offset + rng.integers(-max_misalign, max_misalign + 1, 2)
        shifts[section] = offset
    grid[:, 1] += shifts[:, 0].reshape(nz, 1, 1)
    grid[:, 2] += shifts[:, 1].reshape(nz, 1, 1)


def _upsample_matrix(points: int, size: int) -> np.ndarray:
    """(size, points): cubic-spline interpolation from `points` control points spanning `size`."""
    if points == 1:
        return np.ones((size, 1), np.float32)
    matrix = ndimage.zoom(
        np.eye(points, dtype=np.float32), (size / points, 1), order=3, mode="nearest"
    )
    assert matrix.shape == (size, points), matrix.shape
    matrix.flags.writeable = False
    return matrix


#: Default voxels between control points in y and x; along z the same world distance.
CONTROL_POINT_SPACING = 40


def default_control_point_spacing(voxel_size=(1, 1, 1)) -> tuple[int, int, int]:
    """Voxels between control points (z, y, x), the same world distance along every axis:
    `CONTROL_POINT_SPACING` voxels of the finer in-plane axis.

    (4, 40, 40) for 40 x 4 x 4 nm voxels, the values of gunpowder's boundary tutorial, and
    (40, 40, 40) for isotropic ones. Four sections between control points on isotropic data
    would move every section by about 0.4 voxels (up to 2) against its neighbour, a section
    misalignment that such data (FIB-SEM) does not have and the network would learn.
    """
    voxel_size = _triple(voxel_size, "voxel size")
    if min(voxel_size) <= 0:
        raise ChunkflowError(f"the voxel size {voxel_size} must be positive")
    world = CONTROL_POINT_SPACING * min(voxel_size[1:])
    return tuple(max(1, round(world / v)) for v in voxel_size)


def _triple(value, what: str) -> tuple[float, float, float]:
    values = tuple(value) if isinstance(value, Sequence) else (value,) * 3
    if len(values) != 3:
        raise ChunkflowError(f"{what} needs three values (z, y, x), got {value}")
    return tuple(float(v) for v in values)


class ElasticTransform:
    """A smooth random warp with rotation and section misalignment (gunpowder ElasticAugment).

    The transform maps each output voxel p (relative to the output origin) to a source
    coordinate in the input, relative to the same origin; `source_bbox` is the smallest
    integer box of input voxels that `apply` reads (one more voxel for linear interpolation),
    and may start below 0. Build one with `ElasticTransform.random`, or from explicit source
    coordinates of shape (3, z, y, x).
    """

    def __init__(self, coordinates: np.ndarray):
        coordinates = np.asarray(coordinates, np.float32)
        if coordinates.ndim != 4 or coordinates.shape[0] != 3:
            raise ChunkflowError(
                f"source coordinates must have shape (3, z, y, x), got {coordinates.shape}"
            )
        self._setup(np.ascontiguousarray(coordinates.transpose(1, 0, 2, 3)))

    def _setup(self, grid: np.ndarray) -> None:
        """Take over `grid`, the source coordinates in the layout (z, 3, y, x).

        The layout keeps a section's coordinates together. The grid becomes local coordinates
        (relative to the source box) in place; the stop uses the same float32 rounding.
        """
        self.output_shape = Cartesian(grid.shape[0], *grid.shape[2:])
        start = np.floor(grid.min(axis=(0, 2, 3)))
        stop = start + np.ceil(grid.max(axis=(0, 2, 3)) - start) + 1
        grid -= start.reshape(3, 1, 1)
        self.source_bbox = BoundingBox(start.astype(int), stop.astype(int))
        self._local = grid
        self._nearest: np.ndarray | None = None
        self._linear: tuple | None = None
        sections = grid[:, 0, 0, 0]
        self._planar = bool(
            np.array_equal(sections, np.round(sections))
            and (grid[:, 0] == sections[:, None, None]).all()
        )
        self._sections = sections.astype(int)

    @classmethod
    def random(
        cls,
        output_shape,
        rng: np.random.Generator,
        control_point_spacing=None,
        jitter_sigma=(0.0, 2.0, 2.0),
        rotation_interval=(0.0, math.pi / 2),
        prob_slip: float = 0.0,
        prob_shift: float = 0.0,
        max_misalign: int = 0,
        subsample: int = 1,
        voxel_size=(1, 1, 1),
    ) -> ElasticTransform:
        """A random transform producing `output_shape` (z, y, x) voxels.

        Args:
            control_point_spacing: voxels between control points (z, y, x); the control points
                span the output, the spacing is rounded so that they fit. Default: the same
                world distance along every axis, `default_control_point_spacing(voxel_size)`.
            jitter_sigma: standard deviation (voxels) of the Gaussian displacement of each
                control point per axis; displacements are upsampled with cubic splines.
            rotation_interval: the rotation angle (radians) in the yx plane about the output
                centre is uniform in this interval.
            prob_slip: per z section, probability that this section alone shifts in y/x.
            prob_shift: per z section, probability that this and all following sections shift.
            max_misalign: largest slip or shift, voxels (integer, uniform in [-max, max]).
            subsample: accepted for gunpowder compatibility; the displacement field is computed
                separably at full resolution, which is already cheap, so it has no effect.
            voxel_size: of the data warped (z, y, x); only the default spacing depends on it.
        """
        shape = Cartesian(output_shape)
        if control_point_spacing is None:
            control_point_spacing = default_control_point_spacing(voxel_size)
        spacing = _triple(control_point_spacing, "control point spacing")
        sigma = _triple(jitter_sigma, "jitter sigma")
        _check_random(shape, spacing, sigma, rotation_interval, prob_slip, prob_shift)
        if max_misalign < 0 or int(max_misalign) != max_misalign:
            raise ChunkflowError(f"max_misalign {max_misalign} must be an integer >= 0")
        if subsample < 1:
            raise ChunkflowError(f"subsample must be >= 1, got {subsample}")
        grid = _rotated_grid(shape, float(rng.uniform(*rotation_interval)))
        if max(sigma) > 0:
            _add_jitter(grid, shape, spacing, sigma, rng)
        if max_misalign > 0 and prob_slip + prob_shift > 0:
            _add_misalignment(grid, rng, prob_slip, prob_shift, int(max_misalign))
        transform = cls.__new__(cls)
        transform._setup(grid)
        return transform

    def apply(self, chunk: Chunk, output_offset, order: int | None = None) -> Chunk:
        """The warped chunk: `output_shape` voxels at `output_offset` (global z, y, x).

        Reads the voxels of `chunk` at output_offset + source coordinates, so `chunk` must
        contain `source_bbox` shifted by `output_offset`. `order` 0 is nearest neighbour,
        1 linear; by default nearest for segmentations and bool chunks, else linear.
        """
        output_offset = Cartesian(output_offset)
        needed = self.source_bbox.shift(output_offset)
        if not chunk.bbox.contains(needed):
            raise ChunkflowError(
                f"the elastic transform reads {needed} but the chunk covers only {chunk.bbox}"
            )
        if order is None:
            order = 0 if chunk.is_segmentation or chunk.dtype == np.bool_ else 1
        if order not in (0, 1):
            raise ChunkflowError(f"interpolation order must be 0 or 1, got {order}")
        source = np.asarray(chunk.crop(needed))
        channels = source.reshape((-1, *source.shape[-3:]))
        warp = self._take_nearest if order == 0 else self._interpolate
        warped = [warp(channel) for channel in channels]
        out = warped[0] if len(warped) == 1 else np.stack(warped)
        if order == 1:
            if chunk.dtype.kind == "f":
                out = out.astype(chunk.dtype, copy=False)
            else:
                out = _round_to(out, chunk.dtype)
        out = out.reshape((*source.shape[:-3], *self.output_shape))
        return Chunk(out, output_offset, chunk.voxel_size, chunk.layer_type)

    def _take_nearest(self, source: np.ndarray) -> np.ndarray:
        if self._nearest is None:
            local = self._local
            z = self._sections.reshape(-1, 1, 1) if self._planar else np.rint(local[:, 0])
            y, x = np.rint(local[:, 1]), np.rint(local[:, 2])
            self._nearest = _flat_index(z, y, x, *self.source_bbox.shape[1:])
        return np.take(np.ascontiguousarray(source).reshape(-1), self._nearest)

    def _linear_plan(self) -> tuple:
        """Flat index of the first corner (into the source grown by one voxel) and weights.

        Computed once per transform and shared by all chunks it warps; `_interpolate` then
        needs only gathers and a few multiply-adds (scipy's map_coordinates is 3x slower here).
        """
        if self._linear is None:
            local = self._local
            y, x = np.floor(local[:, 1]), np.floor(local[:, 2])
            if self._planar:
                z, fz = self._sections.reshape(-1, 1, 1), None
            else:
                z = np.floor(local[:, 0])
                fz = local[:, 0] - z
            sy, sx = (n + 1 for n in self.source_bbox.shape[1:])
            index = _flat_index(z, y, x, sy, sx)
            np.subtract(local[:, 1], y, out=y)
            np.subtract(local[:, 2], x, out=x)
            self._linear = (index, fz, y, x)
        return self._linear

    def _interpolate(self, source: np.ndarray) -> np.ndarray:
        """Linear interpolation of `source` (the source box) at the local coordinates."""
        index, fz, fy, fx = self._linear_plan()
        # one extra voxel at the high end: the upper corner of a coordinate on the last voxel,
        # read with weight 0
        grown = np.zeros([n + 1 for n in source.shape], np.result_type(source, np.float32))
        grown[:-1, :-1, :-1] = source
        flat = grown.reshape(-1)
        sy, sx = grown.shape[1:]

        def bilinear(start: int) -> np.ndarray:
            top, top_right = flat[start:].take(index), flat[start + 1 :].take(index)
            low, low_right = flat[start + sx :].take(index), flat[start + sx + 1 :].take(index)
            top_right -= top
            top_right *= fx
            top += top_right
            low_right -= low
            low_right *= fx
            low += low_right
            low -= top
            low *= fy
            top += low
            return top

        out = bilinear(0)
        if fz is not None:
            upper = bilinear(sy * sx)
            upper -= out
            upper *= fz
            out += upper
        return out

    def __repr__(self) -> str:
        return (
            f"ElasticTransform(output_shape={tuple(self.output_shape)}, "
            f"source_bbox={self.source_bbox})"
        )


def _flat_index(z, y, x, sy: int, sx: int) -> np.ndarray:
    """(z * sy + y) * sx + x as intp, from arrays holding whole numbers (z may broadcast)."""
    index = np.empty(np.shape(y), np.intp)
    np.multiply(z, sy, out=index, casting="unsafe")
    np.add(index, y, out=index, casting="unsafe")
    index *= sx
    np.add(index, x, out=index, casting="unsafe")
    return index


def _round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.bool_:
        return values >= 0.5
    info = np.iinfo(dtype)
    np.rint(values, out=values)
    np.clip(values, info.min, info.max, out=values)
    return values.astype(dtype)


def _reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Indices reflected into [0, size) about the edge voxels (numpy pad mode 'reflect')."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index >= size, period - index, index)


def _reflect_pad(chunk: Chunk, bbox: BoundingBox) -> Chunk:
    """`chunk` extended by reflection to cover `bbox`."""
    array = np.asarray(chunk)
    for axis in range(3):
        index = np.arange(bbox.start[axis], bbox.stop[axis]) - chunk.voxel_offset[axis]
        array = np.take(array, _reflect_index(index, chunk.spatial_shape[axis]), axis=axis - 3)
    return Chunk(array, bbox.start, chunk.voxel_size, chunk.layer_type)


def elastic_augment(
    chunks: Mapping[str, Chunk],
    rng: np.random.Generator,
    output_size=None,
    nearest: Collection[str] = (),
    **transform_options,
) -> dict[str, Chunk]:
    """One random `ElasticTransform` applied to all chunks; outputs centred in the input.

    The output has `output_size` voxels (default: the input size), centred in the input (the
    offset moves by half the size difference, rounded down). Where the transform reads voxels
    outside the input, the input is extended by reflection about its edge voxels (numpy's
    'reflect' padding), so the output is always complete. `nearest` names chunks to resample
    with nearest neighbour besides segmentations (e.g. uint8 masks); `transform_options` go to
    `ElasticTransform.random`.
    """
    bbox = _shared_bbox(chunks, "elastic-augment")
    unknown = sorted(set(nearest) - set(chunks))
    if unknown:
        raise ChunkflowError(f"nearest names chunks that are not augmented: {', '.join(unknown)}")
    size = bbox.shape if output_size is None else Cartesian(output_size)
    if min(size) <= 0:
        raise ChunkflowError(f"the output size {tuple(size)} must be positive")
    output_offset = bbox.start + (bbox.shape - size) // 2
    transform_options.setdefault("voxel_size", next(iter(chunks.values())).voxel_size)
    transform = ElasticTransform.random(size, rng, **transform_options)
    needed = transform.source_bbox.shift(output_offset)
    result = {}
    for name, chunk in chunks.items():
        source = chunk if chunk.bbox.contains(needed) else _reflect_pad(chunk, needed)
        result[name] = transform.apply(source, output_offset, 0 if name in nearest else None)
    return result
