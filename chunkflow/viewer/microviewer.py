"""One chunk in microviewer (seung-lab), optionally with a segmentation overlaid.

microviewer's own `view`/`hyperview` bind `localhost:8080`, open a browser and serve until
Ctrl-C; here its request handler runs in a threaded HTTP server that we bind, start in the
background and stop. Arrays go to it in its (x, y, z) order as transposed views.

What it shows: an image or map in grey (three channels as RGB, other channel counts channel 0),
a segmentation in colors, or an image with a segmentation overlay (the chunks' overlap).
A request for anything else (`/segmentation` of a view without one, an unknown path) is
answered 404; a request that fails is logged as one line.
"""

from __future__ import annotations

import http.server
import socket
import sys
import threading
from dataclasses import dataclass

import microviewer
import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.viewer import log_failure, segment_ids

__all__ = ["MicroViewer", "cutout", "open_microviewer"]


def _rgb(array: np.ndarray) -> np.ndarray:
    """(3, z, y, x) → uint8 (3, z, y, x): floats in [0, 1] scaled, integers by their range."""
    if array.dtype.kind == "f":
        return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize > 1:
        high = float(max(array.max(), 1))
        return (array.astype(np.float32) * (255 / high)).round().astype(np.uint8)
    return array.astype(np.uint8)


def _xyz(chunk: Chunk) -> tuple[np.ndarray, str]:
    """The chunk's data for microviewer, (x, y, z) or (x, y, z, 3) RGB, and its layer kind."""
    array = chunk.array
    if chunk.is_segmentation:
        if array.ndim == 4:
            if array.shape[0] != 1:
                raise ChunkflowError(f"a segmentation has one channel, got shape {array.shape}")
            array = array[0]
        return segment_ids(array).T, "segmentation"
    if array.ndim == 4:
        if array.shape[0] == 3:
            return _rgb(array).T, "image"
        array = array[0]
    if array.dtype.name not in ("uint8", "uint16", "float32", "float64", "bool"):
        array = array.astype(np.float32)
    return array.T, "image"


def cutout(chunk: Chunk) -> dict:
    """microviewer's description of one layer (what its request handler serves)."""
    array, kind = _xyz(chunk)
    return {
        "img": microviewer.to3d(array),
        "cloudpath": "chunkflow",
        "resolution": list(chunk.voxel_size.xyz),
        "layer_type": kind,
        "offset": list(chunk.voxel_offset.xyz),
    }


# What microviewer's handler serves: its page and assets, the view's parameters and data.
ASSETS = {
    "/",
    "/datacube.js",
    "/crackle.js",
    "/jquery-3.7.0.min.js",
    "/favicon.ico",
    "/microviewer.js",
    "/microviewer.css",
    "/libcrackle.wasm",
    *(
        f"/cursors/{size}{state}.png"
        for size in ("exact", "small", "medium", "large")
        for state in ("", "-active")
    ),
}


class _Handler(microviewer.ViewerServerHandler):
    """microviewer's handler, answering 404 for what it does not have instead of failing."""

    def do_GET(self):
        known = ASSETS | {"/parameters", "/channel"}
        if len(self.cutouts) > 1:
            known.add("/segmentation")
        if self.path not in known:
            self.send_error(404)
            return
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        log_failure(f"request from {client_address[0]}", sys.exc_info())


@dataclass
class MicroViewer:
    """A served microviewer; `close()` stops the server."""

    server: _Server
    thread: threading.Thread
    url: str

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> MicroViewer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_microviewer(
    chunk: Chunk, seg: Chunk | None = None, *, bind_address: str = "127.0.0.1", port: int = 0
) -> MicroViewer:
    """Serve `chunk` (and `seg` over it) in microviewer; port 0 takes any free port."""
    if seg is None:
        cutouts = [cutout(chunk)]
    else:
        if chunk.voxel_size != seg.voxel_size:
            raise ChunkflowError(
                f"the segmentation's voxel size {tuple(seg.voxel_size)} differs from the "
                f"image's {tuple(chunk.voxel_size)}"
            )
        overlap = chunk.bbox.intersect(seg.bbox)
        if overlap.is_empty:
            raise ChunkflowError(
                f"the segmentation ({seg.bbox}) does not overlap the image ({chunk.bbox})"
            )
        seg = seg.crop(overlap)
        if not seg.is_segmentation:
            seg = Chunk(seg.array, seg.voxel_offset, seg.voxel_size, "segmentation")
        cutouts = [cutout(chunk.crop(overlap)), cutout(seg)]

    def handler(*args):
        return _Handler(cutouts, *args)

    try:
        server = _Server((bind_address, port), handler)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ChunkflowError(
            f"cannot serve microviewer on {bind_address}:{port}: {reason}"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="microviewer", daemon=True)
    thread.start()
    host = socket.getfqdn() if bind_address in ("0.0.0.0", "::") else bind_address
    host = f"[{host}]" if ":" in host else host
    return MicroViewer(server, thread, f"http://{host}:{server.server_address[1]}/")
