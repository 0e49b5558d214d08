"""Every reader checks the geometry a file stores and the array it holds: a bad file fails with
one line naming the file and what was expected, never as a chunk in the wrong place."""

import json

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.h5 import read_h5
from chunkflow.io.metadata import stored_vector
from chunkflow.io.npy import read_npy
from chunkflow.io.precomputed import create_info, read_precomputed
from chunkflow.io.tif import read_tif
from chunkflow.io.zarr import read_zarr, write_zarr

BAD_VOXEL_SIZES = {
    "bytes": b"40,4,4",
    "text": "40 4 4",
    "zero": [0, 4, 4],
    "negative": [40, -4, 4],
    "two values": [4, 4],
    "four values": [40, 4, 4, 1],
    "nan": [np.nan, 4.0, 4.0],
    "infinite": [np.inf, 4.0, 4.0],
    "fraction": [40, 4.5, 4],
}


def _h5_root(path, value):
    with h5py.File(path, "w") as f:
        f["main"] = np.zeros((2, 3, 4), np.uint8)
        f["voxel_size"] = value
    return lambda: read_h5(str(path))


def _h5_attribute(path, value):
    with h5py.File(path, "w") as f:
        f.create_dataset("volumes/raw", data=np.zeros((2, 3, 4), np.uint8))
        f["volumes/raw"].attrs["resolution"] = value
    return lambda: read_h5(str(path), "volumes/raw")


def _tif(path, value):
    tifffile.imwrite(
        path,
        np.zeros((2, 3, 4), np.uint8),
        photometric="minisblack",
        metadata={"voxel_size": value.decode() if isinstance(value, bytes) else value},
    )
    return lambda: read_tif(str(path))


def _zarr(path, value):
    write_zarr(Chunk(np.zeros((2, 3, 4), np.uint8)), str(path), "raw")
    zarr.open_group(str(path), mode="a")["raw"].attrs["resolution"] = (
        value.decode() if isinstance(value, bytes) else value
    )
    return lambda: read_zarr(str(path), "raw")


def _precomputed(path, value):
    volume = f"file://{path}"
    create_info(volume, (2, 4, 4), (40, 4, 4), block_size=(2, 4, 4))
    info = json.loads((path / "info").read_text())
    info["scales"][0]["resolution"] = value.decode() if isinstance(value, bytes) else value
    (path / "info").write_text(json.dumps(info))
    return lambda: read_precomputed(volume, BoundingBox((0, 0, 0), (1, 1, 1)), fill_missing=True)


READERS = {
    "h5 /voxel_size": (_h5_root, "bad.h5", "/voxel_size is"),
    "h5 resolution attribute": (_h5_attribute, "bad.h5", "bad.h5:/volumes/raw: the resolution"),
    "tif": (_tif, "bad.tif", "bad.tif: voxel_size is"),
    "zarr": (_zarr, "bad.zarr", "bad.zarr/raw: the resolution is"),
    "precomputed info": (_precomputed, "vol", "vol/info: scale 0: resolution is"),
}


@pytest.mark.parametrize("value", BAD_VOXEL_SIZES.values(), ids=BAD_VOXEL_SIZES.keys())
@pytest.mark.parametrize("reader", READERS, ids=READERS)
def test_every_reader_refuses_a_bad_voxel_size(tmp_path, reader, value):
    make, name, where = READERS[reader]
    if reader == "precomputed info" and isinstance(value, list) and not np.isfinite(value).all():
        pytest.skip("JSON holds no NaN or infinity: that info is unreadable as a whole")
    if reader == "precomputed info" and value == BAD_VOXEL_SIZES["fraction"]:
        pytest.skip("a fractional resolution is valid precomputed (see the next test)")
    read = make(tmp_path / name, value)
    with pytest.raises(ChunkflowError) as error:
        read()
    message = str(error.value)
    assert "\n" not in message and where in message, message
    assert str(tmp_path / name) in message
    assert "expected 3 positive" in message


