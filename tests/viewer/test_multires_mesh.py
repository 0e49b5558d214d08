"""A real browser draws our sharded multi-resolution meshes in neuroglancer's 3d panel."""

from __future__ import annotations

import time

import numpy as np
import pytest

neuroglancer = pytest.importorskip("neuroglancer")

from chunkflow.viewer.neuroglancer import open_viewer  # noqa: E402
from tests.mesh.test_multires import mesh_gala_gt  # noqa: E402
from tests.viewer.helpers import panel_txn, set_viewport  # noqa: E402
from tests.viewer.test_neuroglancer import canvas_screenshot  # noqa: E402

SIZE = 320


@pytest.fixture
def multires_gt(run_cli, gala, tmp_path):
    """gala ground truth meshed in 8 tasks and merged into sharded multires meshes."""
    path = f"file://{tmp_path}/seg"
    mesh_gala_gt(run_cli, gala, path)
    run_cli(f"mesh-merge-sharded -v {path}")
    from cloudvolume import CloudVolume

    gt = np.asarray(CloudVolume(path)[:, :, :])[..., 0]  # x, y, z
    labels, counts = np.unique(gt[gt != 0], return_counts=True)
    return path, [int(i) for i in labels[np.argsort(counts)[::-1]]]


def drawn(viewer, segments, until) -> np.ndarray:
    """The 3d panel alone (no slices) with `segments` selected: a (SIZE, SIZE) mask of the
    pixels that differ from the background. The browser may still be applying the new state or
    receiving mesh fragments when a screenshot is taken: retry for a while until
    `until(number of drawn pixels)` holds."""
    with panel_txn(viewer, SIZE, SIZE, "3d") as s:
        s.show_slices = False
        s.show_axis_lines = False
        s.show_scale_bar = False
        s.show_default_annotations = False  # the volume's bounding box
        s.position = [100, 50, 25]
        s.projection_scale = 300  # global units: 10 nm voxels, the panel shows 3 µm
        s.layers["gt"].segments = segments
    deadline = time.monotonic() + 90  # generous: CI machines may be busy
    while True:
        pixels = canvas_screenshot(viewer, timeout=60).astype(int)
        assert pixels.shape[:2] == (SIZE, SIZE)
        mask = np.abs(pixels).sum(axis=2) > 30  # on the black background
        if until(int(mask.sum())) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    return mask


def test_browser_draws_multires_meshes(browser, multires_gt):
    path, labels = multires_gt
    with open_viewer({}, {"gt": path}) as served:
        viewer = served.viewer
        browser.get(served.url)
        set_viewport(browser, 800, 600)
        assert drawn(viewer, [], until=lambda n: n == 0).sum() == 0  # nothing selected
        one = drawn(viewer, labels[:1], until=lambda n: n >= 2000)
        # the largest object covers a good part of the panel, in its segment colour
        assert one.sum() >= 2000
        more = drawn(viewer, labels[:6], until=lambda n: n > one.sum() + 1000)
        assert more.sum() > one.sum() + 1000
