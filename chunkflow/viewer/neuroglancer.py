"""Neuroglancer layers from chunks and precomputed volumes, served from this process.

Axis order: chunks are (z, y, x) or (c, z, y, x). Neuroglancer gets transposed views, (x, y, z)
or (x, y, z, c^), with dimensions named x, y, z (and `c^`, a channel dimension), so the xy panel
shows the xy plane. Voxel sizes (nm) become the dimension scales and voxel offsets the
`LocalVolume` offsets, so chunks of different places and voxel sizes overlay correctly.

Layer kinds follow the chunk's layer type:

- image: a grey `ImageLayer` (a 3-channel image is shown as RGB) from black at the dtype's
  min to white at its max, the rule of `chunkflow.chunk.to_unit` (int8 -128..127, uint8
  0..255, floats 0..1); dtypes neuroglancer lacks (signed, 64-bit) are served as float32;
- segmentation: a `SegmentationLayer`; ids keep their bits in the unsigned type of their size;
- affinity_map: an `ImageLayer` with RGB = channels 0, 1, 2, i.e. the z, y, x affinities;
- probability_map: an `ImageLayer`, grey over [0, 1] for one channel, RGB for three, else one
  channel at a time (pick it in the layer's shader controls).

Local `file://` precomputed volumes and zarr stores are served by the viewer's own HTTP server (a
browser cannot read file:// URLs), gzip, brotli and zstd compressed chunk files included; gs://,
s3:// and http(s):// ones are read by neuroglancer in the browser. A zarr store (v2 or v3, a
plain array or an OME-Zarr multiscale group) is named `zarr://PATH` (`zarr2://`, `zarr3://`
to say the version), or found by its `zarr.json` / `.zarray` / `.zgroup` in a local folder. A
plain array gets its voxel size and offset from gunpowder's `resolution` and `offset`
attributes (what `save-zarr` writes); OME-Zarr scales come from the store itself.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import neuroglancer
import neuroglancer.random_token
import neuroglancer.server
import numpy as np
import tornado.web

from chunkflow.chunk import Chunk, LayerType, unit_scale
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import Cartesian
from chunkflow.viewer import LAYOUTS, log_failure, one_line_logs, segment_ids

__all__ = [
    "LAYOUTS",
    "NeuroglancerViewer",
    "chunk_layer",
    "chunk_volume",
    "dimensions",
    "open_viewer",
    "read_info",
    "read_zarr_meta",
    "source_format",
    "volume_layer",
    "zarr_layer",
]

logger = logging.getLogger(__name__)

UNITS = "nm"
REMOTE_SCHEMES = ("gs://", "s3://", "http://", "https://")
FILES_PREFIX = "/chunkflow/files"
FIT_PIXELS = 720  # the chunks' xy extent fills about this many pixels (half in 4-panel layouts)

RGB_SHADER = """void main() {
  emitRGB(vec3(toNormalized(getDataValue(0)),
               toNormalized(getDataValue(1)),
               toNormalized(getDataValue(2))));
}
"""

GREY_SHADER = """#uicontrol invlerp normalized(range=[{low}, {high}]{channel})
void main() {{
  emitGrayscale(normalized());
}}
"""


def dimensions(voxel_size, channels: bool = False) -> neuroglancer.CoordinateSpace:
    """Dimensions x, y, z in nm scaled by `voxel_size` (z, y, x), plus `c^` for channels."""
    names, units, scales = ["x", "y", "z"], [UNITS] * 3, list(Cartesian(voxel_size).xyz)
    if channels:
        names.append("c^")
        units.append("")
        scales.append(1)
    return neuroglancer.CoordinateSpace(names=names, units=units, scales=scales)


def _layer_array(chunk: Chunk) -> np.ndarray:
    """The chunk's (z, y, x) or (c, z, y, x) data in a dtype neuroglancer supports."""
    array = chunk.array
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if chunk.layer_type is LayerType.SEGMENTATION:
        if array.ndim == 4:
            raise ChunkflowError(
                f"a segmentation has one channel, this one has {array.shape[0]} "
                f"(shape {array.shape})"
            )
        array = segment_ids(array)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype.name not in ("uint8", "uint16", "uint32", "float32", "float64"):
        array = array.astype(np.float32)
    return array


