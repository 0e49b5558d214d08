"""The tutorial's queue lines as typed: tasks queued by `generate-tasks -q`, done by
`fetch-task ... delete-task-in-queue` workers, on a local queue folder and on SQS by a bare
queue name (`-q my-queue`, as the tutorial types it) served by moto on loopback, with
`cloud-watch` sending to the same moto server. Only paths and sizes are adapted; the
AWS_ENDPOINT_URL_* variables are how boto3 is pointed at an SQS/CloudWatch-compatible server.

Each line's output is compared with the same line fed by `generate-tasks` in one process
(tests/cli/test_tutorial.py checks those against the computation).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from chunkflow.geometry import BoundingBox
from chunkflow.io.precomputed import read_precomputed
from tests.cli import test_tutorial as tutorial
from tests.inference import models
from tests.queues import conftest as queue_fixtures

aws_env = queue_fixtures.aws_env
moto_endpoint = queue_fixtures.moto_endpoint
production = tutorial.production
image_volume = tutorial.image_volume
segmentation = tutorial.segmentation


@pytest.fixture
def queue(request, tmp_path, monkeypatch):
    """`queue(kind)`: the -q value of a fresh queue; SQS by a bare name on moto."""

    def make(kind: str) -> str:
        if kind == "local":
            return f"file://{tmp_path}/queue"
        endpoint = request.getfixturevalue("moto_endpoint")
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint)
        return f"my-queue-{tmp_path.name[-20:].strip('_')}"

    return make


def drained(run_cli, name: str) -> None:
    result = run_cli(f"queue-status -q {name} --check")
    assert "0 pending, 0 leased, 0 dead" in result.out


def test_production_line_from_a_local_queue(run_cli, production, queue, tmp_path):
    v = production
    name = queue("local")
    run_cli(f"--mip 1 generate-tasks -v {v['OUTPUT_LAYER_PATH']} -c 6 32 32 -q {name}")
    # -r 20 (empty polls before stopping) adapted like a size, to end the test quickly
    line = tutorial.production_line(v).replace(
        f"--verbose --mip 1 generate-tasks -v {v['OUTPUT_LAYER_PATH']} -c 6 32 32",
        f'--verbose --mip 1 fetch-task -r 0 --queue-name="{name}" --visibility-timeout=1800',
    )
    assert "fetch-task" in line
    result = run_cli(line)
    assert "27 tasks done, 0 failed and released for retry, 0 dead-lettered" in result.err
    drained(run_cli, name)
    from_queue = read_precomputed(v["OUTPUT_LAYER_PATH"], BoundingBox((0, 0, 0), (18, 96, 96)), 1)
    for folder in (tmp_path / "output").iterdir():  # the data, not the info
        if folder.is_dir() and folder.name not in ("log", "thumbnail"):
            shutil.rmtree(folder)
    run_cli(tutorial.production_line(v))
    again = read_precomputed(v["OUTPUT_LAYER_PATH"], BoundingBox((0, 0, 0), (18, 96, 96)), 1)
    np.testing.assert_array_equal(from_queue.array, again.array)
    assert not np.all(from_queue.array == 0)


def test_inference_line_from_sqs_with_cloud_watch(run_cli, image_volume, queue, tmp_path):
    import boto3

    models.write(tmp_path, "net.py", models.WHOLE_PATCH, CHANNELS=3)
    torch.save({"gain": torch.tensor([1.0, 0.5, 0.25])}, tmp_path / "weight.pt")
    name = queue("sqs")
    run_cli(f"--mip 2 generate-tasks -v file://{tmp_path}/affs -c 8 64 64 -q {name}")
    line = tutorial.inference_line(tmp_path).replace(
        f"--verbose --mip 2 generate-tasks -v file://{tmp_path}/affs -c 8 64 64",
        f"--verbose --mip 2 fetch-task --queue-name={name} --visibility-timeout=3600",
    )
    line = line.replace("delete-task-in-queue", "cloud-watch delete-task-in-queue")
    result = run_cli(line)
    assert "4 tasks done, 0 failed" in result.err
    drained(run_cli, name)
    affs = read_precomputed(f"file://{tmp_path}/affs", BoundingBox((0, 0, 0), (16, 64, 128)), 2)
    expected = np.array([1.0, 0.5, 0.25])[:, None, None, None] * (image_volume / 255.0)
    np.testing.assert_allclose(affs.array, expected, atol=1e-5)
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    metrics = cloudwatch.list_metrics(Namespace="chunkflow")["Metrics"]
    assert {"inference", "save", "cutout"} <= {m["MetricName"] for m in metrics}


@pytest.mark.parametrize("kind", ["local", "sqs"])
def test_meshing_line_from_a_queue(kind, run_cli, segmentation, queue):
    from cloudvolume import CloudVolume

    path, labels = segmentation
    name = queue(kind)
    run_cli(
        f"--mip 3 generate-tasks -v {path} -c 26 51 101 --stride 25 50 100 --respect-stop -q {name}"
    )
    result = run_cli(
        f"--mip 3 fetch-task -q {name} -v 600 cutout -v {path} --fill-missing mesh "
        f"--voxel-size 45 5 5 -o {path} --dust-threshold 100 delete-task-in-queue"
    )
    assert ": 8 tasks done, 0 failed and released for retry, 0 dead-lettered" in result.err
    drained(run_cli, name)
    run_cli(f"mesh-manifest --volume-path {path} --prefix 7")
    sevens = [i for i in np.unique(labels) if str(i).startswith("7") and (labels == i).sum() > 100]
    vol = CloudVolume(path)
    for label in sevens:
        mesh = vol.mesh.get(int(label))
        mesh = mesh[int(label)] if isinstance(mesh, dict) else mesh
        assert len(mesh.faces) > 0, label


def test_downsample_line_from_sqs(run_cli, queue, tmp_path):
    from chunkflow.chunk import Chunk
    from chunkflow.io.precomputed import create_info, write_precomputed

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, size=(16, 512, 512), dtype=np.uint8)
    path = f"file://{tmp_path}/image"
    create_info(
        path, (16, 512, 512), (40, 4, 4), (0, 0, 0), "uint8", 1, "image", (16, 16, 16), "raw", 5
    )
    write_precomputed(Chunk(image, (0, 0, 0), (40, 4, 4)), path, 0)
    name = queue("sqs")
    run_cli(f"generate-tasks -l {path} -m 0 -o 0 0 0 -c 16 256 256 -q {name}")
    result = run_cli(
        f"--mip 0 fetch-task -q {name} cutout -v {path} -m 0 --fill-missing "
        f"downsample-upload -v {path} --start-mip 1 --stop-mip 5 delete-task-in-queue"
    )
    assert "4 tasks done, 0 failed" in result.err
    drained(run_cli, name)
    mip2 = read_precomputed(path, BoundingBox((0, 0, 0), (16, 128, 128)), 2).array
    expected = image.astype(np.float64).reshape(16, 128, 4, 128, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(mip2, expected, atol=1)
    mip4 = read_precomputed(path, BoundingBox((0, 0, 0), (16, 32, 32)), 4)
    assert mip4.voxel_size == (40, 64, 64) and mip4.array.any()


def test_bare_queue_name_without_credentials_says_how_to_go_local(run_cli, monkeypatch):
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    result = run_cli("fetch-task -q my-queue", expect=1)
    assert result.err.strip() == (
        "chunkflow: error: fetch-task: sqs://my-queue: no AWS credentials found (set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure ~/.aws/credentials); for a "
        "local queue folder use -q file://PATH or a path with a /"
    )
