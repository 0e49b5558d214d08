import os

import h5py
import numpy as np
import pytest

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.h5 import read_h5, write_h5
from tests.conftest import error_line, read_stack


@pytest.mark.parametrize(
    "array, layer_type",
    [
        (np.random.default_rng(0).integers(0, 255, (5, 6, 7), dtype=np.uint8), "image"),
        (np.random.default_rng(1).integers(0, 2**60, (5, 6, 7), dtype=np.uint64), "segmentation"),
        (np.random.default_rng(2).random((3, 5, 6, 7), dtype=np.float32), "affinity_map"),
    ],
)
@pytest.mark.parametrize("compression", ["none", "gzip", "lzf"])
def test_round_trip_is_bit_exact(tmp_path, array, layer_type, compression):
    chunk = Chunk(array, (10, -20, 30), (40, 4, 4), layer_type)
    write_h5(chunk, str(tmp_path / "c.h5"), compression=compression)
    back = read_h5(str(tmp_path / "c.h5"))
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back.array, array)
    assert back.voxel_offset == (10, -20, 30) and back.voxel_size == (40, 4, 4)
    assert back.layer_type is LayerType(layer_type)


def test_reads_the_original_chunkflow_layout(tmp_path):
    path = tmp_path / "orig.h5"
    with h5py.File(path, "w") as f:
        f["main"] = np.ones((2, 3, 4), "uint32")
        f["voxel_offset"] = np.array([1, 2, 3])
        f["voxel_size"] = np.array([40, 4, 4])
        f["unique_nonzeros"] = np.array([1])
        f.attrs["layer_type"] = "segmentation"
    chunk = read_h5(str(path))
    assert chunk.voxel_offset == (1, 2, 3) and chunk.is_segmentation


def test_reads_cremi_style_attributes(tmp_path):
    path = tmp_path / "sample_A.hdf"
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("volumes/raw", data=np.zeros((2, 3, 4), "uint8"))
        raw.attrs["resolution"] = (40.0, 4.0, 4.0)
        labels = f.create_dataset("volumes/labels/neuron_ids", data=np.ones((2, 3, 4), "uint64"))
        labels.attrs["resolution"] = (40.0, 4.0, 4.0)
        labels.attrs["offset"] = (80.0, 8.0, 0.0)
    raw = read_h5(str(path), "/volumes/raw")
    assert raw.voxel_size == (40, 4, 4) and raw.voxel_offset == (0, 0, 0)
    labels = read_h5(str(path), "/volumes/labels/neuron_ids")
    assert labels.voxel_offset == (2, 2, 0) and labels.is_segmentation


def test_real_gala_volume_cutout(gala):
    image = read_stack(gala / "test-image.h5")
    chunk = read_h5(str(gala / "test-image.h5"), bbox=BoundingBox((5, 10, 20), (15, 60, 120)))
    np.testing.assert_array_equal(chunk.array, image[5:15, 10:60, 20:120])
    assert chunk.voxel_offset == (5, 10, 20)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out.h5"
    target.write_bytes(b"previous")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError):
        write_h5(Chunk(np.zeros((2, 2, 2), "uint8")), str(target))
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["out.h5"]


def test_errors_name_the_file_and_expectation(tmp_path):
    with pytest.raises(ChunkflowError, match="no such file"):
        read_h5(str(tmp_path / "missing.h5"))
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ChunkflowError, match="not an HDF5 file"):
        read_h5(str(tmp_path / "text.h5"))
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros((2, 2, 2))
        f["b"] = np.zeros((2, 2, 2))
    with pytest.raises(ChunkflowError, match="which dataset.*/a, /b"):
        read_h5(str(tmp_path / "two.h5"))
    with pytest.raises(ChunkflowError, match="no dataset '/c'"):
        read_h5(str(tmp_path / "two.h5"), "/c")
    with pytest.raises(ChunkflowError, match="outside the data"):
        read_h5(str(tmp_path / "two.h5"), "a", bbox=BoundingBox((0, 0, 0), (3, 2, 2)))


