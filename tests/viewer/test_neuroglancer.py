"""Neuroglancer layers from chunks, the served viewer, and what a real browser renders."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

neuroglancer = pytest.importorskip("neuroglancer")

from chunkflow.chunk import Chunk, to_unit  # noqa: E402
from chunkflow.errors import ChunkflowError  # noqa: E402
from chunkflow.io.precomputed import write_precomputed  # noqa: E402
from chunkflow.viewer.neuroglancer import (  # noqa: E402
    RGB_SHADER,
    chunk_layer,
    dimensions,
    open_viewer,
)
from tests.conftest import GALA, read_stack  # noqa: E402
from tests.segmentation.test_agglomerate import affinities, p1_affinities  # noqa: E402
from tests.viewer.helpers import (  # noqa: E402
    colors,
    get,
    grey_levels,
    neuroglancer_state,
    panel_txn,
    png_pixels,
    set_viewport,
)

NM = 1e-9


def served(layer) -> np.ndarray:
    """The whole array the layer's LocalVolume serves at full resolution, as the browser gets it."""
    volume = layer.source[0].url
    start, stop = np.zeros(volume.rank, np.int64), np.asarray(volume.shape, np.int64)
    data, _ = volume.get_encoded_subvolume("npz", start, stop, ",".join(["1"] * volume.rank))
    return np.load(io.BytesIO(zlib.decompress(data)))


# Layers ----------------------------------------------------------------------------------------


def test_dimensions_are_x_y_z_scaled_by_the_voxel_size():
    space = dimensions((40, 4, 4))
    assert space.names == ("x", "y", "z")
    assert space.units == ("m", "m", "m")
    np.testing.assert_allclose(space.scales, [4 * NM, 4 * NM, 40 * NM])
    assert dimensions((40, 4, 4), channels=True).names == ("x", "y", "z", "c^")


def test_image_layer_places_the_chunk_in_xyz():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    layer = chunk_layer(Chunk(array, voxel_offset=(1, 2, 3), voxel_size=(40, 4, 4)))
    assert isinstance(layer, neuroglancer.ImageLayer)
    volume = layer.source[0].url
    assert volume.dimensions.names == ("x", "y", "z")
    np.testing.assert_allclose(volume.dimensions.scales, [4 * NM, 4 * NM, 40 * NM])
    assert list(volume.voxel_offset) == [3, 2, 1]
    assert tuple(volume.shape) == (4, 3, 2)
    np.testing.assert_array_equal(served(layer), array.T)  # voxel (x, y, z) = array[z, y, x]


def test_voxel_size_option_overrides_the_chunk():
    layer = chunk_layer(Chunk(np.zeros((2, 3, 4), np.uint8), voxel_size=(40, 4, 4)), (8, 8, 8))
    np.testing.assert_allclose(layer.source[0].url.dimensions.scales, [8 * NM] * 3)


@pytest.mark.parametrize(
    "dtype, served_dtype",
    [("int32", "uint32"), ("int64", "uint64"), ("uint16", "uint16"), ("bool", "uint8")],
)
def test_segmentation_layer_keeps_ids_without_copying(dtype, served_dtype):
    array = np.arange(24).reshape(2, 3, 4).astype(dtype)
    layer = chunk_layer(Chunk(array, layer_type="segmentation"))
    assert isinstance(layer, neuroglancer.SegmentationLayer)
    volume = layer.source[0].url
    assert volume.volume_type == "segmentation" and volume.data_type == served_dtype
    assert np.shares_memory(volume.data._data, array)
    np.testing.assert_array_equal(served(layer), array.T.astype(served_dtype))


def test_affinity_map_is_rgb_over_a_channel_dimension():
    affs = np.random.default_rng(0).random((3, 2, 3, 4), dtype=np.float32)
    layer = chunk_layer(Chunk(affs, voxel_offset=(1, 2, 3), layer_type="affinity_map"))
    assert isinstance(layer, neuroglancer.ImageLayer) and layer.shader == RGB_SHADER
    volume = layer.source[0].url
    assert volume.dimensions.names == ("x", "y", "z", "c^")
    assert list(volume.voxel_offset) == [3, 2, 1, 0] and tuple(volume.shape) == (4, 3, 2, 3)
    np.testing.assert_array_equal(served(layer), affs.T)  # [x, y, z, c] = affs[c, z, y, x]


