import os

import numpy as np
import pytest
import zarr

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.zarr import read_zarr, write_zarr
from tests.conftest import error_line, read_stack


def test_new_array_has_gunpowder_attributes(tmp_path):
    array = np.random.default_rng(0).integers(0, 255, (4, 6, 8), dtype=np.uint8)
    write_zarr(Chunk(array, (2, 3, 4), (40, 4, 4)), str(tmp_path / "a.zarr"), "volumes/raw")
    stored = zarr.open_array(str(tmp_path / "a.zarr"), path="volumes/raw", mode="r")
    assert stored.metadata.zarr_format == 3
    assert stored.attrs["resolution"] == [40, 4, 4]
    assert stored.attrs["offset"] == [80, 12, 16]  # world units, z y x
    back = read_zarr(str(tmp_path / "a.zarr"), "volumes/raw")
    np.testing.assert_array_equal(back.array, array)
    assert back.voxel_offset == (2, 3, 4) and back.voxel_size == (40, 4, 4)


def test_reads_arrays_written_by_other_tools(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    arr = group.create_array("labels", shape=(2, 4, 4), dtype="uint64", chunks=(1, 2, 2))
    arr[...] = 7
    arr.attrs.update({"resolution": [8, 8, 8], "offset": [16, 0, 8]})
    chunk = read_zarr(str(tmp_path / "g.zarr"))  # the only array in the group
    assert chunk.voxel_offset == (2, 0, 1) and chunk.is_segmentation


def test_write_into_existing_dataset(tmp_path):
    store = str(tmp_path / "v.zarr")
    write_zarr(Chunk(np.zeros((4, 8, 8), "uint16"), (0, 0, 0)), store, "raw", block_size=(2, 4, 4))
    write_zarr(Chunk(np.full((2, 4, 4), 9, "uint16"), (2, 4, 4)), store, "raw")
    whole = read_zarr(store, "raw").array
    assert whole[2:, 4:, 4:].min() == 9 and whole.sum() == 9 * 32
    part = read_zarr(store, "raw", bbox=BoundingBox((2, 4, 4), (4, 8, 8)))
    assert part.voxel_offset == (2, 4, 4) and part.array.min() == 9
    with pytest.raises(ChunkflowError, match="dtype float32 does not fit"):
        write_zarr(Chunk(np.zeros((2, 2, 2), "float32")), store, "raw")
    with pytest.raises(ChunkflowError, match="outside the dataset"):
        write_zarr(Chunk(np.zeros((2, 2, 2), "uint16"), (3, 0, 0)), store, "raw")
    with pytest.raises(ChunkflowError, match="channels"):
        write_zarr(Chunk(np.zeros((2, 2, 2, 2), "uint16")), store, "raw")


def test_cli_round_trip_on_real_data(run_cli, gala, tmp_path):
    run_cli(
        f"read-h5 -f {gala}/test-image.h5 -x 10 10 10 save-zarr -f s.zarr -d raw "
        "load-zarr -f s.zarr -d raw -o back write-h5 -i back -f back.h5"
    )
    from chunkflow.io.h5 import read_h5

    back = read_h5(str(tmp_path / "back.h5"))
    np.testing.assert_array_equal(back.array, read_stack(gala / "test-image.h5"))
    assert back.voxel_size == (10, 10, 10)


def test_cli_errors(run_cli, tmp_path):
    assert "no such zarr store" in error_line(run_cli("load-zarr -f none.zarr", expect=1))
    run_cli(
        "create-chunk -s 2 2 2 save-zarr -f s.zarr -d a create-chunk -s 2 2 2 "
        "save-zarr -f s.zarr -d b"
    )
    assert "which dataset" in error_line(run_cli("load-zarr -f s.zarr", expect=1))
    assert sorted(os.listdir(tmp_path / "s.zarr")) == ["a", "b", "zarr.json"]