def chunk_volume(chunk: Chunk, voxel_size=None) -> neuroglancer.LocalVolume:
    """A `LocalVolume` over the chunk's data at its voxel offset (no copy where dtypes allow)."""
    array = _layer_array(chunk).T  # (x, y, z[, c]): a view
    channels = array.ndim == 4
    offset = list(chunk.voxel_offset.xyz) + ([0] if channels else [])
    return neuroglancer.LocalVolume(
        array,
        dimensions=dimensions(voxel_size or chunk.voxel_size, channels),
        voxel_offset=offset,
        volume_type="segmentation" if chunk.is_segmentation else "image",
    )


def _value_range(dtype: np.dtype, served: np.dtype) -> tuple[float, float]:
    """The values that span black to white: the [0, 1] units of `unit_scale` (integers min..max,
    int8 -128..127; floats 0..1) of the chunk's dtype, or of the served one for bool (0, 255)."""
    low, scale = unit_scale(served if dtype == np.bool_ else dtype)
    return low, low + round(1 / scale)  # 1 / scale is max - min up to rounding


def _grey_shader(value_range: tuple[float, float], channel: bool) -> str:
    low, high = (int(v) for v in value_range)
    return GREY_SHADER.format(low=low, high=high, channel=", channel=0" if channel else "")


def chunk_layer(chunk: Chunk, voxel_size=None) -> neuroglancer.Layer:
    """The neuroglancer layer for a chunk, by its layer type (see the module docstring)."""
    volume = chunk_volume(chunk, voxel_size)
    if chunk.is_segmentation:
        return neuroglancer.SegmentationLayer(source=volume)
    num_channels = volume.shape[3] if volume.rank == 4 else 1
    served = np.dtype(volume.data_type)
    value_range = _value_range(chunk.dtype, served)
    if num_channels == 3:
        shader = RGB_SHADER
    elif num_channels > 1 or not chunk.is_image or value_range != _value_range(served, served):
        shader = _grey_shader(value_range, channel=num_channels > 1)
    else:  # neuroglancer's default range for the served dtype is the values' range
        return neuroglancer.ImageLayer(source=volume)
    return neuroglancer.ImageLayer(source=volume, shader=shader)


# Precomputed volumes ---------------------------------------------------------------------------


def read_info(path: str) -> dict:
    """The precomputed `info` of a volume path (file://, gs://, s3://, http(s)://)."""
    info = _read_json(path, "info", "precomputed info")
    if info is None:
        raise ChunkflowError(f"{path}: no precomputed volume there (no info file)")
    return info


ZARR_PREFIXES = ("zarr://", "zarr2://", "zarr3://")
ZARR_SEGMENTATION_DTYPES = ("uint32", "uint64", "int64", "<u4", "<u8", "<i8", "|u4")


def source_format(path: str) -> tuple[str, str]:
    """(format, path without a format prefix) of a `--layer` path: `precomputed`, `zarr2` or
    `zarr3`. A local folder without a prefix is what its metadata files say."""
    for prefix in ZARR_PREFIXES:
        if path.startswith(prefix):
            path = path[len(prefix) :]
            fmt = prefix[: -len("://")]
            return (fmt if fmt != "zarr" else _zarr_version(path)), path
    if path.startswith("file://"):
        root = path[len("file://") :]
        if not os.path.isfile(os.path.join(root, "info")) and any(
            os.path.isfile(os.path.join(root, name)) for name in ("zarr.json", ".zarray", ".zgroup")
        ):
            return _zarr_version(path), path
    return "precomputed", path


def _zarr_version(path: str) -> str:
    if _read_json(path, "zarr.json") is not None:
        return "zarr3"
    if _read_json(path, ".zarray") is not None or _read_json(path, ".zgroup") is not None:
        return "zarr2"
    raise ChunkflowError(f"{path}: no zarr store there (no zarr.json, .zarray or .zgroup)")


def _read_json(path: str, name: str, what: str | None = None) -> dict | None:
    """The JSON file `name` of a volume or store, or None where it is missing; `what` names
    it in errors (default: `name`)."""
    what = what or name
    if path.startswith("file://"):
        try:
            with open(os.path.join(path[len("file://") :], name)) as f:
                return json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as err:
            raise ChunkflowError(f"{path}: unreadable {what} ({err})") from None
    if not path.startswith(REMOTE_SCHEMES):
        raise ChunkflowError(
            f"{path}: neuroglancer reads file://, gs://, s3:// and http(s):// paths only"
        )
    from cloudfiles import CloudFiles

    try:
        return CloudFiles(path).get_json(name)
    except Exception as err:  # any transport failure: name the path, keep it one line
        raise ChunkflowError(f"{path}: cannot read {what} ({err})") from None