def test_precomputed_resolution_in_fractions_is_a_number_but_no_voxel_size(tmp_path):
    read = _precomputed(tmp_path / "vol", [4.5, 4, 40])
    with pytest.raises(
        ChunkflowError, match=r"vol: the resolution at mip 0 .* 3 positive integers"
    ):
        read()


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("size", [4, 0, 2], "size is [4, 0, 2]; expected 3 positive integers (x, y, z)"),
        ("voxel_offset", [0.5, 0, 0], "voxel_offset is [0.5, 0, 0]; expected 3 integers"),
        ("data_type", "str", "data_type 'str' in the info; expected a numeric type"),
        ("num_channels", 0, "num_channels 0 in the info; expected a positive integer"),
        ("scales", [], "unreadable precomputed info"),
    ],
)
def test_precomputed_info_geometry_and_type_are_checked(tmp_path, field, value, expected):
    volume = f"file://{tmp_path}/vol"
    create_info(volume, (2, 4, 4), (40, 4, 4), block_size=(2, 4, 4))
    info = json.loads((tmp_path / "vol" / "info").read_text())
    if field in info["scales"][0]:
        info["scales"][0][field] = value
    else:
        info[field] = value
    (tmp_path / "vol" / "info").write_text(json.dumps(info))
    with pytest.raises(ChunkflowError) as error:
        read_precomputed(volume, BoundingBox((0, 0, 0), (1, 1, 1)), fill_missing=True)
    assert str(error.value).startswith(volume) and expected in str(error.value)


