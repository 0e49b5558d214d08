"""Precomputed volumes written by us must read back bit-exact through cloud-volume and
tensorstore (which reads zeros if chunk files get a .gz suffix, so none may)."""

import json
import os

import numpy as np
import pytest
import tensorstore as ts
from cloudvolume import CloudVolume

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.precomputed import create_info, read_precomputed, write_precomputed
from tests.conftest import DATA, error_line, read_stack


def fib25() -> np.ndarray:
    """The FIB-25 ground-truth cube, (z, y, x) uint64."""
    path = DATA / "neuroglancer_fib25" / "64x64x64-raw-uint64-segmentation.dat"
    return np.fromfile(path, "<u8").reshape((64, 64, 64), order="F").T.copy()


def tensorstore_read(path: str, mip: int = 0) -> np.ndarray:
    store = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": path + "/", "scale_index": mip}
    ).result()
    array = np.asarray(store.read().result())  # x, y, z, c
    return np.transpose(array, (3, 2, 1, 0))


def files_under(folder) -> list[str]:
    return [f for _, _, files in os.walk(folder) for f in files]


@pytest.mark.parametrize("encoding", ["raw", "compressed_segmentation"])
def test_real_segmentation_round_trip(tmp_path, encoding):
    labels = fib25()
    chunk = Chunk(labels, (3000, 3000, 3000), (8, 8, 8), "segmentation")
    path = f"file://{tmp_path}/seg"
    write_precomputed(chunk, path, encoding=encoding, block_size=(32, 32, 32))
    info = json.loads((tmp_path / "seg" / "info").read_text())
    assert info["type"] == "segmentation" and info["data_type"] == "uint64"
    assert info["scales"][0]["voxel_offset"] == [3000, 3000, 3000]
    assert info["scales"][0]["encoding"] == encoding
    assert not any(f.endswith(".gz") for f in files_under(tmp_path / "seg"))
    back = read_precomputed(path, chunk.bbox)
    np.testing.assert_array_equal(back.array, labels)
    assert back.is_segmentation and back.voxel_size == (8, 8, 8)
    np.testing.assert_array_equal(tensorstore_read(path)[0], labels)
    vol = CloudVolume(path)
    np.testing.assert_array_equal(np.asarray(vol[:, :, :])[..., 0].T, labels)


def test_multichannel_float_round_trip(tmp_path):
    affs = np.random.default_rng(0).random((3, 8, 16, 16), dtype=np.float32)
    chunk = Chunk(affs, (0, 16, 32), (40, 4, 4))
    path = f"file://{tmp_path}/affs"
    write_precomputed(chunk, path, block_size=(8, 16, 16))
    back = read_precomputed(path, chunk.bbox)
    assert back.is_affinity_map
    np.testing.assert_array_equal(back.array, affs)
    np.testing.assert_array_equal(tensorstore_read(path), affs)


def test_cutout_parts_and_write_into_existing(tmp_path):
    path = f"file://{tmp_path}/img"
    create_info(path, (8, 32, 32), (40, 4, 4), (0, 0, 0), "uint8", block_size=(4, 16, 16))
    write_precomputed(Chunk(np.full((4, 16, 16), 5, "uint8"), (4, 16, 0), (40, 4, 4)), path)
    part = read_precomputed(path, BoundingBox((4, 16, 0), (8, 32, 16)), fill_missing=True)
    assert part.array.min() == 5
    whole = read_precomputed(path, BoundingBox((0, 0, 0), (8, 32, 32)), fill_missing=True)
    assert whole.array.sum() == 5 * 4 * 16 * 16
    with pytest.raises(ChunkflowError, match="use `fill_missing`"):
        read_precomputed(path, BoundingBox((0, 0, 0), (4, 16, 16)))