def test_probability_maps_are_grey_over_zero_to_one():
    one = chunk_layer(Chunk(np.zeros((1, 2, 3, 4), np.float32), layer_type="probability_map"))
    assert one.source[0].url.rank == 3
    assert "invlerp normalized(range=[0, 1])" in one.shader
    two = chunk_layer(Chunk(np.zeros((2, 2, 3, 4), np.float32), layer_type="probability_map"))
    assert "channel=0" in two.shader and two.source[0].url.rank == 4


def test_plain_image_keeps_the_default_shader_where_it_spans_the_dtype():
    layer = chunk_layer(Chunk(np.zeros((2, 3, 4), np.uint16), layer_type="image"))
    assert "shader" not in layer.to_json() and layer.source[0].url.data_type == "uint16"


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint64"])
@pytest.mark.parametrize("channels", [1, 2])
def test_converted_images_span_black_to_white_by_the_unit_rule(dtype, channels):
    info = np.iinfo(dtype)
    array = np.zeros((channels, 2, 3, 4), dtype)
    layer = chunk_layer(Chunk(array, layer_type="image"))
    assert layer.source[0].url.data_type == "float32"  # neuroglancer has no signed dtypes
    found = re.search(r"range=\[(-?\d+), (-?\d+)\]", layer.shader)
    low, high = float(found[1]), float(found[2])
    values = np.array([info.min, 0, info.max], dtype)
    shown = (values.astype(np.float64) - low) / (high - low)  # neuroglancer's invlerp
    np.testing.assert_allclose(shown, to_unit(values), atol=1e-6)


def test_a_multichannel_segmentation_is_refused():
    with pytest.raises(ChunkflowError, match="one channel"):
        chunk_layer(Chunk(np.zeros((2, 2, 3, 4), np.uint32), layer_type="segmentation"))


# The served viewer -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gala_chunks():
    image = read_stack(GALA / "test-image.h5")
    gt = read_stack(GALA / "test-gt.lzf.h5")
    return image, gt


def source_url(layer: dict) -> str:
    source = layer["source"]  # a URL, or a list of {"url": ...}
    return source if isinstance(source, str) else source[0]["url"]


def local_volume_info(viewer_url: str, layer: dict) -> dict:
    """The info the server gives the browser for a chunk's layer (`python://volume/KEY`)."""
    key = source_url(layer).rsplit("/", 1)[1]
    return json.loads(get(f"{viewer_url.split('/v/')[0]}/neuroglancer/info/{key}"))


def test_viewer_serves_layers_placed_together(gala_chunks):
    image, gt = gala_chunks
    chunks = {
        "image": Chunk(image, voxel_size=(10, 10, 10)),
        # a crop of the ground truth at 20 nm in y and x, where it lies in the image
        "gt": Chunk(gt[10:20, 20:60:2, 40:120:2], (10, 10, 20), (10, 20, 20), "segmentation"),
    }
    with open_viewer(chunks, layout="xy") as viewer:
        assert viewer.url.startswith("http://127.0.0.1:")
        state = neuroglancer_state(viewer.url)
        assert [layer["name"] for layer in state["layers"]] == ["image", "gt"]
        assert [layer["type"] for layer in state["layers"]] == ["image", "segmentation"]
        assert list(state["dimensions"]) == ["x", "y", "z"]
        assert state["dimensions"]["x"] == [pytest.approx(10 * NM), "m"]
        assert state["position"] == pytest.approx([100, 50, 25])  # the center, x y z
        assert state["layout"] == "xy"
        info = local_volume_info(viewer.url, state["layers"][1])
        # x y z, in the chunk's own 20 nm voxels (neuroglancer sends 64-bit ints as strings)
        assert [int(v) for v in info["voxelOffset"]] == [20, 10, 10]
        assert [int(v) for v in info["shape"]] == [40, 20, 10]
        assert info["coordinateSpace"]["x"] == [pytest.approx(20 * NM), "m"]
        assert info["dataType"] == "uint32"
    assert not neuroglancer.server.is_server_running()
    with pytest.raises(urllib.error.URLError):
        get(viewer.url, timeout=2)


