"""OME-Zarr (OME-NGFF 0.4 and 0.5) metadata: a multiscale image's axes, units and coordinate
transformations as a voxel offset and a voxel size in nanometers, and the multiscale of a
new image.

A level's geometry is its own `coordinateTransformations` followed by the multiscale's (scale
= voxel size, translation = world offset of the first voxel), converted to nanometers from
the axes' units; a geometry that is not a whole number of nanometers is refused.
"""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import Cartesian
from chunkflow.io.metadata import stored_vector, voxel_offset_of

__all__ = [
    "UNIT",
    "NANOMETERS",
    "OME_VERSIONS",
    "find_multiscale",
    "ome_geometry",
    "ome_multiscale",
    "zarr_format_for",
]

UNIT = "nanometer"
# OME-Zarr length units, in nanometers (our world unit)
NANOMETERS = {
    "angstrom": 0.1,
    "nanometer": 1.0,
    "nm": 1.0,
    "micrometer": 1e3,
    "micron": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
}
OME_VERSIONS = {"0.4": 2, "0.5": 3}  # the zarr format each OME-Zarr version lives on


def zarr_format_for(
    zarr_format: int | None = None, ome: bool = False, ome_version: str | None = None
) -> int | None:
    """The zarr format to write: `zarr_format`, or the one `ome_version` (with `ome`) lives on;
    None leaves the choice to the writer. A version and a format that disagree are refused."""
    if ome_version is None:
        return zarr_format
    if not ome:
        raise ParameterError("`ome_version` needs `ome`")
    if zarr_format is not None and OME_VERSIONS[ome_version] != zarr_format:
        raise ParameterError(
            f"OME-Zarr {ome_version} is zarr format {OME_VERSIONS[ome_version]}, "
            f"not `zarr_format` {zarr_format}"
        )
    return OME_VERSIONS[ome_version]


def find_multiscale(where: str, attrs) -> dict | None:
    """The first OME-Zarr multiscale of a group (0.4: `multiscales`, 0.5: `ome.multiscales`)."""
    attrs = dict(attrs)
    found = attrs.get("ome", {}).get("multiscales") if isinstance(attrs.get("ome"), dict) else None
    found = found or attrs.get("multiscales")
    if found is None:
        return None
    if not isinstance(found, list) or not found or not isinstance(found[0], dict):
        raise ChunkflowError(f"{where}: OME-Zarr multiscales is {found!r:.60}; expected a list")
    return found[0]


def ome_geometry(where, multiscale, level, ndim) -> tuple[Cartesian, Cartesian]:
    """(voxel offset, voxel size in nm) of one level: its transforms, then the multiscale's."""
    axes = multiscale.get("axes") or []
    names = [a.get("name") if isinstance(a, dict) else a for a in axes]
    if len(names) != ndim or names[-3:] != ["z", "y", "x"]:
        raise ChunkflowError(
            f"{where}: OME-Zarr axes {names} for an array of {ndim} dimensions; expected "
            "(z, y, x) last, channels (c) first"
        )
    factors = []
    for axis in axes[-3:]:
        unit = axis.get("unit") if isinstance(axis, dict) else None
        if unit is not None and unit not in NANOMETERS:
            raise ChunkflowError(
                f"{where}: OME-Zarr axis {axis.get('name')} has unit {unit!r}; expected a length "
                f"({', '.join(NANOMETERS)})"
            )
        factors.append(NANOMETERS.get(unit, 1.0))
    scale, translation = np.ones(ndim), np.zeros(ndim)
    transforms = list(multiscale["datasets"][level].get("coordinateTransformations") or [])
    transforms += list(multiscale.get("coordinateTransformations") or [])
    for transform in transforms:
        kind = transform.get("type")
        values = np.asarray(transform.get(kind, np.nan), dtype=float)
        if kind not in ("scale", "translation") or values.shape != (ndim,):
            raise ChunkflowError(
                f"{where}: OME-Zarr transform {transform!r:.80} of level {level}; expected a "
                f"scale or translation of {ndim} numbers"
            )
        if kind == "scale":
            scale, translation = scale * values, translation * values
        else:
            translation = translation + values
    voxel_size = _whole(where, "voxel size", scale[-3:] * factors)
    offset = _whole(where, "offset", translation[-3:] * factors)
    size = stored_vector(where, f"the voxel size (nm) of level {level}", voxel_size, True)
    return voxel_offset_of(where, offset, size), size


def _whole(where, what, values):
    rounded = np.round(values)
    if not np.allclose(values, rounded, rtol=1e-9, atol=1e-6):
        raise ParameterError(
            f"{where}: OME-Zarr {what} {[float(v) for v in values]} nm is not a whole number of "
            "nanometers; give `voxel_size` and `voxel_offset`"
        )
    return [int(v) for v in rounded]


def ome_multiscale(chunk: Chunk, name: str = "image") -> dict:
    """The OME-Zarr multiscale of one level `0` holding `chunk` (axes c?, z, y, x in nm)."""
    channels = chunk.ndim == 4
    axes = [{"name": "c", "type": "channel"}] if channels else []
    axes += [{"name": axis, "type": "space", "unit": UNIT} for axis in "zyx"]
    lead = [1.0] if channels else []
    return {
        "name": name,
        "axes": axes,
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": lead + [float(v) for v in chunk.voxel_size]},
                    {
                        "type": "translation",
                        "translation": [0.0] * len(lead)
                        + [float(v) for v in chunk.voxel_offset * chunk.voxel_size],
                    },
                ],
            }
        ],
    }
