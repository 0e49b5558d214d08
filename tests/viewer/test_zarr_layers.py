"""zarr stores (v2, v3, OME-Zarr) as neuroglancer layers, served like precomputed volumes, and
what a real browser draws from one."""

from __future__ import annotations

import json

import numpy as np
import pytest

neuroglancer = pytest.importorskip("neuroglancer")
zarr = pytest.importorskip("zarr")

from chunkflow.chunk import Chunk  # noqa: E402
from chunkflow.errors import ChunkflowError  # noqa: E402
from chunkflow.io.zarr import write_zarr  # noqa: E402
from chunkflow.viewer.neuroglancer import open_viewer  # noqa: E402
from tests.conftest import GALA, read_stack  # noqa: E402
from tests.viewer.helpers import get, neuroglancer_state, set_viewport  # noqa: E402
from tests.viewer.test_neuroglancer import (  # noqa: E402
    checked_panel,
    correlation_with,
    source_url,
)

NM = 1e-9


@pytest.fixture(scope="module")
def gala_image():
    return read_stack(GALA / "test-image.h5")


def layer_of(viewer) -> dict:
    (layer,) = neuroglancer_state(viewer.url)["layers"]
    return layer


def transform_of(layer: dict) -> dict:
    return (
        layer["source"]["transform"]
        if isinstance(layer["source"], dict)
        else (layer["source"][0]["transform"])
    )


def test_a_local_zarr3_array_is_served_with_its_geometry(tmp_path):
    """save-zarr's array, found by its zarr.json: served over HTTP as a zarr3:// source, at the
    voxel size and offset of gunpowder's attributes, in x y z."""
    labels = np.arange(4 * 6 * 8, dtype=np.uint64).reshape(4, 6, 8)
    store = tmp_path / "seg.zarr"
    write_zarr(Chunk(labels, (1, 2, 3), (40, 8, 4), "segmentation"), str(store))
    with open_viewer({}, {"seg": f"file://{store}"}) as viewer:
        layer = layer_of(viewer)
        server = viewer.url.split("/v/")[0]
        assert layer["type"] == "segmentation"
        url = source_url(layer)
        assert url.startswith(f"zarr3://{server}/chunkflow/files/")
        meta = json.loads(get(f"{url[len('zarr3://') :]}/zarr.json"))
        assert meta["shape"] == [4, 6, 8]
        transform = transform_of(layer)
        assert transform["outputDimensions"] == {
            "x": [pytest.approx(4 * NM), "m"],
            "y": [pytest.approx(8 * NM), "m"],
            "z": [pytest.approx(40 * NM), "m"],
        }
        # the array's dims are z, y, x voxels (neuroglancer would take them for meters)
        names = list(transform["inputDimensions"])
        assert [transform["inputDimensions"][n] for n in names] == [
            [pytest.approx(40 * NM), "m"],
            [pytest.approx(8 * NM), "m"],
            [pytest.approx(4 * NM), "m"],
        ]
        # output x, y, z = the array's dims 2, 1, 0, moved by the voxel offset (x y z)
        assert transform["matrix"] == [[0, 0, 1, 3], [0, 1, 0, 2], [1, 0, 0, 1]]


def test_zarr2_and_prefixed_paths(tmp_path):
    """A zarr v2 array (gunpowder 1.4's format), found by .zarray or named zarr2://."""
    store = tmp_path / "img.zarr"
    array = zarr.open_array(str(store), mode="w", shape=(2, 3, 4), dtype="uint8", zarr_format=2)
    array[...] = 7
    array.attrs.update({"resolution": [10, 10, 10], "offset": [0, 0, 0]})
    for path in (f"file://{store}", f"zarr2://file://{store}", f"zarr://file://{store}"):
        with open_viewer({}, {"img": path}) as viewer:
            layer = layer_of(viewer)
            assert layer["type"] == "image"
            assert source_url(layer).startswith("zarr2://http://")
            assert transform_of(layer)["outputDimensions"]["z"] == [pytest.approx(10 * NM), "m"]


