"""s3:// on an S3-compatible server (moto on loopback): `--s3-endpoint`, block compression that
tensorstore and cloud-volume read bit-exact, cloudfiles aliases in volume paths.

Nothing here talks to real AWS (see tests/queues/moto.py)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from tests.conftest import error_line
from tests.queues import conftest as queue_fixtures

aws_env = queue_fixtures.aws_env  # autouse: dummy credentials, no other AWS setting
moto_endpoint = queue_fixtures.moto_endpoint

VOXELS = "--voxel-size 40 8 8"


@pytest.fixture
def s3(monkeypatch, moto_endpoint):
    """A fresh bucket on the moto server; the endpoint variables are restored afterwards
    (`--s3-endpoint` sets them in this process)."""
    import boto3

    for name in (
        "AWS_ENDPOINT_URL_S3",
        "AWS_REQUEST_CHECKSUM_CALCULATION",
        "AWS_RESPONSE_CHECKSUM_VALIDATION",
    ):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")  # cloudfiles reads it with the keys
    bucket = f"lab-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=bucket)
    return moto_endpoint, bucket, client


def encodings(client, bucket: str, prefix: str) -> dict[str, str | None]:
    """Content encoding of every object under `prefix`."""
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    return {k: client.head_object(Bucket=bucket, Key=k).get("ContentEncoding") for k in keys}


def tensorstore_read(endpoint: str, bucket: str, path: str, mip: int = 0) -> np.ndarray:
    """(z, y, x) voxels of a one-channel precomputed volume, read by tensorstore."""
    import tensorstore as ts

    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "s3", "bucket": bucket, "path": f"{path}/", "endpoint": endpoint},
        "scale_index": mip,
    }
    return np.asarray(ts.open(spec).result().read().result())[..., 0].T


def cloudvolume_read(path: str, mip: int = 0) -> np.ndarray:
    from cloudvolume import CloudVolume

    vol = CloudVolume(path, mip=mip, progress=False, cache=False)
    return np.asarray(vol[:, :, :])[..., 0].T


def local_read(path, mip: int = 0) -> np.ndarray:
    return cloudvolume_read(f"file://{path}", mip)


def test_s3_endpoint_option_and_gzip_by_default(run_cli, s3, tmp_path):
    """With only --s3-endpoint, save and downsample-upload write to the server, gzipped by
    default (br or none on request), and tensorstore and cloud-volume read every block back
    bit-exact; the task log goes there too."""
    endpoint, bucket, client = s3
    local = tmp_path / "local"
    run_cli(
        f"--s3-endpoint {endpoint} create-chunk --pattern random --dtype uint64 --seed 3 "
        f"-s 32 64 64 {VOXELS} --layer-type segmentation "
        f"save -v s3://{bucket}/seg -b 16 32 32 --upload-log "
        f"downsample-upload -v s3://{bucket}/seg --factor 1 2 2 --stop-mip 2 --compress br "
        f"save -v file://{local} -b 16 32 32 "
        f"downsample-upload -v file://{local} --factor 1 2 2 --stop-mip 2 "
        f"save -v s3://{bucket}/plain -b 16 32 32 --compress none"
    )
    blocks = encodings(client, bucket, "seg/8_8_40/")
    assert len(blocks) == 8 and set(blocks.values()) == {"gzip"}
    assert set(encodings(client, bucket, "seg/16_16_40/").values()) == {"br"}
    assert set(encodings(client, bucket, "plain/8_8_40/").values()) == {None}
    assert "seg/log/0-32_0-64_0-64.json" in encodings(client, bucket, "seg/log/")
    assert not list(local.rglob("*.gz")), "local blocks stay uncompressed"

    expected = local_read(local)
    assert expected.dtype == np.uint64 and expected.max() > 2**30
    for path in ("seg", "plain"):
        np.testing.assert_array_equal(tensorstore_read(endpoint, bucket, path), expected)
        np.testing.assert_array_equal(cloudvolume_read(f"s3://{bucket}/{path}"), expected)
    for read in (
        cloudvolume_read(f"s3://{bucket}/seg", 1),
        tensorstore_read(endpoint, bucket, "seg", 1),
    ):
        np.testing.assert_array_equal(read, local_read(local, mip=1))


def test_environment_variable_points_s3_at_the_server(run_cli, s3, monkeypatch, tmp_path):
    """AWS_ENDPOINT_URL (every AWS service) does what --s3-endpoint does, for cutout as for
    save, and points SQS queues at the same server."""
    endpoint, bucket, client = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    run_cli(
        f"create-chunk --pattern random --dtype uint16 --seed 1 -s 16 32 32 {VOXELS} "
        f"save -v s3://{bucket}/img -b 16 32 32 "
        f"cutout -v s3://{bucket}/img --start 0 0 0 --size 16 32 32 -o back "
        f"save -i back -v file://{tmp_path / 'back'}"
    )
    assert set(encodings(client, bucket, "img/8_8_40/").values()) == {"gzip"}
    np.testing.assert_array_equal(
        local_read(tmp_path / "back"), tensorstore_read(endpoint, bucket, "img")
    )
    # the same variable takes SQS queues to the server: tasks of the volume queued there
    queue = f"sqs://tasks-{bucket}"
    run_cli(f"generate-tasks -v s3://{bucket}/img --chunk-size 8 16 16 -q {queue}")
    assert "8 pending, 0 leased, 0 dead" in run_cli(f"queue-status -q {queue}").out


def test_sharded_writes_go_to_the_endpoint(run_cli, s3, tmp_path):
    """tensorstore, which writes sharded scales, does not read the endpoint variables: chunkflow
    gives it the endpoint."""
    endpoint, bucket, _ = s3
    run_cli(
        f"--s3-endpoint {endpoint} create-info -v s3://{bucket}/sh -z 32 64 64 -b 16 32 32 "
        "-d uint64 -t segmentation -s 40 8 8 --sharded --shard-bytes 65536"
    )
    run_cli(
        f"--s3-endpoint {endpoint} create-chunk --pattern random --dtype uint64 --seed 5 "
        f"-s 32 64 64 {VOXELS} --layer-type segmentation save -v s3://{bucket}/sh "
        f"save -v file://{tmp_path / 'ref'}"
    )
    np.testing.assert_array_equal(
        tensorstore_read(endpoint, bucket, "sh"), local_read(tmp_path / "ref")
    )


def test_cloudfiles_aliases_are_volume_paths(run_cli, s3, monkeypatch, tmp_path):
    """cloudfiles' built-in aliases (matrix://) and registered ones name S3-compatible
    servers: the path check takes them, and a volume written there reads back."""
    from cloudfiles import paths

    from chunkflow.cli.framework import VOLUME_PATH

    endpoint, bucket, client = s3
    assert VOLUME_PATH.convert("matrix://bucket/vol", None, None) == "matrix://bucket/vol"
    paths.add_alias("cflab", f"s3://{endpoint}/")
    try:
        run_cli(
            f"create-chunk --pattern random --dtype uint8 --seed 2 -s 16 32 32 {VOXELS} "
            f"save -v cflab://{bucket}/img -b 16 32 32 save -v file://{tmp_path / 'ref'}"
        )
    finally:
        paths.remove_alias("cflab")
    assert set(encodings(client, bucket, "img/8_8_40/").values()) == {"gzip"}
    np.testing.assert_array_equal(
        tensorstore_read(endpoint, bucket, "img"), local_read(tmp_path / "ref")
    )


def test_unknown_schemes_and_bad_endpoints_are_refused(run_cli):
    result = run_cli("cutout -v nosuch://bucket/vol --start 0 0 0 --size 1 1 1", expect=2)
    assert "unsupported volume path 'nosuch://bucket/vol'" in error_line(result)
    assert "cloudfiles alias" in result.err
    result = run_cli("--s3-endpoint localhost:9000 create-chunk", expect=2)
    assert "expected http(s)://HOST[:PORT]" in result.err


def test_zarr_stores_read_from_the_endpoint(run_cli, s3, tmp_path):
    """load-zarr reads an s3:// store from the server --s3-endpoint names, as save writes."""
    from chunkflow.chunk import Chunk
    from chunkflow.io.zarr import write_zarr

    endpoint, bucket, client = s3
    data = np.random.default_rng(4).integers(0, 2**16, (8, 16, 16), dtype=np.uint16)
    local = tmp_path / "a.zarr"
    write_zarr(Chunk(data, (2, 4, 6), (40, 8, 8)), str(local), block_size=(4, 8, 8))
    for file in local.rglob("*"):
        if file.is_file():
            key = f"a.zarr/{file.relative_to(local).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=file.read_bytes())
    run_cli(
        f"--s3-endpoint {endpoint} load-zarr -f s3://{bucket}/a.zarr "
        f"save -v s3://{bucket}/from-zarr -b 8 16 16"
    )
    vol = tensorstore_read(endpoint, bucket, "from-zarr")
    np.testing.assert_array_equal(vol, data)
    assert json.loads(client.get_object(Bucket=bucket, Key="from-zarr/info")["Body"].read())[
        "scales"
    ][0]["voxel_offset"] == [6, 4, 2]