def test_offsets_are_checked_too(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["main"] = np.zeros((2, 3, 4), np.uint8)
        f["voxel_offset"] = np.array([1.5, 0, 0])
    with pytest.raises(
        ChunkflowError, match=r"a.h5: /voxel_offset is \[1.5, 0.0, 0.0\]; expected 3 integers"
    ):
        read_h5(str(tmp_path / "a.h5"))
    with h5py.File(tmp_path / "b.h5", "w") as f:
        raw = f.create_dataset("raw", data=np.zeros((2, 3, 4), np.uint8))
        raw.attrs["resolution"], raw.attrs["offset"] = (40, 4, 4), (20, 0, 0)
    with pytest.raises(
        ChunkflowError, match=r"b.h5:/raw: the offset \(20, 0, 0\) .* not a multiple"
    ):
        read_h5(str(tmp_path / "b.h5"))
    write_zarr(Chunk(np.zeros((2, 3, 4), np.uint8)), str(tmp_path / "c.zarr"), "raw")
    zarr.open_group(str(tmp_path / "c.zarr"), mode="a")["raw"].attrs["offset"] = [0, 0]
    with pytest.raises(ChunkflowError, match=r"c.zarr/raw: the offset is \[0, 0\]; expected 3"):
        read_zarr(str(tmp_path / "c.zarr"), "raw")
    tifffile.imwrite(
        tmp_path / "d.tif", np.zeros((2, 3, 4), np.uint8), metadata={"voxel_offset": "0 0 0"}
    )
    with pytest.raises(ChunkflowError, match=r"d.tif: voxel_offset is '0 0 0'; expected 3"):
        read_tif(str(tmp_path / "d.tif"))


def test_stored_layer_types_are_checked(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["main"] = np.zeros((2, 3, 4), np.uint8)
        f.attrs["layer_type"] = np.int64(3)
    with pytest.raises(ChunkflowError, match="a.h5: the layer type is 3; expected one of image"):
        read_h5(str(tmp_path / "a.h5"))
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["main"] = np.zeros((2, 3, 4), np.uint8)
        f["main"].attrs["layer_type"] = b"segmentation"
    assert read_h5(str(tmp_path / "b.h5")).is_segmentation  # bytes are text here
    tifffile.imwrite(
        tmp_path / "c.tif", np.zeros((2, 3, 4), np.uint8), metadata={"layer_type": "labels"}
    )
    with pytest.raises(ChunkflowError, match="c.tif: unknown layer type 'labels'"):
        read_tif(str(tmp_path / "c.tif"))


# arrays: 2D RGB pictures, empty arrays, arrays of strings ------------------------------------


def test_rgb_tif_reads_as_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    chunk = read_tif(str(tmp_path / "rgb.tif"))
    assert chunk.shape == (3, 1, 5, 6) and chunk.is_image
    np.testing.assert_array_equal(chunk.array[:, 0], np.moveaxis(rgb, -1, 0))
    stack = np.random.default_rng(1).integers(0, 255, (2, 5, 6, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="rgb")
    chunk = read_tif(str(tmp_path / "stack.tif"))
    assert chunk.shape == (3, 2, 5, 6)
    np.testing.assert_array_equal(chunk.array, np.moveaxis(stack, -1, 0))
    # a grey chunk three voxels wide stays (z, y, x)
    tifffile.imwrite(tmp_path / "grey.tif", stack[..., 0], photometric="minisblack")
    assert read_tif(str(tmp_path / "grey.tif")).shape == (2, 5, 6)


def test_rgb_h5_picture_is_refused(tmp_path):
    with h5py.File(tmp_path / "picture.h5", "w") as f:
        f["main"] = np.zeros((5, 6, 3), np.uint8)
        f["main"].attrs["CLASS"] = np.bytes_(b"IMAGE")
        f["main"].attrs["IMAGE_SUBCLASS"] = np.bytes_(b"IMAGE_TRUECOLOR")
    with pytest.raises(ChunkflowError, match=r"picture.h5:/main is a 2D picture .* expected a 3D"):
        read_h5(str(tmp_path / "picture.h5"))


def _h5(path, array):
    with h5py.File(path, "w") as f:
        f["main"] = array
    return lambda: read_h5(str(path))


def _npy(path, array):
    np.save(path, array)
    return lambda: read_npy(str(path))


def _zarr_array(path, array):
    zarr.create_array(store=str(path), data=array)
    return lambda: read_zarr(str(path))


ARRAY_READERS = {"h5": (_h5, "a.h5"), "npy": (_npy, "a.npy"), "zarr": (_zarr_array, "a.zarr")}
BAD_ARRAYS = {
    "empty": (np.zeros((0, 3, 4), np.uint8), "array of shape (0, 3, 4) is empty"),
    "strings": (np.array([[["ab", "cd"]]]), "expected numbers (bool, integer or float)"),
    "2D": (np.zeros((3, 4), np.uint8), "array of shape (3, 4); expected 3D (z, y, x) or 4D"),
    "5D": (np.zeros((1, 1, 1, 1, 1), np.uint8), "expected 3D (z, y, x) or 4D"),
}


@pytest.mark.parametrize("bad", BAD_ARRAYS, ids=BAD_ARRAYS)
@pytest.mark.parametrize("reader", ARRAY_READERS, ids=ARRAY_READERS)
def test_every_reader_refuses_arrays_that_are_no_chunk(tmp_path, reader, bad):
    make, name = ARRAY_READERS[reader]
    array, expected = BAD_ARRAYS[bad]
    if reader == "h5" and array.dtype.kind == "U":
        array = array.astype("S")  # HDF5 stores bytes
    read = make(tmp_path / name, array)
    with pytest.raises(ChunkflowError) as error:
        read()
    message = str(error.value)
    assert str(tmp_path / name) in message and expected in message, message


def test_good_geometry_reads_as_before(tmp_path):
    assert stored_vector("f", "voxel size", np.array([40.0, 4.0, 4.0]), positive=True) == (40, 4, 4)
    assert stored_vector("f", "offset", (-3, 0, 2)) == (-3, 0, 2)
    _h5_root(tmp_path / "a.h5", np.array([40, 4, 4], np.uint16))
    assert read_h5(str(tmp_path / "a.h5")).voxel_size == (40, 4, 4)
    # options that give the geometry leave a bad stored one unread (read-h5 -x ... -v ...)
    _h5_root(tmp_path / "b.h5", b"40,4,4")
    chunk = read_h5(str(tmp_path / "b.h5"), voxel_offset=(1, 2, 3), voxel_size=(8, 8, 8))
    assert chunk.voxel_size == (8, 8, 8) and chunk.voxel_offset == (1, 2, 3)
