import os

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.npy import read_npy, write_npy
from tests.conftest import error_line


def test_round_trip(tmp_path):
    array = np.random.default_rng(0).random((2, 3, 4, 5))
    write_npy(Chunk(array), str(tmp_path / "a.npy"))
    back = read_npy(str(tmp_path / "a.npy"), voxel_offset=(1, 1, 1))
    np.testing.assert_array_equal(back.array, array)
    assert back.voxel_offset == (1, 1, 1)


def test_offset_from_bbox_in_name(run_cli, tmp_path):
    (tmp_path / "out").mkdir()
    run_cli("create-chunk -s 2 3 4 --voxel-offset 5 6 7 --pattern random save-npy -f out/")
    assert os.listdir(tmp_path / "out") == ["5-7_6-9_7-11.npy"]
    chunk = read_npy(str(tmp_path / "out" / "5-7_6-9_7-11.npy"))
    assert chunk.voxel_offset == (5, 6, 7)
    run_cli("load-npy -f out/5-7_6-9_7-11.npy -o a write-h5 -i a -f a.h5")
    from chunkflow.io.h5 import read_h5

    np.testing.assert_array_equal(read_h5("a.h5").array, chunk.array)
    assert read_h5("a.h5").voxel_offset == (5, 6, 7)


def test_not_a_npy_file(tmp_path, run_cli):
    (tmp_path / "x.npy").write_text("text")
    with pytest.raises(ChunkflowError, match="not a .npy file"):
        read_npy(str(tmp_path / "x.npy"))
    assert "not a .npy file" in error_line(run_cli("load-npy -f x.npy", expect=1))