def read_zarr_meta(path: str, fmt: str) -> dict:
    """What the layer of a zarr store needs: whether it is a segmentation, and for a plain
    array its voxel size and offset (gunpowder's attributes, z y x) and rank."""
    array_path, multiscale = path.rstrip("/"), False
    if fmt == "zarr3":
        node = _read_json(path, "zarr.json") or {}
        attrs = node.get("attributes", {})
        if node.get("node_type") == "group":
            scales = attrs.get("ome", attrs).get("multiscales") or []
            if not scales:
                raise ChunkflowError(f"{path}: a zarr group without OME multiscales: name an array")
            multiscale = True
            array_path = f"{array_path}/{scales[0]['datasets'][0]['path']}"
            node = _read_json(array_path, "zarr.json") or {}
            attrs = node.get("attributes", {})
        dtype, shape = node.get("data_type"), node.get("shape", [])
        names = node.get("dimension_names")
    else:
        array = _read_json(path, ".zarray")
        attrs = _read_json(path, ".zattrs") or {}
        if array is None:
            scales = attrs.get("multiscales") or []
            if not scales:
                raise ChunkflowError(f"{path}: a zarr group without OME multiscales: name an array")
            multiscale = True
            array_path = f"{array_path}/{scales[0]['datasets'][0]['path']}"
            array = _read_json(array_path, ".zarray") or {}
            attrs = _read_json(array_path, ".zattrs") or {}
        dtype, shape = array.get("dtype"), array.get("shape", [])
        names = attrs.get("_ARRAY_DIMENSIONS")
    layer_type = attrs.get("layer_type")
    segmentation = layer_type == "segmentation" or (
        layer_type is None and dtype in ZARR_SEGMENTATION_DTYPES
    )
    meta = {"format": fmt, "segmentation": segmentation, "rank": len(shape)}
    # the names neuroglancer gives the array's dimensions
    meta["names"] = list(names) if names else [f"d{i}" for i in range(len(shape))]
    if not multiscale and "resolution" in attrs:
        meta["voxel_size"] = [float(v) for v in attrs["resolution"]]
        meta["offset"] = [float(v) for v in attrs.get("offset", [0, 0, 0])]
    return meta


def zarr_layer(url: str, meta: dict) -> neuroglancer.Layer:
    """A layer reading the zarr store at `url` (as the browser reaches it)."""
    source = neuroglancer.LayerDataSource(f"{meta['format']}://{url}")
    if "voxel_size" in meta and meta["rank"] in (3, 4):
        # gunpowder's geometry, which neuroglancer does not read. The array's dims are
        # (c,) z, y, x; the layer's x, y, z (, c^), as for chunks
        rank, channels = meta["rank"], meta["rank"] == 4
        # neuroglancer takes a plain array's dimensions for meters: say what they are
        input_dimensions = neuroglancer.CoordinateSpace(
            names=meta["names"],
            units=([""] if channels else []) + [UNITS] * 3,
            scales=([1] if channels else []) + meta["voxel_size"],
        )
        voxel_size, offset = meta["voxel_size"][::-1], meta["offset"][::-1]  # x, y, z
        names, units = ["x", "y", "z"], [UNITS] * 3
        scales = list(voxel_size)
        translation = [o / v for o, v in zip(offset, voxel_size)]
        inputs = [rank - 1, rank - 2, rank - 3]  # the array's x, y, z
        if channels:
            names, units, scales = names + ["c^"], units + [""], scales + [1]
            translation, inputs = translation + [0.0], inputs + [0]
        matrix = [
            [float(column == inputs[row]) for column in range(rank)] + [translation[row]]
            for row in range(rank)
        ]
        source.transform = neuroglancer.CoordinateSpaceTransform(
            input_dimensions=input_dimensions,
            output_dimensions=neuroglancer.CoordinateSpace(names=names, units=units, scales=scales),
            matrix=matrix,
        )
    if meta["segmentation"]:
        return neuroglancer.SegmentationLayer(source=source)
    return neuroglancer.ImageLayer(source=source)


def volume_layer(url: str, info: dict) -> neuroglancer.Layer:
    """A layer reading the precomputed volume at `url` (as the browser reaches it)."""
    source = f"precomputed://{url}"
    if info.get("type") == "segmentation":
        return neuroglancer.SegmentationLayer(source=source)
    if info.get("num_channels") == 3:
        return neuroglancer.ImageLayer(source=source, shader=RGB_SHADER)
    return neuroglancer.ImageLayer(source=source)