def test_an_ome_zarr_group_keeps_its_own_scales(tmp_path):
    """An OME-Zarr 0.4 multiscale group: neuroglancer reads its scales itself, no transform."""
    store = tmp_path / "ome.zarr"
    group = zarr.open_group(str(store), mode="w", zarr_format=2)
    group.create_array("0", shape=(4, 8, 8), dtype="uint16")[...] = 1
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [40, 8, 8]}]}
            ],
        }
    ]
    with open_viewer({}, {"ome": f"file://{store}"}) as viewer:
        layer = layer_of(viewer)
        assert layer["type"] == "image" and source_url(layer).startswith("zarr2://http://")
        assert isinstance(layer["source"], str) or "transform" not in layer["source"]


def test_a_folder_that_is_no_store_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChunkflowError, match="no zarr store there"):
        open_viewer({}, {"x": f"zarr://file://{tmp_path / 'empty'}"})
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("a", shape=(2, 2, 2), dtype="uint8")
    with pytest.raises(ChunkflowError, match="without OME multiscales: name an array"):
        open_viewer({}, {"x": f"file://{tmp_path / 'plain.zarr'}"})


def test_cli_takes_zarr_layers(run_cli, tmp_path):
    write_zarr(Chunk(np.ones((2, 4, 4), np.uint8), voxel_size=(40, 8, 8)), str(tmp_path / "a.zarr"))
    result = run_cli(
        f"neuroglancer --layer a=zarr3://{tmp_path / 'a.zarr'} --serve-seconds 0", expect=None
    )
    assert result.code == 0, result.err
    assert "http://127.0.0.1:" in result.out + result.err


@pytest.fixture
def gala_zarr(tmp_path, gala_image):
    store = tmp_path / "gala.zarr"
    write_zarr(Chunk(gala_image, voxel_size=(10, 10, 10)), str(store), block_size=(16, 64, 64))
    return store


def test_browser_draws_the_zarr_store(browser, gala_image, gala_zarr):
    """The gala image as a zarr3 store beside the same image as a chunk: with the chunk hidden,
    the panel shows section z = 25 of the store, in place."""
    chunks = {"chunk": Chunk(gala_image, voxel_size=(10, 10, 10))}
    with open_viewer(chunks, {"store": f"file://{gala_zarr}"}) as served:
        browser.get(served.url)
        set_viewport(browser, 800, 600)
        pixels = checked_panel(served.viewer, chunk=False)
        assert pixels.std() > 10
        assert correlation_with(pixels, gala_image[25].astype(float)) > 0.8


def test_browser_draws_an_ome_zarr_store(browser, gala_image, tmp_path):
    """The gala image as OME-Zarr 0.4 (zarr v2) at 10 nm: drawn where the chunk is."""
    store = tmp_path / "gala-ome.zarr"
    group = zarr.open_group(str(store), mode="w", zarr_format=2)
    group.create_array("0", shape=gala_image.shape, dtype="uint8", chunks=(16, 64, 64))[...] = (
        gala_image
    )
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [10] * 3}]}
            ],
        }
    ]
    chunks = {"chunk": Chunk(gala_image, voxel_size=(10, 10, 10))}
    with open_viewer(chunks, {"store": f"file://{store}"}) as served:
        browser.get(served.url)
        set_viewport(browser, 800, 600)
        pixels = checked_panel(served.viewer, chunk=False)
        # OME-Zarr puts voxel centers on the scaled grid, half a voxel from the corners of
        # chunks and precomputed volumes: the panel at z = 25.5 shows section 26 of the store
        scores = [correlation_with(pixels, gala_image[z].astype(float)) for z in (24, 25, 26, 27)]
        assert scores[2] > 0.8 and scores[2] == max(scores), scores