class TestCli:
    def test_tutorial_read_write_chain_on_real_data(self, run_cli, gala, tmp_path):
        run_cli(
            f"read-h5 --file-name {gala}/test-image.h5 --dataset-path /stack -o image "
            "--voxel-size 10 10 10 write-h5 -i image --file-name image.h5 "
            f"read-h5 -f {gala}/test-gt.lzf.h5 -o gt write-h5 -i gt -f gt.h5 -c gzip"
        )
        np.testing.assert_array_equal(
            read_h5(str(tmp_path / "image.h5")).array, read_stack(gala / "test-image.h5")
        )
        gt = read_h5(str(tmp_path / "gt.h5"))
        np.testing.assert_array_equal(gt.array, read_stack(gala / "test-gt.lzf.h5"))
        assert gt.is_segmentation and gt.dtype == np.int32

    def test_cutout_options_and_task_bbox(self, run_cli, gala, tmp_path):
        image = read_stack(gala / "test-image.h5")
        run_cli(
            f"read-h5 -f {gala}/test-image.h5 --cutout-start 1 2 3 --cutout-size 4 5 6 "
            "write-h5 -f a.h5"
        )
        np.testing.assert_array_equal(read_h5("a.h5").array, image[1:5, 2:7, 3:9])
        run_cli(
            f"create-bbox -b 10-12_0-8_100-108 read-h5 -f {gala}/test-image.h5 write-h5 -f b.h5"
        )
        assert read_h5("b.h5").voxel_offset == (10, 0, 100)
        np.testing.assert_array_equal(read_h5("b.h5").array, image[10:12, 0:8, 100:108])

    def test_one_file_per_task_in_a_folder(self, run_cli, tmp_path):
        (tmp_path / "out").mkdir()
        run_cli(
            "generate-tasks -s 0 0 0 -z 2 4 4 -c 2 2 4 create-chunk --pattern random "
            "write-h5 -f out/ write-h5 -f pre_"
        )
        assert sorted(os.listdir(tmp_path / "out")) == ["0-2_0-2_0-4.h5", "0-2_2-4_0-4.h5"]
        assert (tmp_path / "pre_0-2_2-4_0-4.h5").exists()
        run_cli("create-bbox -b 0-2_2-4_0-4 read-h5 -f out/ -o x write-h5 -i x -f copy.h5")
        np.testing.assert_array_equal(read_h5("copy.h5").array, read_h5("out/0-2_2-4_0-4.h5").array)

    @pytest.mark.parametrize(
        "args, message",
        [
            ("read-h5 -f missing.h5", "missing.h5: no such file"),
            ("read-h5 -f {gala}/test-image.h5 -d /main", "no dataset '/main'"),
            ("read-h5 -f {gala}/vi-results.npy", "is not an HDF5 file"),
            ("read-h5 -f {gala}/test-image.h5 -t 0 0 0 -s 60 1 1", "outside the data"),
            ("read-h5 -f {gala}/test-image.h5 -t 0 0 0", "exactly one of"),
            ("read-h5 -f {gala}/test-image.h5 write-h5 -f nowhere/x.h5", "output folder"),
            (
                "read-h5 -f {gala}/test-image.h5 -o image write-h5 -i img -f x.h5",
                "no chunk named 'img'",
            ),
        ],
    )
    def test_bad_input(self, run_cli, gala, tmp_path, args, message):
        result = run_cli(args.format(gala=gala), expect=1)
        assert message in error_line(result)
        assert not any(p.suffix == ".h5" for p in tmp_path.iterdir())

    def test_bad_dtype_is_a_usage_error(self, run_cli, gala):
        line = error_line(run_cli(f"read-h5 -f {gala}/test-image.h5 -e int99", expect=2))
        assert (
            "read-h5" in line and "--dtype" in line and "'int99' is not a numpy data type" in line
        )


# several datasets in one file (gunpowder's raw, labels and predictions) --------------------------


def test_writing_a_dataset_keeps_the_others(tmp_path):
    path = str(tmp_path / "sample.h5")
    raw = Chunk(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), (10, 20, 30), (40, 4, 4))
    labels = Chunk(np.full((2, 3, 4), 7, np.uint64), (10, 20, 30), (40, 4, 4))
    pred = Chunk(np.ones((3, 1, 2, 2), np.float32), (11, 21, 31), (40, 8, 8))
    write_h5(raw, path, "volumes/raw", compression="gzip")
    with h5py.File(path, "a") as f:  # something written by another tool
        f["volumes"].attrs["note"] = "from elsewhere"
        f.create_dataset("volumes/labels/mask", data=np.ones((2, 3, 4), np.uint8))
        f["volumes/labels/mask"].attrs["resolution"] = (40, 4, 4)
    write_h5(labels, path, "volumes/labels/neuron_ids")
    write_h5(pred, path, "volumes/pred", block_size=(1, 2, 2))
    back = {name: read_h5(path, name) for name in ("volumes/raw", "volumes/pred")}
    np.testing.assert_array_equal(back["volumes/raw"].array, raw.array)
    assert back["volumes/raw"].voxel_offset == (10, 20, 30)
    assert back["volumes/raw"].voxel_size == (40, 4, 4) and back["volumes/raw"].is_image
    assert back["volumes/pred"].voxel_offset == (11, 21, 31)
    assert back["volumes/pred"].voxel_size == (40, 8, 8) and back["volumes/pred"].is_affinity_map
    assert read_h5(path, "volumes/labels/neuron_ids").is_segmentation
    np.testing.assert_array_equal(read_h5(path, "volumes/labels/mask").array, 1)
    with h5py.File(path, "r") as f:
        assert f["volumes"].attrs["note"] == "from elsewhere"
        assert f["volumes/raw"].compression == "gzip"  # copied as stored
        # gunpowder's attributes, in world units
        assert tuple(f["volumes/pred"].attrs["offset"]) == (440, 168, 248)
        assert tuple(f["volumes/pred"].attrs["resolution"]) == (40, 8, 8)
    # replacing a dataset replaces it and keeps the others
    write_h5(Chunk(np.zeros((2, 3, 4), np.uint8), (10, 20, 30), (40, 4, 4)), path, "volumes/raw")
    assert not read_h5(path, "volumes/raw").array.any()
    assert read_h5(path, "volumes/pred").voxel_size == (40, 8, 8)
    assert sorted(os.listdir(tmp_path)) == ["sample.h5"]