ENCODED_SUFFIXES = ((".gz", "gzip"), (".br", "br"), (".zst", "zstd"))


def served_file(root: str, path: str) -> tuple[str, str | None]:
    """The file that answers a request for `path` under the served folder `root`, and its
    encoding: `path` itself, else `path.gz`, `.br` or `.zst` (neuroglancer asks for chunk
    files by their plain names).

    The one check of what the server may read: every candidate is resolved with its symlinks
    (`..`, absolute paths and links included) and must be a regular file inside `root`'s real
    path. A candidate that exists but resolves elsewhere, or is not a file, ends the search:
    no other variant answers for it. Anything else is `tornado.web.HTTPError(404)`.
    """
    real_root = os.path.realpath(root)
    for suffix, encoding in ((None, None), *ENCODED_SUFFIXES):
        candidate = os.path.join(real_root, path + (suffix or ""))
        try:
            if not os.path.lexists(candidate):
                continue
            real = os.path.realpath(candidate)
        except (OSError, ValueError):  # a NUL byte, a name too long
            break
        if os.path.commonpath([real_root, real]) != real_root or not os.path.isfile(real):
            break
        return real, encoding
    raise tornado.web.HTTPError(404)


class _PrecomputedFileHandler(tornado.web.StaticFileHandler):
    """Files of a local precomputed folder, with CORS; `name.gz` etc. answer for `name`.

    What may be read is decided by `served_file` alone; tornado's own checks stay as a second
    line. Failures are answered with a status and logged as one line (a traceback only at the
    debug level), never with a traceback on stderr.
    """

    def set_default_headers(self):
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Access-Control-Allow-Headers", "x-requested-with, range")
        self.set_header("Access-Control-Expose-Headers", "content-range")

    def options(self, *args):
        self.set_status(204)
        self.finish()

    async def get(self, path, include_body=True):
        real, encoding = served_file(self.root, path)
        if encoding is None:
            await super().get(os.path.relpath(real, os.path.realpath(self.root)), include_body)
        else:
            self._send_encoded(real, encoding, include_body)

    def compute_etag(self):
        if getattr(self, "absolute_path", None) is None:  # an encoded file sent by hand
            return None
        return super().compute_etag()

    def log_exception(self, typ, value, tb):
        if not isinstance(value, tornado.web.HTTPError):  # an HTTPError is answered already
            log_failure(f"{self.request.method} {self.request.path}", (typ, value, tb))

    def _send_encoded(self, path: str, encoding: str, include_body: bool) -> None:
        with open(path, "rb") as f:
            body = f.read()
        accepted = {
            token.split(";")[0].strip()
            for token in self.request.headers.get("Accept-Encoding", "").split(",")
        }
        if encoding in accepted:
            self.set_header("Content-Encoding", encoding)
        else:
            try:
                body = _decompress(body, encoding)
            except Exception as err:  # a corrupt or truncated chunk file
                name = os.path.basename(path)
                logger.warning("viewer: %s is not valid %s data (%s)", name, encoding, err)
                raise tornado.web.HTTPError(500) from None
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(len(body)))
        self.finish(body if include_body else None)


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(body)


def _serve_folders(folders: list[str]) -> list[str]:
    """Serve local folders from the running neuroglancer server; their base URLs."""
    server = neuroglancer.server.global_server
    token = neuroglancer.random_token.make_random_token()
    rules = [
        (
            rf"{FILES_PREFIX}/{token}/{i}/(.*)",
            _PrecomputedFileHandler,
            {"path": os.path.realpath(folder)},
        )
        for i, folder in enumerate(folders)
    ]
    done: concurrent.futures.Future = concurrent.futures.Future()

    def add():  # on the server's event loop, which owns the routing table
        try:
            server.app.add_handlers(r".*", rules)
            done.set_result(None)
        except Exception as err:
            done.set_exception(err)

    server.loop.call_soon_threadsafe(add)
    done.result(timeout=10)
    base = neuroglancer.server.get_server_url()
    return [f"{base}{FILES_PREFIX}/{token}/{i}" for i in range(len(folders))]


# The viewer ------------------------------------------------------------------------------------


