"""Every reader takes the layer type from what the file stores or from the caller; when neither
says, the safe default: uint8 and float data are images, every other integer dtype is labels
(a label volume read as an image would be interpolated into ids that do not exist)."""

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from chunkflow.chunk import Chunk, LayerType
from chunkflow.geometry import BoundingBox
from tests.conftest import error_line

IMAGE, SEGMENTATION = LayerType.IMAGE, LayerType.SEGMENTATION
DEFAULTS = [
    ("uint8", IMAGE),
    ("float32", IMAGE),
    ("float64", IMAGE),
    ("uint16", SEGMENTATION),
    ("uint32", SEGMENTATION),
    ("int64", SEGMENTATION),
    ("uint64", SEGMENTATION),
]
SHAPE = (2, 5, 6)


def values(dtype) -> np.ndarray:
    return np.arange(np.prod(SHAPE)).reshape(SHAPE).astype(dtype)


def write_plain(fmt: str, folder, array: np.ndarray) -> str:
    """`array` written as another tool would: no layer type stored; returns the path."""
    if fmt == "h5":
        path = str(folder / "plain.h5")
        with h5py.File(path, "w") as f:
            f["stack"] = array
    elif fmt == "tif":
        path = str(folder / "plain.tif")
        tifffile.imwrite(path, array, photometric="minisblack")
    elif fmt == "npy":
        path = str(folder / "plain.npy")
        np.save(path, array)
    elif fmt == "zarr":
        path = str(folder / "plain.zarr")
        zarr.create_array(path, shape=array.shape, dtype=array.dtype)[...] = array
    else:
        from cloudvolume import CloudVolume

        path = f"file://{folder}/plain"
        # the generic precomputed type: "image" is what cloud-volume writes for anything that
        # is not declared a segmentation layer
        info = CloudVolume.create_new_info(
            num_channels=1,
            layer_type="image",
            data_type=str(array.dtype),
            encoding="raw",
            resolution=(1, 1, 1),
            voxel_offset=(0, 0, 0),
            volume_size=array.shape[::-1],
            chunk_size=array.shape[::-1],
        )
        vol = CloudVolume(path, info=info, progress=False, compress=False)
        vol.commit_info()
        vol[:, :, :] = array.T
    return path


def read(fmt: str, path: str, layer_type=None) -> Chunk:
    if fmt == "h5":
        from chunkflow.io.h5 import read_h5

        return read_h5(path, layer_type=layer_type)
    if fmt == "tif":
        from chunkflow.io.tif import read_tif

        return read_tif(path, layer_type=layer_type)
    if fmt == "npy":
        from chunkflow.io.npy import read_npy

        return read_npy(path, layer_type=layer_type)
    if fmt == "zarr":
        from chunkflow.io.zarr import read_zarr

        # a plain array says nothing of its geometry: the reader must be told
        return read_zarr(path, layer_type=layer_type, voxel_offset=(0, 0, 0), voxel_size=(1, 1, 1))
    from chunkflow.io.precomputed import read_precomputed

    return read_precomputed(path, BoundingBox((0, 0, 0), SHAPE), layer_type=layer_type)


FORMATS = ["h5", "tif", "npy", "zarr", "precomputed"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype, expected", DEFAULTS)
def test_without_metadata_only_uint8_and_float_are_images(tmp_path, fmt, dtype, expected):
    if fmt == "precomputed" and dtype in ("float64", "int64"):
        pytest.skip("not a precomputed data type (neuroglancer has no float64 or int64)")
    path = write_plain(fmt, tmp_path, values(dtype))
    chunk = read(fmt, path)
    assert chunk.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(chunk.array, values(dtype))
    assert chunk.layer_type is expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_callers_layer_type_wins(tmp_path, fmt):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    image16 = write_plain(fmt, tmp_path / "a", values("uint16"))
    assert read(fmt, image16, layer_type="image").layer_type is IMAGE
    labels8 = write_plain(fmt, tmp_path / "b", values("uint8"))
    assert read(fmt, labels8, layer_type="segmentation").layer_type is SEGMENTATION


def test_stored_layer_types_win_over_the_default(tmp_path):
    from chunkflow.io.h5 import write_h5
    from chunkflow.io.tif import write_tif
    from chunkflow.io.zarr import write_zarr

    image16 = Chunk(values("uint16"), layer_type="image")  # 16-bit EM
    write_h5(image16, str(tmp_path / "a.h5"))
    write_tif(image16, str(tmp_path / "a.tif"))
    write_zarr(image16, str(tmp_path / "a.zarr"))
    assert read("h5", str(tmp_path / "a.h5")).layer_type is IMAGE
    assert read("tif", str(tmp_path / "a.tif")).layer_type is IMAGE
    assert read("zarr", str(tmp_path / "a.zarr")).layer_type is IMAGE


def test_cli_a_uint16_image_is_declared_with_layer_type(run_cli, tmp_path):
    write_plain("h5", tmp_path, values("uint16"))
    refused = error_line(run_cli("read-h5 -f plain.h5 normalize", expect=1))
    assert "normalize" in refused and "segmentation (uint16)" in refused
    run_cli("read-h5 -f plain.h5 -l image normalize write-h5 -f unit.h5")
    with h5py.File(tmp_path / "unit.h5") as f:
        np.testing.assert_allclose(f["main"][()], values("uint16") / 65535, rtol=1e-6)
    # the layer type follows the stored data, not the dtype it is cast to with -e
    run_cli("read-h5 -f plain.h5 -l image -e float32 write-h5 -f cast.h5")
    with h5py.File(tmp_path / "cast.h5") as f:
        assert f.attrs["layer_type"] == "image"
