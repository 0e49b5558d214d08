"""Shared by the viewer tests: read a served viewer over loopback, drive headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import urllib.parse
import urllib.request

import numpy as np
import pytest

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


def get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def neuroglancer_state(viewer_url: str, timeout: float = 10) -> dict:
    """The viewer state a browser would get: the first state event of the viewer's stream."""
    parts = urllib.parse.urlsplit(viewer_url)
    token = parts.path.strip("/").split("/")[1]  # /v/{token}/
    events = f"{parts.scheme}://{parts.netloc}/events/{token}?c=test&gc=&gs="
    with urllib.request.urlopen(events, timeout=timeout) as response:
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data:"):
                message = json.loads(line[len("data:") :])
                if message["k"] == "s":
                    return message["s"]
    raise AssertionError(f"no state event from {events}")


def chromium():
    """A headless Chromium driven by selenium; skips (with the reason) when one is missing."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    from selenium.webdriver.chrome.service import Service

    binary = next((shutil.which(name) for name in BROWSER_NAMES if shutil.which(name)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(
            "chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in containers
        "--disable-dev-shm-usage",
        "--use-angle=swiftshader",  # software WebGL: no GPU here
        "--enable-unsafe-swiftshader",
        "--window-size=800,600",
    ):
        options.add_argument(argument)
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    return driver


def set_viewport(driver, width: int, height: int) -> None:
    """Size the window so the page itself is `width` x `height` pixels."""
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    outer = driver.get_window_size()
    driver.set_window_size(width + outer["width"] - inner[0], height + outer["height"] - inner[1])


@contextlib.contextmanager
def panel_txn(viewer, width: int, height: int, layout: str):
    """A transaction on a neuroglancer viewer's state with `layout` set, its screenshots fixed
    to `width` x `height` pixels of panel alone (no UI controls, no panel borders)."""
    with viewer.config_state.txn() as s:
        s.show_ui_controls = False
        s.show_panel_borders = False
        s.viewer_size = [width, height]
    with viewer.txn() as s:
        s.layout = layout
        yield s


def png_pixels(png: bytes) -> np.ndarray:
    """(height, width, 3) uint8 RGB pixels of a PNG."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def grey_levels(pixels: np.ndarray) -> int:
    """How many distinct grey values (r == g == b) the pixels hold."""
    grey = (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])
    return len(np.unique(pixels[..., 0][grey]))


def colors(pixels: np.ndarray, min_count: int = 20) -> int:
    """How many distinct saturated colors cover at least `min_count` pixels each."""
    flat = pixels.reshape(-1, 3).astype(np.int32)
    saturated = flat[(flat.max(axis=1) - flat.min(axis=1)) > 40]
    keys = saturated[:, 0] << 16 | saturated[:, 1] << 8 | saturated[:, 2]
    _, counts = np.unique(keys, return_counts=True)
    return int((counts >= min_count).sum())