def test_main_keeps_the_original_layout_beside_other_datasets(tmp_path):
    path = str(tmp_path / "c.h5")
    write_h5(Chunk(np.ones((2, 2, 2), np.uint8), (1, 2, 3), (40, 4, 4)), path)
    write_h5(Chunk(np.ones((2, 2, 2), np.uint32), (5, 6, 7), (8, 8, 8)), path, "seg")
    with h5py.File(path, "r") as f:  # what the original chunkflow reads
        assert tuple(f["voxel_offset"][()]) == (1, 2, 3)
        assert tuple(f["voxel_size"][()]) == (40, 4, 4)
    assert read_h5(path).voxel_offset == (1, 2, 3)  # /main is still the default
    assert read_h5(path, "seg").voxel_offset == (5, 6, 7)
    write_h5(Chunk(np.ones((2, 2, 2), np.uint8), (9, 9, 9), (40, 4, 4)), path)
    with h5py.File(path, "r") as f:
        assert tuple(f["voxel_offset"][()]) == (9, 9, 9)
    assert read_h5(path, "seg").voxel_offset == (5, 6, 7)


def test_a_failed_write_into_an_existing_file_leaves_it_as_it_was(tmp_path, monkeypatch):
    path = str(tmp_path / "sample.h5")
    write_h5(Chunk(np.ones((2, 2, 2), np.uint8)), path, "volumes/raw")
    before = open(path, "rb").read()
    original = h5py.Group.create_dataset

    def broken(self, name, *args, **kwargs):
        if name.endswith("pred"):
            raise OSError("disk full")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError):
        write_h5(Chunk(np.ones((2, 2, 2), np.float32)), path, "volumes/pred")
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["sample.h5"]


def test_dataset_names_that_cannot_be_written(tmp_path):
    path = str(tmp_path / "s.h5")
    write_h5(Chunk(np.ones((2, 2, 2), np.uint8)), path, "volumes/raw")
    before = open(path, "rb").read()
    with pytest.raises(ChunkflowError, match="/volumes is a group; expected a dataset name"):
        write_h5(Chunk(np.ones((2, 2, 2), np.uint8)), path, "volumes")
    with pytest.raises(ChunkflowError, match="/volumes/raw is a dataset, so /volumes/raw/x cannot"):
        write_h5(Chunk(np.ones((2, 2, 2), np.uint8)), path, "volumes/raw/x")
    with pytest.raises(ChunkflowError, match="'voxel_size' cannot name a dataset"):
        write_h5(Chunk(np.ones((2, 2, 2), np.uint8)), path, "voxel_size")
    assert open(path, "rb").read() == before


def test_cli_writes_raw_labels_and_predictions_into_one_file(run_cli, gala, tmp_path):
    run_cli(
        f"read-h5 -f {gala}/test-image.h5 -o raw -x 10 10 10 -t 0 0 0 -s 4 8 8 "
        f"read-h5 -f {gala}/test-gt.lzf.h5 -o gt -x 10 10 10 -t 0 0 0 -s 4 8 8 "
        "write-h5 -i raw -f sample.h5 -d volumes/raw write-h5 -i gt -f sample.h5 -d volumes/labels"
    )
    run_cli(
        "create-chunk -s 4 8 8 -t float32 --voxel-size 10 10 10 "
        "write-h5 -f sample.h5 -d volumes/pred"
    )
    with h5py.File(tmp_path / "sample.h5", "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert {"volumes/raw", "volumes/labels", "volumes/pred"} <= set(names)
    np.testing.assert_array_equal(
        read_h5(str(tmp_path / "sample.h5"), "volumes/raw").array,
        read_stack(gala / "test-image.h5")[:4, :8, :8],
    )
