"""setup-env through the real entry point: layers, queued tasks, the printed worker command."""

import json
import os
import shlex

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.cli.main import main
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.precomputed import create_info, read_precomputed, volume_bounds, write_precomputed
from chunkflow.queues import read_task_file
from tests.conftest import error_line

SHAPE = (48, 256, 256)
# the input patch is larger than the output patch: the cutout margin is patch crop + output crop
PATCH = "--input-patch-size 10 72 72 -z 8 64 64"


@pytest.fixture
def volume(tmp_path):
    """A uint8 input volume 48x256x256 at mips 0 and 1, voxel size 40 4 4."""
    path = f"file://{tmp_path}/in"
    create_info(path, SHAPE, (40, 4, 4), dtype="uint8", block_size=(16, 64, 64), max_mip=1)
    array = np.random.default_rng(0).integers(1, 256, SHAPE, dtype=np.uint8)
    write_precomputed(Chunk(array, (0, 0, 0), (40, 4, 4)), path)
    write_precomputed(Chunk(array[:, ::2, ::2].copy(), (0, 0, 0), (40, 8, 8)), path, mip=1)
    return path, array


def value(report: str, label: str) -> Cartesian:
    line = next(line for line in report.splitlines() if line.startswith(label))
    return Cartesian(*map(int, line[len(label) :].split()[:3]))


def queued(path) -> list:
    pending = os.path.join(path, "pending")
    bodies = [open(os.path.join(pending, name)).read() for name in sorted(os.listdir(pending))]
    return [BoundingBox.from_string(b) for b in bodies]


def read_info(path) -> dict:
    with open(os.path.join(path, "info")) as f:
        return json.load(f)


def test_queue_covers_the_output_region_exactly_once(run_cli, volume, tmp_path):
    path, _ = volume
    result = run_cli(
        f"setup-env -i {path} -l out -r 0.02 {PATCH} -c 3 --thumbnail -b 3 -x 2 "
        f"-q file://{tmp_path}/q"
    )
    out = result.out
    patch_num, chunk = value(out, "--patch-num"), value(out, "output chunk size:")
    margin = value(out, "--expand-margin-size")
    assert margin == (1 + 4, 4 + 32, 4 + 32)  # patch crop margin + output crop margin (overlap)
    assert (
        value(out, "input chunk size:")
        == chunk + margin * 2
        == (patch_num - 1)
        * (
            4,
            32,
            32,
        )
        + (10, 72, 72)
    )
    # the output layer's bounds: inside the input shrunk by the margin, a multiple of the task
    region = volume_bounds(f"file://{tmp_path}/out", 0)
    assert BoundingBox((0, 0, 0), SHAPE).grow(-margin).contains(region)
    assert not any(region.shape % chunk) and not any(region.start % (1, 8, 8))
    assert not any(chunk % (1, 8, 8))  # 2^(thumbnail mip 3 - mip 0)
    # every voxel of the output region is in exactly one queued task
    bboxes = queued(tmp_path / "q")
    assert len(bboxes) > 1 and all(b.shape == chunk for b in bboxes)
    count = np.zeros(tuple(region.shape), dtype=np.int32)
    for b in bboxes:
        assert region.contains(b)
        count[b.shift(-region.start).to_slices()] += 1
    assert count.min() == count.max() == 1
    # memory estimate within --max-ram-size
    memory = next(line for line in out.splitlines() if line.startswith("memory per task:"))
    assert float(memory.split("= ")[1].split()[0]) <= 0.02
    # output info: float32, 3 channels, mips 0-2; block sizes aligned with the task
    info = read_info(tmp_path / "out")
    assert info["data_type"] == "float32" and info["num_channels"] == 3
    scales = info["scales"]
    assert [s["resolution"] for s in scales] == [[4, 4, 40], [8, 8, 40], [16, 16, 40]]
    assert scales[0]["voxel_offset"] == list(region.start.xyz)
    assert scales[0]["size"] == list(region.shape.xyz)
    assert not any(chunk % Cartesian.from_xyz(scales[0]["chunk_sizes"][0]))
    for level, scale in enumerate(scales):
        scaled = chunk // (1, 2**level, 2**level)
        assert not any(scaled % Cartesian.from_xyz(scale["chunk_sizes"][0]))
    thumbnail = read_info(tmp_path / "out" / "thumbnail")
    assert thumbnail["data_type"] == "uint8" and thumbnail["num_channels"] == 1
    assert len(thumbnail["scales"]) == 4 and thumbnail["scales"][3]["resolution"] == [32, 32, 40]
    assert thumbnail["scales"][0]["voxel_offset"] == list(region.start.xyz)


def test_printed_worker_command_runs_one_task(run_cli, volume, tmp_path):
    path, array = volume
    result = run_cli(
        f"setup-env -i {path} -l out -r 0.02 {PATCH} -c 3 --thumbnail -b 3 -x 2 "
        f"-q file://{tmp_path}/q --framework identity"
    )
    command = result.out.strip().splitlines()[-1]
    words = shlex.split(command)
    assert words[:5] == ["chunkflow", "--mip", "0", "fetch-task", "-q"]
    assert words[-1] == "delete-task-in-queue"
    before = queued(tmp_path / "q")
    index = words.index("fetch-task")
    worker = words[1 : index + 1] + ["-n", "1"] + words[index + 1 :]
    assert main(worker) == 0
    after = queued(tmp_path / "q")
    (task,) = set(before) - set(after)  # done and deleted
    # the output chunk lands exactly on the task bbox: identity output = input / 255
    out = f"file://{tmp_path}/out"
    region = volume_bounds(out, 0)
    written = read_precomputed(out, region, fill_missing=True).array
    expected = np.zeros_like(written)
    local = task.shift(-region.start).to_slices()
    expected[(slice(None), *local)] = array[task.to_slices()] / np.float32(255)
    np.testing.assert_allclose(written, expected, atol=1e-6)
    # downsampled mips and the thumbnail cover the task at their scale only
    mip2 = read_precomputed(out, volume_bounds(out, 2), mip=2, fill_missing=True).array
    assert np.count_nonzero(mip2[0]) == task.voxel_count // 16
    thumb = f"{out}/thumbnail"
    small = read_precomputed(thumb, volume_bounds(thumb, 3), mip=3, fill_missing=True).array
    assert np.count_nonzero(small) == task.voxel_count // 64


