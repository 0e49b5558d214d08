"""What files say about geometry, checked where it is read.

Every reader passes the geometry a file stores (voxel size, voxel offset, world offset, layer
type) and the shape and dtype of its array through these functions, so a bad file fails with
one line naming the file, the value and what was expected, instead of becoming a chunk in the
wrong place. A voxel size stored as bytes or text, with two values, a zero, a negative value or
NaN is refused; so are empty arrays, arrays of strings or records, and arrays that are not
3D (z, y, x) or 4D (c, z, y, x).
"""

from __future__ import annotations

import numpy as np

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian

__all__ = [
    "cutout_box",
    "precomputed_info",
    "stored_array",
    "stored_layer_type",
    "stored_vector",
    "voxel_offset_of",
]


def stored_vector(
    source: str,
    what: str,
    value,
    positive: bool = False,
    integer: bool = True,
    axes: str = "z, y, x",
) -> Cartesian | tuple[float, float, float]:
    """A 3-vector read from `source`: three finite numbers, integers unless `integer` is false
    (then a tuple of floats), all above 0 with `positive`. `axes` names their order."""
    kind = ("positive " if positive else "") + ("integers" if integer else "numbers")
    array = None
    if not isinstance(value, (str, bytes, np.str_, np.bytes_)):
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):
            array = None
    if (
        array is None
        or array.dtype.kind not in "iuf"
        or array.shape != (3,)
        or not np.isfinite(array).all()
        or (integer and (array != np.round(array)).any())
        or (positive and (array <= 0).any())
    ):
        raise ChunkflowError(f"{source}: {what} is {_show(value)}; expected 3 {kind} ({axes})")
    if not integer:
        return tuple(float(v) for v in array)
    return Cartesian(*(int(v) for v in array))


def voxel_offset_of(source: str, offset, voxel_size) -> Cartesian:
    """The voxel offset of a world-unit `offset` (gunpowder's `offset` attribute), which must
    be a whole number of voxels."""
    offset = stored_vector(source, "the offset", offset)
    voxel_size = Cartesian(voxel_size)
    if any(offset % voxel_size):
        raise ChunkflowError(
            f"{source}: the offset {tuple(offset)} (world units) is not a multiple of the voxel "
            f"size {tuple(voxel_size)}; expected a whole number of voxels"
        )
    return offset // voxel_size


def cutout_box(
    source: str, bbox: BoundingBox | None, data_bbox: BoundingBox, clip: bool = False
) -> BoundingBox:
    """The box a reader of `source` reads: all of the data for None, else `bbox`, which the
    data must cover (with `clip`, the part of `bbox` inside the data)."""
    if bbox is None:
        return data_bbox
    if clip and not bbox.intersect(data_bbox).is_empty:
        bbox = bbox.intersect(data_bbox)
    if bbox.is_empty or not data_bbox.contains(bbox):
        raise ChunkflowError(
            f"{source}: cutout {bbox} is outside the data, which covers {data_bbox}"
        )
    return bbox


def stored_array(source: str, shape, dtype) -> None:
    """The array of `source`: 3D (z, y, x) or 4D (c, z, y, x), not empty, of numbers."""
    shape, dtype = tuple(shape), np.dtype(dtype)
    if len(shape) not in (3, 4):
        raise ChunkflowError(
            f"{source}: array of shape {shape}; expected 3D (z, y, x) or 4D (c, z, y, x)"
        )
    if 0 in shape:
        raise ChunkflowError(f"{source}: array of shape {shape} is empty; expected voxels")
    if dtype.kind not in "biuf":
        raise ChunkflowError(
            f"{source}: array of dtype {dtype}; expected numbers (bool, integer or float)"
        )


def stored_layer_type(source: str, value):
    """The layer type a file stores (text or bytes), or None when it stores none."""
    from chunkflow.chunk import LayerType

    if value is None:
        return None
    text = value
    if isinstance(value, (bytes, np.bytes_)):
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = None
    if not isinstance(text, str):
        raise ChunkflowError(
            f"{source}: the layer type is {_show(value)}; expected one of "
            f"{', '.join(t.value for t in LayerType)}"
        )
    try:
        return LayerType.parse(text)
    except ChunkflowError as err:
        raise ChunkflowError(f"{source}: {err}") from None


def precomputed_info(source: str, info) -> None:
    """The geometry and data type of a precomputed `info`: scales with resolutions (positive
    numbers), sizes (positive integers) and voxel offsets (integers), all (x, y, z); a numeric
    data type and a positive channel count."""
    if not isinstance(info, dict) or not isinstance(info.get("scales"), list):
        raise ChunkflowError(f"{source}: no list of scales; expected a precomputed info")
    if not info["scales"]:
        raise ChunkflowError(f"{source}: the info has no scales; expected at least mip 0")
    try:
        dtype = np.dtype(info.get("data_type"))
    except TypeError:
        dtype = None
    if dtype is None or info.get("data_type") is None or dtype.kind not in "biuf":
        raise ChunkflowError(
            f"{source}: data_type {_show(info.get('data_type'))} in the info; expected a "
            "numeric type such as uint8 or float32"
        )
    channels = info.get("num_channels", 1)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ChunkflowError(
            f"{source}: num_channels {_show(channels)} in the info; expected a positive integer"
        )
    for mip, scale in enumerate(info["scales"]):
        if not isinstance(scale, dict):
            raise ChunkflowError(f"{source}: scale {mip} is {_show(scale)}; expected an object")
        here = f"{source}: scale {mip}"
        stored_vector(here, "resolution", scale.get("resolution"), True, False, "x, y, z")
        stored_vector(here, "size", scale.get("size"), True, True, "x, y, z")
        stored_vector(here, "voxel_offset", scale.get("voxel_offset", (0, 0, 0)), axes="x, y, z")


def _show(value) -> str:
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    elif isinstance(value, (list, tuple)):
        value = [v.item() if isinstance(v, np.generic) else v for v in value]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
