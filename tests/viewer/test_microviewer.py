"""One chunk in microviewer: what its server gets, what it serves, what a browser shows."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error

import numpy as np
import pytest

pytest.importorskip("microviewer")

from chunkflow.chunk import Chunk  # noqa: E402
from chunkflow.errors import ChunkflowError  # noqa: E402
from chunkflow.viewer.microviewer import cutout, open_microviewer  # noqa: E402
from tests.conftest import GALA, read_stack  # noqa: E402
from tests.viewer.helpers import colors, get, png_pixels, set_viewport  # noqa: E402


def test_cutout_is_in_microviewer_xyz_order():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    layer = cutout(Chunk(array, voxel_offset=(1, 2, 3), voxel_size=(40, 4, 4)))
    assert layer["layer_type"] == "image"
    assert layer["img"].shape == (4, 3, 2)
    assert layer["offset"] == [3, 2, 1] and layer["resolution"] == [4, 4, 40]
    assert layer["img"].tobytes("F") == array.tobytes()  # what the server sends


def test_segmentation_ids_keep_their_bits_without_a_copy():
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    layer = cutout(Chunk(array, layer_type="segmentation"))
    assert layer["layer_type"] == "segmentation" and layer["img"].dtype == np.uint32
    assert np.shares_memory(layer["img"], array)


def test_affinities_become_rgb():
    affs = np.random.default_rng(0).random((3, 2, 3, 4), dtype=np.float32)
    rgba = cutout(Chunk(affs, layer_type="affinity_map"))["img"]
    assert rgba.dtype == np.uint32 and rgba.shape == (4, 3, 2)
    for channel in range(3):
        np.testing.assert_array_equal(
            (rgba >> (8 * channel)) & 0xFF, np.round(affs[channel] * 255).astype(np.uint32).T
        )


def test_server_serves_parameters_and_data_then_stops():
    image = Chunk(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), (10, 20, 30), (40, 4, 4))
    seg = Chunk(np.ones((2, 2, 2), np.uint32), (11, 21, 31), (40, 4, 4), "segmentation")
    with open_microviewer(image, seg) as viewer:
        assert viewer.url.startswith("http://127.0.0.1:")
        parameters = json.loads(get(viewer.url + "parameters"))
        assert parameters["viewtype"] == "hyper"
        assert parameters["bounds"] == [31, 21, 11, 33, 23, 12]  # the overlap, x y z
        assert parameters["resolution"] == [4, 4, 40]
        assert parameters["data_types"] == ["uint8", "uint32"]
        assert get(viewer.url + "channel") == image.array[1:, 1:3, 1:3].tobytes()
        assert get(viewer.url + "segmentation") == seg.array[:1].tobytes()
        assert b"microviewer" in get(viewer.url).lower()
    with pytest.raises(urllib.error.URLError):
        get(viewer.url, timeout=2)


def test_what_the_view_lacks_is_a_404_and_failures_one_log_line(capfd, caplog):
    image = Chunk(np.zeros((2, 3, 4), np.uint8))
    with open_microviewer(image) as viewer:
        for path in ("segmentation", "nope", "cursors/../../etc/passwd", "parameters/x"):
            with pytest.raises(urllib.error.HTTPError) as err:
                get(viewer.url + path)
            assert err.value.code == 404
        assert json.loads(get(viewer.url + "parameters"))["viewtype"] == "single"
        try:  # what the server does when a request fails, e.g. the browser went away
            raise ConnectionResetError("the peer went away")
        except ConnectionResetError:
            viewer.server.handle_error(None, ("127.0.0.1", 5555))
    (record,) = [r for r in caplog.records if r.name.startswith("chunkflow.")]
    assert record.getMessage() == (
        "viewer: request from 127.0.0.1: ConnectionResetError: the peer went away"
    )
    assert record.exc_info is None
    assert "Traceback" not in capfd.readouterr().err


def test_errors_name_the_problem():
    image = Chunk(np.zeros((2, 3, 4), np.uint8), voxel_size=(40, 4, 4))
    with pytest.raises(ChunkflowError, match="voxel size"):
        open_microviewer(image, Chunk(np.zeros((2, 3, 4), np.uint32)))
    far = Chunk(np.zeros((2, 3, 4), np.uint32), (100, 0, 0), (40, 4, 4))
    with pytest.raises(ChunkflowError, match="does not overlap"):
        open_microviewer(image, far)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ChunkflowError, match=f"cannot serve microviewer on 127.0.0.1:{port}"):
            open_microviewer(image, port=port)


# A real browser --------------------------------------------------------------------------------


def canvas_pixels(browser) -> np.ndarray:
    """The pixels of microviewer's slice canvas, exactly as drawn (RGB)."""
    url = browser.execute_script("return document.getElementById('channel').toDataURL()")
    return png_pixels(base64.b64decode(url.split(",", 1)[1]))


def show_section(browser, z: int, timeout: float = 20) -> None:
    """Wait until microviewer has downloaded the volume, then draw section z."""
    deadline = time.monotonic() + timeout
    while not browser.execute_script("return window.vol !== undefined && vol.progress() >= 1"):
        assert time.monotonic() < deadline, "microviewer did not load the chunk in time"
        time.sleep(0.1)
    browser.execute_script(f"SLICE.z = {z}; render(true);")


def wait_for(browser, condition, timeout: float = 10) -> np.ndarray:
    """Poll the canvas until `condition(pixels)` holds; its last pixels."""
    deadline = time.monotonic() + timeout
    while True:
        pixels = canvas_pixels(browser)
        if condition(pixels) or time.monotonic() > deadline:
            return pixels
        time.sleep(0.1)


@pytest.fixture(scope="module")
def gala_image():
    return read_stack(GALA / "test-image.h5")


def test_browser_shows_the_section_voxel_for_voxel(browser, gala_image):
    section = gala_image[25]
    with open_microviewer(Chunk(gala_image, voxel_size=(10, 10, 10))) as viewer:
        browser.get(viewer.url)
        show_section(browser, 25)
        pixels = wait_for(browser, lambda p: np.array_equal(p[..., 0], section))
        assert pixels.shape[:2] == section.shape  # y rows, x columns: the xy plane
        np.testing.assert_array_equal(pixels[..., 0], section)  # grey: r = g = b = the voxel
        np.testing.assert_array_equal(pixels[..., 2], section)


def test_browser_overlays_the_segmentation(browser, gala_image, screenshot_dir):
    gt = read_stack(GALA / "test-gt.lzf.h5")
    image = Chunk(gala_image, voxel_size=(10, 10, 10))
    seg = Chunk(gt, voxel_size=(10, 10, 10), layer_type="segmentation")
    with open_microviewer(image, seg) as viewer:
        browser.get(viewer.url)
        set_viewport(browser, 800, 600)
        show_section(browser, 25)
        pixels = wait_for(browser, lambda p: colors(p) > 20)
        assert colors(pixels) > 20  # segments in colors over the image
        if screenshot_dir is not None:
            set_viewport(browser, 560, 270)
            browser.find_element("tag name", "body").send_keys("2")  # 2x magnification
            time.sleep(0.5)
            path = screenshot_dir / "microviewer-image-seg.png"
            path.write_bytes(browser.get_screenshot_as_png())
            assert os.path.getsize(path) < 300_000