def test_fill_missing_reads_zeros_past_the_volume_edge(tmp_path):
    path = f"file://{tmp_path}/affs"
    affs = np.random.default_rng(0).random((3, 8, 32, 32), dtype=np.float32)
    write_precomputed(Chunk(affs, (4, 16, 16)), path, block_size=(4, 16, 16))
    grown = BoundingBox((4, 16, 16), (12, 48, 48)).grow((2, 8, 8))
    chunk = read_precomputed(path, grown, fill_missing=True)
    assert chunk.bbox == grown and chunk.dtype == np.float32 and chunk.is_affinity_map
    expected = np.zeros((3, 12, 48, 48), np.float32)
    expected[:, 2:10, 8:40, 8:40] = affs
    np.testing.assert_array_equal(chunk.array, expected)
    outside = read_precomputed(path, BoundingBox((20, 0, 0), (22, 8, 8)), fill_missing=True)
    assert outside.shape == (3, 2, 8, 8) and not outside.array.any()
    with pytest.raises(ChunkflowError, match="which covers 4-12_16-48_16-48 .use `fill_missing`"):
        read_precomputed(path, grown)


def test_write_errors(tmp_path):
    path = f"file://{tmp_path}/img"
    create_info(path, (8, 32, 32), (1, 1, 1), (0, 0, 0), "uint8", block_size=(4, 16, 16))
    with pytest.raises(ChunkflowError, match="dtype uint16 does not fit"):
        write_precomputed(Chunk(np.zeros((4, 16, 16), "uint16")), path)
    with pytest.raises(ChunkflowError, match="3 channel"):
        write_precomputed(Chunk(np.zeros((3, 4, 16, 16), "uint8")), path)
    with pytest.raises(ChunkflowError, match="outside the volume"):
        write_precomputed(Chunk(np.zeros((4, 16, 16), "uint8"), (8, 0, 0)), path)
    with pytest.raises(ChunkflowError, match="not aligned.*`non_aligned_writes`"):
        write_precomputed(Chunk(np.zeros((2, 8, 8), "uint8"), (1, 1, 1)), path)
    write_precomputed(Chunk(np.ones((2, 8, 8), "uint8"), (1, 1, 1)), path, non_aligned_writes=True)
    assert read_precomputed(path, BoundingBox((1, 1, 1), (3, 9, 9))).array.min() == 1
    with pytest.raises(ChunkflowError, match="mip 3 does not exist"):
        read_precomputed(path, BoundingBox((0, 0, 0), (1, 1, 1)), mip=3)
    with pytest.raises(ChunkflowError, match="info file is missing"):
        read_precomputed(f"file://{tmp_path}/none", BoundingBox((0, 0, 0), (1, 1, 1)))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "info").write_text("{not json")
    with pytest.raises(ChunkflowError, match="unreadable"):
        read_precomputed(f"file://{tmp_path}/broken", BoundingBox((0, 0, 0), (1, 1, 1)))


