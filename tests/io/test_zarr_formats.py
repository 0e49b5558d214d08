"""zarr 2 and 3, OME-Zarr 0.4 and 0.5, N5 and remote stores: what is written is what other
tools read (tensorstore, ome-zarr-models' validator), and what is read has the geometry the
store states, never a guessed one."""

import json

import numpy as np
import pytest
import zarr

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.zarr import read_zarr, write_zarr
from tests.conftest import error_line
from tests.queues import conftest as queue_fixtures

moto_endpoint = queue_fixtures.moto_endpoint

RNG = np.random.default_rng(7)
IMAGE = RNG.integers(0, 255, (6, 10, 12), dtype=np.uint8)
AFFS = RNG.random((3, 6, 10, 12), dtype=np.float32)


def chunk(array=IMAGE):
    return Chunk(array, (2, 3, 4), (40, 4, 4))


def ome_image(group):
    """The OME-Zarr image model of `group`, validated by ome-zarr-models."""
    if group.metadata.zarr_format == 3:
        from ome_zarr_models.v05 import Image

        return Image.from_zarr(group)
    from ome_zarr_models.v04 import Image
    from pydantic_zarr.v2 import ArraySpec

    Image.model_rebuild(_types_namespace={"ArraySpec": ArraySpec})  # ome-zarr-models 1.6
    return Image.from_zarr(group)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("array", [IMAGE, AFFS], ids=["zyx", "czyx"])
def test_round_trip_with_axis_names_and_units(tmp_path, zarr_format, array):
    store = str(tmp_path / "a.zarr")
    write_zarr(chunk(array), store, "raw", zarr_format=zarr_format)
    stored = zarr.open_array(store, path="raw", mode="r")
    axes = ["c", "z", "y", "x"][4 - array.ndim :]
    assert stored.metadata.zarr_format == zarr_format
    if zarr_format == 3:
        assert list(stored.metadata.dimension_names) == axes
    else:
        assert stored.attrs["_ARRAY_DIMENSIONS"] == axes
    assert stored.attrs["units"] == ["nm"] * 3
    back = read_zarr(store, "raw")
    np.testing.assert_array_equal(back.array, array)
    assert (back.voxel_offset, back.voxel_size) == ((2, 3, 4), (40, 4, 4))
    assert back.layer_type == chunk(array).layer_type


def test_zarr_2_is_what_gunpowder_1_4_reads(tmp_path):
    """zarr 2 on disk: `.zarray` + `.zattrs` with `resolution` and world-unit `offset`."""
    store = tmp_path / "g.zarr"
    write_zarr(chunk(), str(store), "volumes/raw", zarr_format=2)
    meta = json.loads((store / "volumes/raw/.zarray").read_text())
    assert meta["zarr_format"] == 2 and meta["shape"] == list(IMAGE.shape)
    attrs = json.loads((store / "volumes/raw/.zattrs").read_text())
    assert attrs["resolution"] == [40, 4, 4] and attrs["offset"] == [80, 12, 16]
    assert (store / ".zgroup").exists() and not (store / "zarr.json").exists()
    # a second dataset goes into the store's format without being told
    write_zarr(chunk(), str(store), "volumes/labels")
    assert (store / "volumes/labels/.zarray").exists()


@pytest.mark.parametrize("zarr_format, driver", [(2, "zarr"), (3, "zarr3")])
def test_tensorstore_reads_our_output_bit_exact(tmp_path, zarr_format, driver):
    import tensorstore as ts

    store = str(tmp_path / "t.zarr")
    write_zarr(chunk(AFFS), store, "affs", block_size=(4, 4, 4), zarr_format=zarr_format)
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": store}, "path": "affs"}
    array = ts.open(spec, read=True).result()
    assert array.read().result().tobytes() == AFFS.tobytes()


@pytest.mark.parametrize("version, zarr_format", [("0.4", 2), ("0.5", 3)])
@pytest.mark.parametrize("array", [IMAGE, AFFS], ids=["zyx", "czyx"])
def test_ome_zarr_is_valid_and_round_trips(run_cli, tmp_path, version, zarr_format, array):
    np.save(tmp_path / "in.npy", array)
    run_cli(
        "load-npy -f in.npy -v 2 3 4 -x 40 4 4 "
        f"save-zarr -f o.zarr -d image --ome --ome-version {version} -c 4 8 8"
    )
    group = zarr.open_group(str(tmp_path / "o.zarr/image"), mode="r")
    assert group.metadata.zarr_format == zarr_format
    multiscale = ome_image(group).attributes
    multiscale = (multiscale.ome if version == "0.5" else multiscale).multiscales[0]
    assert [a.name for a in multiscale.axes][-3:] == ["z", "y", "x"]
    assert {a.unit for a in multiscale.axes if a.type == "space"} == {"nanometer"}
    scale, translation = multiscale.datasets[0].coordinateTransformations
    assert list(scale.scale)[-3:] == [40, 4, 4]
    assert list(translation.translation)[-3:] == [80, 12, 16]
    for dataset in ("image", "image/0"):  # the image, or its level-0 array
        back = read_zarr(str(tmp_path / "o.zarr"), dataset)
        np.testing.assert_array_equal(back.array, array)
        assert (back.voxel_offset, back.voxel_size) == ((2, 3, 4), (40, 4, 4))


