import numpy as np
import pytest
import tifffile

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.tif import read_tif, write_tif
from tests.conftest import error_line, read_stack


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "uint32", "uint64", "float32"])
def test_round_trip_keeps_dtype_and_geometry(tmp_path, dtype):
    rng = np.random.default_rng(0)
    array = (rng.random((4, 5, 6)) * 200).astype(dtype)
    write_tif(Chunk(array, (1, 2, 3), (30, 6, 6)), str(tmp_path / "c.tif"))
    back = read_tif(str(tmp_path / "c.tif"))
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, array)
    assert back.voxel_offset == (1, 2, 3) and back.voxel_size == (30, 6, 6)


def test_multichannel_and_compression(tmp_path):
    array = np.random.default_rng(1).random((3, 4, 5, 6), dtype=np.float32)
    write_tif(Chunk(array, layer_type="affinity_map"), str(tmp_path / "a.tif"), "zlib")
    back = read_tif(str(tmp_path / "a.tif"))
    np.testing.assert_array_equal(back.array, array)
    assert back.is_affinity_map


def test_plain_tiff_from_another_tool(tmp_path):
    tifffile.imwrite(
        tmp_path / "plain.tif", np.arange(12, dtype="uint16").reshape(3, 4), imagej=True
    )
    chunk = read_tif(str(tmp_path / "plain.tif"), voxel_offset=(5, 0, 0))
    assert chunk.shape == (1, 3, 4) and chunk.voxel_offset == (5, 0, 0)


def test_cutout_and_errors(tmp_path):
    write_tif(
        Chunk(np.arange(64, dtype="uint8").reshape(4, 4, 4), (10, 10, 10)), str(tmp_path / "c.tif")
    )
    part = read_tif(str(tmp_path / "c.tif"), bbox=BoundingBox((11, 11, 11), (13, 13, 13)))
    assert part.voxel_offset == (11, 11, 11) and part.shape == (2, 2, 2)
    with pytest.raises(ChunkflowError, match="outside the data"):
        read_tif(str(tmp_path / "c.tif"), bbox=BoundingBox((0, 0, 0), (13, 13, 13)))
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ChunkflowError, match="is not a TIFF file"):
        read_tif(str(tmp_path / "bad.tif"))


def test_cli_h5_to_tif_to_h5_on_real_labels(run_cli, gala, tmp_path):
    run_cli(
        f"read-h5 -f {gala}/test-gt.lzf.h5 -o gt write-tif -i gt -f gt.tif "
        "read-tif -f gt.tif -o back write-h5 -i back -f back.h5"
    )
    gt = read_stack(gala / "test-gt.lzf.h5")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "gt.tif"), gt)
    from chunkflow.io.h5 import read_h5

    back = read_h5(str(tmp_path / "back.h5"))
    np.testing.assert_array_equal(back.array, gt)
    assert back.is_segmentation


def test_cli_dtype_cast_and_bad_file(run_cli, tmp_path):
    run_cli("create-chunk -s 2 3 4 -t float32 write-tif -f f.tif -t uint16 --rescale")
    assert tifffile.imread(tmp_path / "f.tif").dtype == np.uint16
    (tmp_path / "x.tif").write_text("nope")
    assert "x.tif is not a TIFF file" in error_line(run_cli("read-tif -f x.tif", expect=1))
