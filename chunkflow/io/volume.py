"""Opening precomputed volumes through cloud-volume: the one way in for the modules that read
and write them.

`chunkflow.io.precomputed` (reads, writes, info files) and `chunkflow.io.shard_writes` (writes
into sharded scales, which `write_precomputed` hands its sharded chunks to) both open volumes
here, so the layers run one way: volume -> shard_writes -> precomputed. Importing this module
loads nothing heavy; cloud-volume is imported when a volume is opened.
"""

from __future__ import annotations

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io import PRECOMPUTED_COMPRESSIONS
from chunkflow.io.metadata import precomputed_info


def load_cloudvolume():
    """cloud-volume's `CloudVolume` class and its `exceptions` module, with the block files of
    local volumes written through temporary names (`chunkflow.io.files.install_staged_writes`)."""
    from cloudvolume import CloudVolume, exceptions

    from chunkflow.io.files import install_staged_writes

    install_staged_writes()  # local block files through temporary names
    return CloudVolume, exceptions


def open_volume(
    path: str,
    mip: int = 0,
    fill_missing: bool = False,
    write: bool = False,
    non_aligned_writes: bool = False,
    compress: str | None = None,
):
    """Open an existing volume at `mip`; one-line errors for a missing volume or mip.

    `compress` is the encoding of the blocks written (see `block_compression`)."""
    CloudVolume, exceptions = load_cloudvolume()
    try:
        vol = CloudVolume(
            path,
            mip=0,
            fill_missing=fill_missing,
            bounded=True,
            progress=False,
            parallel=1,
            cache=False,
            compress=block_compression(path, compress) if write else None,
            non_aligned_writes=non_aligned_writes,
        )
    except exceptions.InfoUnavailableError:
        raise ChunkflowError(
            f"{path}: no precomputed volume there (its info file is missing)"
        ) from None
    except exceptions.UnsupportedProtocolError as err:
        raise ChunkflowError(f"{path}: unsupported volume path ({err})") from None
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ChunkflowError(f"{path}: unreadable precomputed info ({err})") from None
    precomputed_info(f"{path.rstrip('/')}/info", vol.info)
    num_mips = len(vol.info.get("scales", []))
    if not 0 <= mip < num_mips:
        raise ChunkflowError(
            f"{path}: mip {mip} does not exist (the volume has mips 0..{num_mips - 1})"
        )
    vol.mip = mip
    return vol


def block_compression(path: str, compress: str | None = None):
    """cloud-volume's `compress` for the blocks written to `path`: `compress` is gzip, br or
    none; by default gzip for cloud paths and none for local (`file://`, `mem://`) ones."""
    if compress is None:
        compress = "none" if path.startswith(("file://", "mem://")) else "gzip"
    if compress not in PRECOMPUTED_COMPRESSIONS:
        raise ChunkflowError(
            f"compression {compress!r}: expected one of {', '.join(PRECOMPUTED_COMPRESSIONS)}"
        )
    return False if compress == "none" else compress


def cv_bounds(vol) -> BoundingBox:
    """The voxel bounds of an open cloud-volume at its mip, (z, y, x)."""
    bounds = vol.bounds
    return BoundingBox(Cartesian.from_xyz(bounds.minpt), Cartesian.from_xyz(bounds.maxpt))