def test_write_into_an_ome_image_puts_the_chunk_at_its_place(tmp_path):
    store = str(tmp_path / "o.zarr")
    write_zarr(Chunk(np.zeros((4, 8, 8), np.uint8), (0, 0, 0), (8, 8, 8)), store, ome=True)
    write_zarr(Chunk(np.full((2, 4, 4), 9, np.uint8), (2, 4, 4), (8, 8, 8)), store)
    whole = read_zarr(store).array
    assert whole[2:, 4:, 4:].min() == 9 and whole.sum() == 9 * 32
    with pytest.raises(ChunkflowError, match="voxel size"):
        write_zarr(Chunk(np.ones((2, 4, 4), np.uint8), (0, 0, 0), (4, 4, 4)), store)


def two_level_image(tmp_path, unit="nanometer", factor=1.0):
    """An OME-Zarr 0.5 image as another tool writes it: two levels, level 1 downsampled 2×."""
    group = zarr.open_group(str(tmp_path / "ms.zarr"), mode="w")
    base = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
    datasets = []
    for level, data in enumerate([base, base[::2, ::2, ::2]]):
        group.create_array(str(level), data=data, dimension_names=["z", "y", "x"])
        size = np.array([40, 8, 8]) * 2**level
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": list(size * factor)},
                    {"type": "translation", "translation": list(size * [1, 2, 3] * factor)},
                ],
            }
        )
    axes = [{"name": a, "type": "space", "unit": unit} for a in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    ome_image(group)  # valid OME-Zarr
    return base


def test_reads_the_geometry_of_the_chosen_level(run_cli, tmp_path):
    base = two_level_image(tmp_path)
    run_cli("load-zarr -f ms.zarr --level 1 -l image save-npy -f level1.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "level1.npy"), base[::2, ::2, ::2])
    level1 = read_zarr(str(tmp_path / "ms.zarr"), level=1)
    assert (level1.voxel_offset, level1.voxel_size) == ((1, 2, 3), (80, 16, 16))
    level0 = read_zarr(str(tmp_path / "ms.zarr"), bbox=BoundingBox((2, 3, 4), (4, 6, 8)))
    assert level0.voxel_size == (40, 8, 8)
    np.testing.assert_array_equal(level0.array, base[1:3, 1:4, 1:5])
    assert "no level 2" in error_line(run_cli("load-zarr -f ms.zarr --level 2", expect=1))


def test_ome_units_become_nanometers(tmp_path):
    two_level_image(tmp_path, unit="micrometer", factor=1e-3)
    back = read_zarr(str(tmp_path / "ms.zarr"))
    assert (back.voxel_offset, back.voxel_size) == ((1, 2, 3), (40, 8, 8))


def test_unknown_geometry_is_refused_unless_given(run_cli, tmp_path):
    zarr.create_array(str(tmp_path / "plain.zarr"), data=IMAGE)
    message = error_line(run_cli("load-zarr -f plain.zarr", expect=1))
    assert "does not say its voxel-size and voxel-offset" in message
    assert "-x/--voxel-size and -v/--voxel-offset" in message
    run_cli("load-zarr -f plain.zarr -x 40 4 4 -v 1 2 3 save-zarr -f placed.zarr")
    back = read_zarr(str(tmp_path / "placed.zarr"))
    assert (back.voxel_offset, back.voxel_size) == ((1, 2, 3), (40, 4, 4))
    np.testing.assert_array_equal(back.array, IMAGE)


def write_n5(tmp_path):
    """v.n5/volumes/raw as Java tools lay it out: dimensions, resolution, offset in (x, y, z)."""
    import tensorstore as ts

    spec = {
        "driver": "n5",
        "kvstore": {"driver": "file", "path": str(tmp_path / "v.n5")},
        "path": "volumes/raw",
        "metadata": {
            "dimensions": list(IMAGE.shape[::-1]),
            "blockSize": [4, 4, 4],
            "dataType": "uint8",
            "compression": {"type": "gzip"},
        },
        "create": True,
    }
    array = ts.open(spec).result()
    array[...] = IMAGE.T
    attrs = tmp_path / "v.n5/volumes/raw/attributes.json"
    meta = json.loads(attrs.read_text())
    attrs.write_text(json.dumps(meta | {"resolution": [4, 4, 40], "offset": [16, 12, 80]}))


def test_n5_written_by_tensorstore(run_cli, tmp_path):
    write_n5(tmp_path)
    run_cli("load-zarr -f v.n5 -d volumes/raw -t 2 4 5 -s 3 4 5 save-zarr -f cut.zarr")
    back = read_zarr(str(tmp_path / "cut.zarr"))
    assert (back.voxel_offset, back.voxel_size) == ((2, 4, 5), (40, 4, 4))
    np.testing.assert_array_equal(back.array, IMAGE[0:3, 1:5, 1:6])
    whole = read_zarr(str(tmp_path / "v.n5"), "volumes")  # the group's only dataset
    np.testing.assert_array_equal(whole.array, IMAGE)
    with pytest.raises(ChunkflowError, match="N5 is read only"):
        write_zarr(chunk(), str(tmp_path / "v.n5"), "volumes/raw")


def test_s3_store(run_cli, monkeypatch, tmp_path, moto_endpoint):
    """An OME-Zarr image and a zarr 2 array in S3 (moto on loopback), read in place."""
    import boto3

    for name, value in queue_fixtures.DUMMY_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="zarr-formats")
    write_zarr(chunk(), str(tmp_path / "o.zarr"), "image", ome=True)
    write_zarr(chunk(AFFS), str(tmp_path / "o.zarr"), "affs")
    write_zarr(chunk(), str(tmp_path / "two.zarr"), "raw", zarr_format=2)
    write_n5(tmp_path)
    for path in tmp_path.rglob("*"):
        if path.is_file() and (".zarr" in str(path) or ".n5" in str(path)):
            s3.upload_file(str(path), "zarr-formats", str(path.relative_to(tmp_path)))
    back = read_zarr("s3://zarr-formats/o.zarr", "image")
    np.testing.assert_array_equal(back.array, IMAGE)
    assert (back.voxel_offset, back.voxel_size) == ((2, 3, 4), (40, 4, 4))
    np.testing.assert_array_equal(read_zarr("s3://zarr-formats/o.zarr", "affs").array, AFFS)
    run_cli("load-zarr -f s3://zarr-formats/two.zarr -d raw -t 3 4 5 -s 2 2 2 save-npy -f cut.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "cut.npy"), IMAGE[1:3, 1:3, 1:3])
    n5 = read_zarr("s3://zarr-formats/v.n5", "volumes/raw")  # N5 too, through tensorstore
    assert (n5.voxel_offset, n5.voxel_size) == ((2, 3, 4), (40, 4, 4))
    np.testing.assert_array_equal(n5.array, IMAGE)
    message = error_line(run_cli("load-zarr -f s3://zarr-formats/v.n5 -d volumes", expect=1))
    assert "an N5 group; name the dataset with --dataset" in message


def test_cli_refuses_an_ome_version_of_the_other_format(run_cli):
    message = error_line(
        run_cli(
            "create-chunk -s 2 2 2 save-zarr -f o.zarr --ome --ome-version 0.4 --zarr-format 3",
            expect=1,
        )
    )
    assert "OME-Zarr 0.4 is zarr format 2" in message


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_downsample_upload_adds_ome_levels(run_cli, tmp_path, version):
    """Two tasks each write their half at level 0 and levels 1-2; the image stays valid."""
    image = np.arange(8 * 16 * 32, dtype=np.float32).reshape(8, 16, 32)
    np.save(tmp_path / "all.npy", image)
    run_cli(
        "load-npy -f all.npy -v 0 0 0 -x 40 4 4 "
        f"save-zarr -f o.zarr -d image --ome --ome-version {version} -c 4 8 8"
    )
    for x0 in (0, 16):
        run_cli(
            f"load-zarr -f o.zarr -d image -t 0 0 {x0} -s 8 16 16 "
            "downsample-upload -v o.zarr/image --factor 2 2 2 --start-mip 1 --stop-mip 3"
        )
    group = zarr.open_group(str(tmp_path / "o.zarr/image"), mode="r")
    multiscale = ome_image(group).attributes
    multiscale = (multiscale.ome if version == "0.5" else multiscale).multiscales[0]
    assert [d.path for d in multiscale.datasets] == ["0", "1", "2"]
    level2 = read_zarr(str(tmp_path / "o.zarr"), "image", level=2)
    assert (level2.voxel_offset, level2.voxel_size) == ((0, 0, 0), (160, 16, 16))
    expected = image.reshape(2, 4, 4, 4, 8, 4).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(level2.array, expected, rtol=1e-6)


def test_http_store(tmp_path, monkeypatch):
    """OME-Zarr 0.5 and zarr 2 served over plain HTTP (a loopback server), read in place."""
    import functools
    import http.server
    import threading

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    write_zarr(chunk(), str(tmp_path / "o.zarr"), "image", ome=True)
    write_zarr(chunk(AFFS), str(tmp_path / "two.zarr"), "affs", zarr_format=2)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        back = read_zarr(f"{url}/o.zarr", "image")
        assert (back.voxel_offset, back.voxel_size) == ((2, 3, 4), (40, 4, 4))
        np.testing.assert_array_equal(back.array, IMAGE)
        np.testing.assert_array_equal(read_zarr(f"{url}/two.zarr", "affs").array, AFFS)
        with pytest.raises(ChunkflowError, match="none.zarr"):
            read_zarr(f"{url}/none.zarr", "image")
    finally:
        server.shutdown()
        server.server_close()