@pytest.fixture
def precomputed_gt(tmp_path, gala_chunks):
    """The gala ground truth as a local precomputed volume, most chunk files compressed.

    Returns the folder, the content of every chunk file by name, and the gzipped names.
    """
    import brotli
    import zstandard

    _, gt = gala_chunks
    path = tmp_path / "gt"
    chunk = Chunk(gt.astype(np.uint32), (0, 0, 0), (10, 10, 10), "segmentation")
    write_precomputed(chunk, f"file://{path}", 0, True, (50, 64, 64), "raw", False)
    files = sorted((path / "10_10_10").iterdir())
    contents = {file.name: file.read_bytes() for file in files}
    compressors = [
        (".gz", gzip.compress),
        (".br", brotli.compress),
        (".zst", zstandard.ZstdCompressor().compress),
        (None, None),
    ]
    for file, (suffix, compress) in zip(files, compressors * len(files)):
        if suffix is not None:
            file.with_name(file.name + suffix).write_bytes(compress(file.read_bytes()))
            file.unlink()
    return path, contents, [file.name for file in files[:: len(compressors)]]


def test_local_precomputed_volumes_are_served_over_http(precomputed_gt):
    path, contents, gzipped = precomputed_gt
    with open_viewer({}, {"gt": f"file://{path}"}) as viewer:
        (layer,) = neuroglancer_state(viewer.url)["layers"]
        assert layer["type"] == "segmentation" and layer["name"] == "gt"
        url = source_url(layer)
        server = viewer.url.split("/v/")[0]  # the viewer's own server, loopback
        assert url.startswith(f"precomputed://{server}/chunkflow/files/")
        base = url[len("precomputed://") :]
        assert b'"segmentation"' in get(f"{base}/info")
        for name, content in contents.items():  # decompressed for a client that asks so
            assert get(f"{base}/10_10_10/{name}") == content
        request = urllib.request.Request(
            f"{base}/10_10_10/{gzipped[0]}", headers={"Accept-Encoding": "gzip, br"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # browsers get it as is
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert gzip.decompress(response.read()) == contents[gzipped[0]]
        with pytest.raises(urllib.error.HTTPError):
            get(f"{base}/../../etc/passwd")


def status(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    """The HTTP status and body of a GET (error statuses too)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture
def served_folder(tmp_path):
    """A served folder with files, and links out of it next to a secret outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"SECRET")
    (outside / "secret.gz").write_bytes(gzip.compress(b"SECRET"))
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "info").write_text('{"type": "image"}')
    (root / "sub" / "a").write_bytes(b"inside")
    (root / "b.gz").write_bytes(gzip.compress(b"inside b"))
    (root / "X.gz").symlink_to(outside / "secret.gz")  # a compressed name that leads out
    (root / "Y").symlink_to(outside / "secret")
    (root / "out").symlink_to(outside)  # a folder that leads out
    (root / "c").symlink_to(root / "sub" / "a")  # a link that stays inside
    return root


ESCAPES = ["X", "X.gz", "Y", "out/secret", "out/secret.gz", "../outside/secret", "..", "sub", ""]


@pytest.mark.parametrize("path", ESCAPES + [str(Path("/etc/passwd")), "sub/../../outside/secret"])
def test_only_files_inside_the_served_folder_are_served(served_folder, path):
    import tornado.web

    from chunkflow.viewer.neuroglancer import served_file

    with pytest.raises(tornado.web.HTTPError) as err:
        served_file(str(served_folder), path)
    assert err.value.status_code == 404
    inside = os.path.realpath(served_folder)
    assert served_file(str(served_folder), "c") == (f"{inside}/sub/a", None)
    assert served_file(str(served_folder), "b") == (f"{inside}/b.gz", "gzip")


def test_the_file_server_refuses_every_way_out(served_folder, capfd):
    with open_viewer({}, {"v": f"file://{served_folder}"}) as viewer:
        (layer,) = neuroglancer_state(viewer.url)["layers"]
        base = source_url(layer)[len("precomputed://") :]
        assert status(f"{base}/c") == (200, b"inside")
        assert status(f"{base}/%62") == (200, b"inside b")  # an encoded name: b, from b.gz
        quoted = [urllib.parse.quote(p, safe="") for p in ESCAPES]
        for path in ESCAPES + quoted + ["%2e%2e/outside/secret", "%2F" + str(served_folder)]:
            for headers in ({}, {"Accept-Encoding": "gzip"}):
                code, body = status(f"{base}/{path}", headers)
                assert code == 404, path
                assert b"SECRET" not in body and b"SECRET" not in gzip_or_raw(body)
    assert "Traceback" not in capfd.readouterr().err


def gzip_or_raw(body: bytes) -> bytes:
    try:
        return gzip.decompress(body)
    except OSError:
        return body


def test_a_corrupt_chunk_file_is_a_500_and_one_log_line(served_folder, capfd, caplog):
    (served_folder / "bad.gz").write_bytes(b"not gzip at all")
    with open_viewer({}, {"v": f"file://{served_folder}"}) as viewer:
        (layer,) = neuroglancer_state(viewer.url)["layers"]
        base = source_url(layer)[len("precomputed://") :]
        assert status(f"{base}/bad")[0] == 500
        # a browser that takes gzip gets the file as it is, and finds out itself
        assert status(f"{base}/bad", {"Accept-Encoding": "gzip"}) == (200, b"not gzip at all")
        server = viewer.url.split("/v/")[0]
        token = viewer.url.split("/v/")[1].strip("/")
        request = urllib.request.Request(f"{server}/state/{token}", data=b"not json")
        with pytest.raises(urllib.error.HTTPError) as err:  # neuroglancer's own handlers too
            urllib.request.urlopen(request)
        assert err.value.code == 500
    ours = [r for r in caplog.records if r.name.startswith("chunkflow.")]
    warnings = [r.getMessage() for r in ours]
    assert any("bad.gz is not valid gzip data" in m for m in warnings), warnings
    assert any("JSONDecodeError" in m for m in warnings), warnings
    assert all("\n" not in m for m in warnings) and not any(r.exc_info for r in ours)
    assert "Traceback" not in capfd.readouterr().err


def test_errors_name_the_problem(tmp_path):
    chunk = Chunk(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ChunkflowError, match="used twice"):
        open_viewer({"a": chunk}, {"a": f"file://{tmp_path}"})
    with pytest.raises(ChunkflowError, match="nothing to show"):
        open_viewer({})
    with pytest.raises(ChunkflowError, match="no precomputed volume"):
        open_viewer({}, {"v": f"file://{tmp_path}/missing"})
    with pytest.raises(ChunkflowError, match="reads file://, gs://"):
        open_viewer({}, {"v": "mem://volume"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ChunkflowError, match=f"cannot serve neuroglancer on 127.0.0.1:{port}"):
            open_viewer({"a": chunk}, port=port)
    assert not neuroglancer.server.is_server_running()


# A real browser --------------------------------------------------------------------------------

# The data panel of the checked screenshots: the xy layout without UI, 2 pixels per voxel.
WIDTH, HEIGHT, ZOOM = 320, 160, 0.5


def canvas_screenshot(viewer, timeout: float = 20) -> np.ndarray:
    """Neuroglancer's own screenshot: it is taken once every visible chunk has loaded."""
    done, reply = threading.Event(), []
    viewer.async_screenshot(lambda s: (reply.append(s), done.set()))
    assert done.wait(timeout), "neuroglancer did not finish loading the data in time"
    return png_pixels(reply[0].screenshot.image)


def checked_panel(viewer, **layer_visibility) -> np.ndarray:
    """A fixed-size screenshot of the xy panel at z = 25, centered on voxel (100, 50)."""
    with panel_txn(viewer, WIDTH, HEIGHT, "xy") as s:
        s.position = [100, 50, 25.5]
        s.cross_section_scale = ZOOM
        for name, visible in layer_visibility.items():
            s.layers[name].visible = visible
    pixels = canvas_screenshot(viewer)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    return pixels


def correlation_with(pixels: np.ndarray, section: np.ndarray) -> float:
    """Best correlation of the panel with a (y, x) section drawn at 2 pixels per voxel.

    Voxel (x, y) covers pixels 2 (x - 100) + WIDTH / 2 ... (+2); shifts of a pixel or two
    are allowed for rounding. A transposed or misplaced section scores near 0.
    """
    grey = pixels.astype(float).mean(axis=2)
    y0, x0 = 50 - HEIGHT // 4, 100 - WIDTH // 4
    expected = np.kron(section[y0 : y0 + HEIGHT // 2, x0 : x0 + WIDTH // 2], np.ones((2, 2)))
    best = -1.0
    for dy in (-2, -1, 0, 1, 2):
        for dx in (-2, -1, 0, 1, 2):
            a = np.roll(grey, (dy, dx), axis=(0, 1))[8:-8, 8:-8]
            b = expected[8:-8, 8:-8]
            best = max(best, float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    return best


def readme_screenshot(browser, viewer, path, layout, zoom=None, size=(800, 600)) -> None:
    """The viewer with its UI, as a person sees it, saved for the README."""
    set_viewport(browser, *size)
    with viewer.config_state.txn() as s:
        s.show_ui_controls = True
        s.show_panel_borders = True
        s.viewer_size = None
    with viewer.txn() as s:
        s.layout = layout
        if zoom is not None:
            s.cross_section_scale = zoom
    canvas_screenshot(viewer)  # wait until drawn
    browser.find_element("tag name", "body").click()  # move the pointer off the panels
    time.sleep(0.5)
    png = browser.get_screenshot_as_png()
    assert grey_levels(png_pixels(png)) > 64
    path.write_bytes(png)
    assert os.path.getsize(path) < 300_000


def test_browser_shows_gala_image_and_ground_truth(browser, gala_chunks, screenshot_dir):
    image, gt = gala_chunks
    chunks = {
        "image": Chunk(image, voxel_size=(10, 10, 10)),
        "ground-truth": Chunk(gt, voxel_size=(10, 10, 10), layer_type="segmentation"),
    }
    with open_viewer(chunks) as served:
        viewer = served.viewer
        browser.get(served.url)
        set_viewport(browser, 800, 600)
        # the image alone: EM texture, the very section z = 25 in xy orientation
        pixels = checked_panel(viewer, **{"ground-truth": False})
        assert grey_levels(pixels) > 64 and pixels.std() > 10
        assert correlation_with(pixels, image[25].astype(float)) > 0.8  # z = 20: 0.2
        # the segmentation over it: many segment colors, following the ground truth
        pixels = checked_panel(viewer, **{"ground-truth": True})
        assert colors(pixels) > 20
        if screenshot_dir is not None:
            readme_screenshot(
                browser, viewer, screenshot_dir / "neuroglancer-image-seg.png", "4panel"
            )


def test_browser_shows_affinities_as_rgb(browser, gala_chunks, screenshot_dir):
    image, gt = gala_chunks
    exact = affinities(gt)  # channel c of p: p and p - e_c share a label; channels z, y, x
    chunks = {
        "image": Chunk(image, voxel_size=(10, 10, 10)),
        "affinities": Chunk(p1_affinities(), voxel_size=(10, 10, 10), layer_type="affinity_map"),
        "gt-affinities": Chunk(exact, voxel_size=(10, 10, 10), layer_type="affinity_map"),
    }
    with open_viewer(chunks) as served:
        viewer = served.viewer
        browser.get(served.url)
        set_viewport(browser, 800, 600)
        pixels = checked_panel(viewer, affinities=False).astype(float)
        for color in range(3):  # red, green, blue = the z, y, x affinities of section 25
            shown = np.repeat(pixels[..., color : color + 1], 3, axis=2)
            scores = [correlation_with(shown, exact[c, 25]) for c in range(3)]
            others = [score for c, score in enumerate(scores) if c != color]
            assert scores[color] > 0.8 and scores[color] > max(others) + 0.1, scores
        if screenshot_dir is not None:  # the image and affinities from its boundary map
            side_by_side = neuroglancer.row_layout(
                [
                    neuroglancer.LayerGroupViewer(layers=["image"], layout="xy"),
                    neuroglancer.LayerGroupViewer(layers=["affinities"], layout="xy"),
                ]
            )
            with viewer.txn() as s:
                s.layers["affinities"].visible = True
            path = screenshot_dir / "neuroglancer-affinities.png"
            readme_screenshot(browser, viewer, path, side_by_side, zoom=0.55, size=(800, 340))


def test_read_info_names_the_volume_when_info_is_missing_or_damaged(tmp_path):
    from chunkflow.viewer.neuroglancer import read_info

    with pytest.raises(ChunkflowError, match="no precomputed volume there"):
        read_info(f"file://{tmp_path}")
    (tmp_path / "info").write_text("{not json")
    with pytest.raises(ChunkflowError, match=f"{tmp_path}: unreadable precomputed info"):
        read_info(f"file://{tmp_path}")
    (tmp_path / "info").write_text('{"type": "image"}')
    assert read_info(f"file://{tmp_path}") == {"type": "image"}
    with pytest.raises(ChunkflowError, match="paths only"):
        read_info(str(tmp_path))