class TestCli:
    def test_tutorial_ingest_then_cutout(self, run_cli, gala, tmp_path):
        image = read_stack(gala / "test-image.h5")
        run_cli(
            f"read-h5 --file-name {gala}/test-image.h5 --dataset-path /stack "
            f"--voxel-size 10 10 10 save --volume-path file://{tmp_path}/vol"
        )
        run_cli(
            f"cutout --volume-path file://{tmp_path}/vol --start 0 0 0 --stop 32 64 128 "
            "write-h5 --file-name cutout_chunk.h5"
        )
        from chunkflow.io.h5 import read_h5

        cut = read_h5(str(tmp_path / "cutout_chunk.h5"))
        np.testing.assert_array_equal(cut.array, image[:32, :64, :128])
        assert cut.voxel_size == (10, 10, 10)
        np.testing.assert_array_equal(tensorstore_read(f"file://{tmp_path}/vol")[0], image)

    def test_task_bbox_margin_and_alias(self, run_cli, tmp_path):
        run_cli("create-chunk -s 8 32 32 --pattern random save-precomputed -v vol -b 8 16 16")
        run_cli(
            "create-bbox -s 2 8 8 -z 4 16 16 load-precomputed -v vol -e 1 2 2 "
            "write-h5 -f m.h5 cutout -v vol -o inner write-h5 -i inner -f i.h5"
        )
        from chunkflow.io.h5 import read_h5

        with_margin, inner = read_h5("m.h5"), read_h5("i.h5")
        assert with_margin.bbox == BoundingBox((1, 6, 6), (7, 26, 26))
        np.testing.assert_array_equal(with_margin.crop(inner.bbox).array, inner.array)

    def test_create_info_with_mips_then_save_at_mip(self, run_cli, tmp_path):
        run_cli(
            "create-info -v vol --volume-size 8 64 64 -s 40 4 4 -d uint16 --max-mip 2 -b 8 16 16"
        )
        info = json.loads((tmp_path / "vol" / "info").read_text())
        assert [s["resolution"] for s in info["scales"]] == [[4, 4, 40], [8, 8, 40], [16, 16, 40]]
        run_cli(
            "--mip 1 create-chunk -s 8 32 32 -t uint16 --voxel-size 40 8 8 save -v vol "
            "cutout -v vol -s 0 0 0 -z 8 32 32 -o back write-h5 -i back -f b.h5"
        )
        from chunkflow.io.h5 import read_h5

        assert read_h5("b.h5").voxel_size == (40, 8, 8)
        np.testing.assert_array_equal(
            read_h5("b.h5").array, Chunk.create((8, 32, 32), "uint16").array
        )

    def test_upload_log(self, run_cli, tmp_path):
        run_cli("create-bbox -b 0-4_0-8_0-8 create-chunk save -v vol --upload-log")
        log = json.loads((tmp_path / "vol" / "log" / "0-4_0-8_0-8.json").read_text())
        assert log["bbox"] == "0-4_0-8_0-8"
        assert set(log["timer"]) == {"create-bbox", "create-chunk"}  # save is still running

    def test_create_info_from_chunk(self, run_cli, tmp_path):
        run_cli(
            "create-chunk -s 4 8 8 -t uint32 --voxel-offset 1 2 3 --voxel-size 8 8 8 "
            "create-info -i chunk -v seg -e compressed_segmentation"
        )
        info = json.loads((tmp_path / "seg" / "info").read_text())
        assert info["type"] == "segmentation" and info["scales"][0]["size"] == [8, 8, 4]
        assert info["scales"][0]["voxel_offset"] == [3, 2, 1]

    @pytest.mark.parametrize(
        "args, message",
        [
            ("cutout -v missing -s 0 0 0 -z 1 1 1", "info file is missing"),
            ("cutout -v vol -s 0 0 0 -z 9 1 1", "outside the volume"),
            ("cutout -v vol", "no region to cut out"),
            ("cutout -v vol -m 4 -s 0 0 0 -z 1 1 1", "mip 4 does not exist"),
            ("create-chunk -s 8 16 16 -t float32 save -v vol", "dtype float32 does not fit"),
            ("cutout -v ftp://x/y -s 0 0 0 -z 1 1 1", "unsupported volume path"),
            ("create-info -v v2 -e compressed_segmentation -z 1 1 1", "is for segmentation layers"),
            (
                "create-chunk -t int32 save -v v3 -e compressed_segmentation",
                "only supports uint32 and uint64",
            ),
        ],
    )
    def test_bad_input(self, run_cli, tmp_path, args, message):
        run_cli("create-chunk -s 8 16 16 save -v vol")
        result = run_cli(args, expect=None)
        assert result.code != 0
        assert message in error_line(result)


def test_a_cutout_that_cannot_fit_in_memory_is_refused_before_reading(tmp_path):
    path = f"file://{tmp_path}/vol"
    write_precomputed(Chunk(np.ones((8, 8, 8), np.uint8)), path)
    huge = BoundingBox((0, 0, 0), (10000, 10000, 10000))  # zeros past the edge: 1 TB of them
    with pytest.raises(ChunkflowError) as err:
        read_precomputed(path, huge, fill_missing=True)
    assert str(err.value).startswith(
        f"{path}: cutout 0-10000_0-10000_0-10000 at mip 0 needs 1.8 TiB of memory, more than the "
    )
    assert read_precomputed(path, BoundingBox((0, 0, 0), (8, 8, 8))).array.sum() == 512
