"""Whole-volume segmentation from the command line: the example script with queue workers, one
of them killed, against the whole volume in one piece; bad input; meshes and skeletons of a
stitched volume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox
from chunkflow.io.precomputed import read_precomputed, write_precomputed
from chunkflow.segmentation.agglomerate import agglomerate
from chunkflow.training.targets import add_affinities
from tests.conftest import REPO, error_line, read_stack
from tests.queues import conftest as queue_fixtures
from tests.segmentation.test_blockwise import assert_compact_ids, run_job, same_partition

aws_env = queue_fixtures.aws_env  # autouse: dummy credentials, no other AWS setting
moto_endpoint = queue_fixtures.moto_endpoint

SCRIPT = REPO / "examples" / "segment_volume.sh"


def script_env(**extra):
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return dict(os.environ, PATH=path, CHUNKFLOW_PROGRESS="0", **extra)


def fragments(process) -> bool:
    """Whether a process is a segment-fragments worker (one that just ended is not)."""
    try:
        return "segment-fragments" in " ".join(process.cmdline())
    except psutil.Error:  # gone, or a zombie not yet reaped
        return False


def test_queue_workers_one_killed_give_the_whole_volume_result(tmp_path, pinky40_labels):
    """Ideal affinities of a real 128^3 segmentation, 64 chunks, 3 workers; one worker is
    SIGKILLed during the first phase. The result is the whole-volume agglomeration exactly."""
    labels = np.ascontiguousarray(pinky40_labels[256:384, 256:384, 256:384])
    affs, _ = add_affinities(Chunk(labels))
    source = f"file://{tmp_path}/affs"
    write_precomputed(Chunk(np.asarray(affs), (0, 0, 0), (40, 8, 8)), source, block_size=(32,) * 3)
    output = f"file://{tmp_path}/seg"
    script = subprocess.Popen(
        ["bash", str(SCRIPT), "agglomerate", source, output, "32", "32", "32", "3"],
        env=script_env(VISIBILITY_TIMEOUT="3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    faces = tmp_path / "seg" / "blockwise" / "faces"
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and script.poll() is None and time.monotonic() < deadline:
        done = len(os.listdir(faces)) if faces.is_dir() else 0
        workers = [p for p in psutil.Process(script.pid).children(recursive=True) if fragments(p)]
        if done >= 4 and workers:
            workers[0].send_signal(signal.SIGKILL)
            killed = done
        time.sleep(0.02)
    out, _ = script.communicate(timeout=600)
    assert killed is not None and killed < 64, out
    assert script.returncode == 0, out
    assert "relabel    64/64" in out

    seg = np.asarray(read_precomputed(output, BoundingBox((0, 0, 0), (128, 128, 128))))
    whole = np.asarray(agglomerate(affs, 0.7))
    assert seg.dtype == np.uint64 and same_partition(seg, whole) and len(np.unique(seg)) > 200
    assert_compact_ids(seg)
    for axis in range(3):  # no object is cut at a chunk face
        for face in range(32, 128, 32):
            below, above = np.take(seg, face - 1, axis), np.take(seg, face, axis)
            joined = np.take(whole, face - 1, axis) == np.take(whole, face, axis)
            joined &= np.take(whole, face, axis) != 0
            assert joined.sum() > 1000 and (below[joined] == above[joined]).all()


def test_cc_through_the_script(tmp_path, pinky40_labels):
    labels = np.ascontiguousarray(pinky40_labels[:64, 128:192, 192:256])
    source = f"file://{tmp_path}/labels"
    write_precomputed(Chunk(labels, (0, 0, 0), (40, 8, 8)), source, block_size=(32,) * 3)
    output = f"file://{tmp_path}/seg"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "cc", source, output, "32", "32", "32", "2"],
        env=script_env(SEGMENT_OPTIONS="--connectivity 26"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    import cc3d

    seg = np.asarray(read_precomputed(output, BoundingBox((0, 0, 0), (64, 64, 64))))
    assert same_partition(seg, cc3d.connected_components(labels, connectivity=26))
    # a second run into the same output is refused and writes nothing
    again = subprocess.run(
        ["bash", str(SCRIPT), "cc", source, output, "32", "32", "32", "2"],
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode != 0 and "already holds a volume" in again.stderr
    np.testing.assert_array_equal(
        np.asarray(read_precomputed(output, BoundingBox((0, 0, 0), (64, 64, 64)))), seg
    )


def test_a_job_on_s3_with_sqs_queues(run_cli, monkeypatch, moto_endpoint, pinky40_labels):
    """Input, output and the job's work data in S3, tasks in SQS queues (moto on loopback):
    the workers need nothing else."""
    import boto3
    import cc3d

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")  # cloudfiles reads it with the keys
    boto3.client("s3").create_bucket(Bucket="lab")
    labels = np.ascontiguousarray(pinky40_labels[:32, 256:320, 256:320])
    write_precomputed(
        Chunk(labels, (0, 0, 0), (40, 8, 8), "segmentation"),
        "s3://lab/labels",
        block_size=(16,) * 3,
    )
    chunk = "-c 16 32 32"
    run_cli(f"segment-setup --mode cc -i s3://lab/labels -o s3://lab/seg {chunk} --connectivity 26")
    for phase in ("fragments", "edges", "relabel"):
        if phase == "relabel":
            run_cli("segment-merge -o s3://lab/seg")
        run_cli(f"generate-tasks -v s3://lab/seg {chunk} -q sqs://seg-{phase}")
        run_cli(
            f"fetch-task -q sqs://seg-{phase} --wait-seconds 1 --retry-times 1 "
            f"segment-{phase} -o s3://lab/seg delete-task-in-queue"
        )
    assert "relabel    8/8" in run_cli("segment-status -o s3://lab/seg").out
    seg = np.asarray(read_precomputed("s3://lab/seg", BoundingBox((0, 0, 0), (32, 64, 64))))
    whole = cc3d.connected_components(labels, connectivity=26)
    assert same_partition(seg, whole) and int(whole.max()) > 20
    names = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="lab")["Contents"]}
    assert "seg/blockwise/plan.json" in names and "seg/blockwise/merge/ids" in names


@pytest.fixture
def gala_job(run_cli, gala, tmp_path):
    """Ideal affinities of the gala test ground truth as a volume, and a job over 8 chunks."""
    gt = read_stack(gala / "test-gt.lzf.h5").astype(np.uint32)
    affs, _ = add_affinities(Chunk(gt))
    write_precomputed(
        Chunk(np.asarray(affs), (0, 0, 0), (10, 10, 10)),
        f"file://{tmp_path}/affs",
        block_size=(25, 50, 50),
    )
    run_cli("segment-setup --mode agglomerate -i affs -o seg -c 25 50 100")
    return gt


def test_phases_and_status_from_the_command_line(run_cli, gala_job):
    tasks = "generate-tasks -v seg -c 25 50 100"
    result = run_cli("segment-status -o seg", expect=1)
    assert "fragments  0/8" in result.out and "merge      not run" in result.out
    assert "fragments, edges, merge, relabel unfinished" in error_line(result)
    run_cli(f"{tasks} --task-index-stop 7 segment-fragments -o seg")
    line = error_line(run_cli(f"{tasks} segment-edges -o seg", expect=1))
    assert "segment-edges (task 25-50_50-100_100-200)" in line  # tasks 0-6 had all they need
    assert "segment-fragments has not finished for 1 task(s): 25-50_50-100_100-200" in line
    run_cli(f"{tasks} --task-index-start 7 segment-fragments -o seg")
    assert "fragments  8/8" in run_cli("segment-status -o seg --phase fragments").out
    line = error_line(run_cli("segment-merge -o seg", expect=1))
    assert "segment-edges has not finished for 1 task(s): 25-50_50-100_100-200" in line
    run_cli(f"{tasks} segment-edges -o seg")
    line = error_line(run_cli(f"{tasks} segment-relabel -o seg", expect=1))
    assert "run segment-merge first" in line
    run_cli("--dry-run segment-merge -o seg")
    assert "merge      not run" in run_cli("segment-status -o seg", expect=1).out
    run_cli("segment-merge -o seg")
    run_cli(f"{tasks} segment-relabel -o seg")
    result = run_cli("segment-status -o seg")
    assert "relabel    8/8" in result.out and "objects" in result.out
    seg = np.asarray(
        read_precomputed(f"file://{Path.cwd()}/seg", BoundingBox((0, 0, 0), gala_job.shape))
    )
    whole = np.asarray(agglomerate(add_affinities(Chunk(gala_job))[0], 0.7))
    assert same_partition(seg, whole)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            "segment-setup --mode agglomerate -i labels -o out -c 8 8 8",
            "1 channel(s) of uint32; agglomerate mode needs an affinity map of 3",
        ),
        ("segment-setup --mode cc -i labels -o labels -c 8 8 8", "already holds a volume"),
        ("segment-setup --mode cc -i nothing -o out -c 8 8 8", "no precomputed volume there"),
        (
            "segment-setup --mode cc -i labels -o out -c 8 8 8 -b 8 8 3",
            "block size (8, 8, 3) does not divide the chunk size (8, 8, 8)",
        ),
        ("segment-fragments -o labels", "no segmentation job there"),
        ("segment-merge -o nothing", "no segmentation job there"),
    ],
)
def test_bad_input_is_one_line(run_cli, tmp_path, args, message):
    write_precomputed(
        Chunk(np.ones((16, 16, 16), np.uint32), (0, 0, 0), (1, 1, 1), "segmentation"),
        f"file://{tmp_path}/labels",
    )
    assert message in error_line(run_cli(args, expect=1))
    assert not (tmp_path / "out").exists()


def test_tasks_of_another_grid_and_phases_without_a_task(run_cli, gala_job):
    line = error_line(run_cli("generate-tasks -v seg -c 25 50 50 segment-fragments -o seg", 1))
    assert "task 0-25_0-50_0-50 is not a chunk of the job's grid: chunks of 25 50 100" in line
    line = error_line(run_cli("segment-edges -o seg", expect=1))
    assert "no task bounding box" in line


def test_meshes_and_skeletons_of_a_stitched_volume_are_whole_objects(run_cli, gala_job, tmp_path):
    """Meshed and skeletonized chunk by chunk, an object that crosses chunk faces comes back as
    one mesh and one skeleton spanning those chunks."""
    from cloudvolume import CloudVolume

    from chunkflow.segmentation.blockwise import load_plan

    seg = run_job(load_plan(f"file://{tmp_path}/seg"))
    run_cli(
        "generate-tasks -v seg -c 26 51 101 --stride 25 50 100 --respect-stop "
        "cutout -v seg -o seg mesh -i seg -o seg skeletonize -i seg -o seg"
    )
    run_cli("mesh-manifest -v seg skeleton-merge -v seg")
    ids, counts = np.unique(seg[seg > 0], return_counts=True)
    vol = CloudVolume(f"file://{tmp_path}/seg")
    crossing = 0
    for label in ids[np.argsort(counts)[::-1][:12]]:
        voxels = np.stack(np.nonzero(seg == label))  # z, y, x
        faces = []  # (axis, face in voxels) of every chunk face the object crosses
        for axis, size in enumerate((25, 50, 100)):
            cells = np.unique(voxels[axis] // size)
            faces += [(axis, int(c) * size) for c in cells[1:] if c - 1 in cells]
        if not faces:
            continue
        crossing += 1
        mesh = vol.mesh.get(int(label))
        mesh = mesh[int(label)] if isinstance(mesh, dict) else mesh
        skeleton = vol.skeleton.get(int(label))
        assert len(skeleton.components()) == 1, label

        def spans(vertices, axis, face):  # vertices x, y, z in nm; 10 nm voxels
            coordinate = vertices[:, 2 - axis] / 10
            return coordinate.min() < face - 1 and coordinate.max() > face + 1

        assert all(spans(mesh.vertices, *f) for f in faces), label
        assert any(spans(skeleton.vertices, *f) for f in faces), label
    assert crossing >= 8