@dataclass
class NeuroglancerViewer:
    """A served viewer; `close()` stops the server (the process serves one viewer at a time)."""

    viewer: neuroglancer.Viewer
    url: str

    def close(self) -> None:
        neuroglancer.stop()

    def __enter__(self) -> NeuroglancerViewer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _start_server(bind_address: str, port: int) -> None:
    if neuroglancer.server.is_server_running():
        neuroglancer.stop()
    neuroglancer.set_server_bind_address(bind_address, port)
    one_line_logs("tornado")
    try:
        neuroglancer.server.start()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ChunkflowError(
            f"cannot serve neuroglancer on {bind_address}:{port}: {reason}"
        ) from None


def _fit_scale(chunks: list[Chunk], voxel_size, global_size, layout: str) -> float:
    """A cross-section zoom (global voxels per pixel) that fits the chunks' xy extent."""
    sizes = [np.asarray(voxel_size or c.voxel_size, dtype=float) for c in chunks]
    extent = max(float(np.max(np.multiply(c.spatial_shape, v)[1:])) for c, v in zip(chunks, sizes))
    pixels = FIT_PIXELS if layout in ("xy", "xz", "yz") else FIT_PIXELS / 2
    return extent / float(min(np.asarray(global_size)[1:])) / pixels


def _center(chunks: list[Chunk], voxel_size, global_size) -> list[float]:
    """Center (x, y, z) of all chunks in voxels of `global_size` (z, y, x)."""
    sizes = [np.asarray(voxel_size or c.voxel_size, dtype=float) for c in chunks]
    starts = np.array([np.multiply(c.voxel_offset, v) for c, v in zip(chunks, sizes)])
    stops = np.array([np.multiply(c.voxel_stop, v) for c, v in zip(chunks, sizes)])
    center = (starts.min(axis=0) + stops.max(axis=0)) / 2 / np.asarray(global_size, dtype=float)
    return [float(v) for v in center[::-1]]


def open_viewer(
    chunks: Mapping[str, Chunk],
    volumes: Mapping[str, str] | None = None,
    *,
    voxel_size=None,
    bind_address: str = "127.0.0.1",
    port: int = 0,
    layout: str = "4panel",
) -> NeuroglancerViewer:
    """Serve a viewer showing `chunks` and the precomputed volumes and zarr stores `volumes`
    (name → path, see the module docstring) as layers.

    Args:
        voxel_size: (z, y, x) in nm for every chunk, instead of the chunks' own.
        port: 0 takes any free port.
    """
    volumes = dict(volumes or {})
    both = sorted(set(chunks) & set(volumes))
    if both:
        raise ParameterError(f"layer names used twice (`chunks` and `volumes`): {', '.join(both)}")
    if not chunks and not volumes:
        raise ParameterError("nothing to show: give `chunks` or `volumes`")
    if layout not in LAYOUTS:
        raise ChunkflowError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    formats = {name: source_format(path) for name, path in volumes.items()}
    volumes = {name: path for name, (_, path) in formats.items()}
    infos = {
        name: read_info(path) if fmt == "precomputed" else read_zarr_meta(path, fmt)
        for name, (fmt, path) in formats.items()
    }
    layers = {}
    for name, chunk in chunks.items():
        try:
            layers[name] = chunk_layer(chunk, voxel_size)
        except ChunkflowError as err:
            raise ChunkflowError(f"chunk {name!r}: {err}") from None

    _start_server(bind_address, port)
    try:
        local = [name for name, path in volumes.items() if path.startswith("file://")]
        urls = dict(volumes)
        if local:
            served = _serve_folders([volumes[name][len("file://") :] for name in local])
            urls.update(zip(local, served))
        viewer = neuroglancer.Viewer()
        with viewer.txn() as s:
            if chunks:
                first = next(iter(chunks.values()))
                global_size = Cartesian(voxel_size or first.voxel_size)
                s.dimensions = dimensions(global_size)
                shown = list(chunks.values())
                s.position = _center(shown, voxel_size, global_size)
                s.cross_section_scale = _fit_scale(shown, voxel_size, global_size, layout)
            for name, layer in layers.items():
                s.layers[name] = layer
            for name, info in infos.items():
                if formats[name][0] == "precomputed":
                    s.layers[name] = volume_layer(urls[name], info)
                else:
                    s.layers[name] = zarr_layer(urls[name], info)
            s.layout = layout
        return NeuroglancerViewer(viewer, viewer.get_viewer_url())
    except BaseException:
        neuroglancer.stop()
        raise