def test_task_file_and_streaming(run_cli, volume, tmp_path):
    path, _ = volume
    result = run_cli(f"setup-env -i {path} -l out -r 0.03 {PATCH} -x 1 -f tasks.txt")
    bboxes = read_task_file(str(tmp_path / "tasks.txt"))
    assert "fetch-task-from-file -f tasks.txt" in result.out
    region = volume_bounds(f"file://{tmp_path}/out", 0)
    assert len(bboxes) == region.voxel_count // bboxes[0].voxel_count
    # no queue, no task file: the tasks stream down the chain; the info is kept as it matches
    os.mkdir("done")
    result = run_cli(f"setup-env -i {path} -l out -r 0.03 {PATCH} -x 1 mark-complete -p done/")
    assert sorted(os.listdir("done")) == sorted(b.string for b in bboxes)
    assert "generate-tasks --roi-start" in result.out and "kept the existing info" in result.err


def test_mip_and_explicit_region(run_cli, volume, tmp_path):
    path, _ = volume
    # --volume-start/--volume-size are mip 0 voxels; the plan is at mip 1
    run_cli(
        f"setup-env -i {path} -l out -m 1 -x 2 -r 0.05 -z 8 32 32 -c 2 "
        "--volume-start 8 64 64 --volume-size 32 128 128 -f tasks.npy"
    )
    region = volume_bounds(f"file://{tmp_path}/out", 1)
    assert BoundingBox((8, 32, 32), (40, 96, 96)).contains(region)
    scales = read_info(tmp_path / "out")["scales"]
    assert scales[1]["resolution"] == [8, 8, 40] and scales[1]["voxel_offset"] == list(
        region.start.xyz
    )
    bboxes = read_task_file(str(tmp_path / "tasks.npy"))
    assert region.contains(bboxes[0]) and region.start == bboxes[0].start


def test_dry_run_writes_nothing(run_cli, volume, tmp_path):
    path, _ = volume
    result = run_cli(f"--dry-run setup-env -i {path} -l out -r 0.02 {PATCH} -x 2 -q q/")
    assert "--patch-num" in result.out
    assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "q")


def test_existing_info_that_differs(run_cli, volume):
    path, _ = volume
    run_cli(f"setup-env -i {path} -l out -r 0.02 {PATCH} -x 2 -f t.txt")
    result = run_cli(f"setup-env -i {path} -l out -r 0.02 {PATCH} -x 2 -c 3 -f t.txt", expect=1)
    assert "an info exists and differs (1 channels, expected 3)" in error_line(result)
    run_cli(f"setup-env -i {path} -l out -r 0.02 {PATCH} -x 2 -c 3 -f t.txt --overwrite-info")


@pytest.mark.parametrize(
    "args, message",
    [
        ("-r 0.0001", "--max-ram-size 0.0001 GB is too small"),
        ("-x 8", "the region is too small along y for one task"),
        ("--input-patch-size 10 300 72", "the patch is larger than the region: "),
        ("--output-crop-margin 4 33 32", "--output-crop-margin 4 33 32: along y"),
        ("--input-patch-size 9 72 72", "must be even"),
        ("-e jpeg", "--encoding jpeg cannot store the float32 output map"),
        ("-f tasks.csv", "expected a .npy or .txt name"),
    ],
)
def test_bad_input(run_cli, volume, args, message):
    path, _ = volume
    result = run_cli(f"setup-env -i {path} -l out {PATCH} -r 0.02 -x 2 {args}", expect=None)
    assert result.code != 0 and message in error_line(result)


def test_missing_input(run_cli, tmp_path):
    result = run_cli(f"setup-env -i file://{tmp_path}/nothing -l out -z 8 64 64", expect=1)
    assert "no precomputed volume there" in error_line(result)
    result = run_cli("setup-env -l out -z 8 64 64", expect=1)
    assert "missing input volume" in error_line(result)
    result = run_cli("setup-env -l out --volume-start 0 0 0 --volume-size 8 64 64", expect=1)
    assert "give the patch size" in error_line(result)


def test_a_queue_that_holds_tasks_is_refused_unless_appending(run_cli, volume, tmp_path):
    path, _ = volume
    argv = f"setup-env -i {path} -l out -r 0.02 {PATCH} -c 3 -x 2 -q file://{tmp_path}/q"
    run_cli(argv)
    first = queued(tmp_path / "q")
    line = error_line(run_cli(argv + " --overwrite-info", expect=1))
    assert line == (
        f"chunkflow: error: setup-env: queue file://{tmp_path}/q already holds {len(first)} "
        "messages; --append adds these tasks to them"
    )
    assert queued(tmp_path / "q") == first
    run_cli(argv + " --overwrite-info --append")
    assert sorted(queued(tmp_path / "q"), key=str) == sorted(first * 2, key=str)
