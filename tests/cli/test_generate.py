import os
import subprocess

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox
from chunkflow.io.h5 import read_h5
from chunkflow.queues import read_task_file
from tests.conftest import error_line
from tests.queues import conftest as queue_fixtures

# the queue fixtures of tests/queues/conftest.py: dummy AWS credentials (autouse), moto SQS
aws_env = queue_fixtures.aws_env
moto_endpoint = queue_fixtures.moto_endpoint
new_queue = queue_fixtures.new_queue
CHUNKFLOW = queue_fixtures.CHUNKFLOW


def task_files(run_cli, tmp_path, args):
    out = tmp_path / "tasks"
    out.mkdir(exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    run_cli(f"{args} create-chunk -t uint8 write-h5 -f tasks/")
    return sorted(os.listdir(out))


def test_create_chunk_options(run_cli, tmp_path):
    run_cli(
        "create-chunk -s 3 4 5 -t uint16 --pattern random --seed 7 --voxel-offset 1 2 3 "
        "--voxel-size 40 4 4 -c 2 --layer-type image -o img write-h5 -i img -f a.h5"
    )
    chunk = read_h5("a.h5")
    assert chunk.shape == (2, 3, 4, 5) and chunk.dtype == np.uint16
    assert chunk.voxel_offset == (1, 2, 3) and chunk.voxel_size == (40, 4, 4)
    np.testing.assert_array_equal(
        chunk.array, Chunk.create((3, 4, 5), "uint16", "random", num_channels=2, seed=7).array
    )


def test_create_chunk_takes_the_task_bbox(run_cli):
    run_cli("create-bbox -s 1 2 3 -p 4 6 8 create-chunk write-h5 -f a.h5")
    assert read_h5("a.h5").bbox.string == "1-4_2-6_3-8"


def test_generate_tasks_grid_and_index_range(run_cli, tmp_path):
    names = task_files(
        run_cli, tmp_path, "generate-tasks --roi-start 0 0 0 --roi-stop 4 8 8 --chunk-size 4 4 4"
    )
    assert names == ["0-4_0-4_0-4.h5", "0-4_0-4_4-8.h5", "0-4_4-8_0-4.h5", "0-4_4-8_4-8.h5"]
    names = task_files(
        run_cli,
        tmp_path,
        "generate-tasks -s 0 0 0 -r 4 8 8 -c 4 4 4 --task-index-start 1 --task-index-stop 3",
    )
    assert names == ["0-4_0-4_4-8.h5", "0-4_4-8_0-4.h5"]


def test_generate_tasks_respect_stop_and_alignment(run_cli, tmp_path):
    names = task_files(
        run_cli, tmp_path, "generate-tasks -s 0 0 0 -z 1 1 10 -c 1 1 4 --respect-stop"
    )
    assert names == ["0-1_0-1_0-4.h5", "0-1_0-1_4-8.h5", "0-1_0-1_8-10.h5"]
    names = task_files(
        run_cli, tmp_path, "generate-tasks -s 0 0 3 -z 1 1 4 -c 1 1 4 --aligned-block-size 1 1 4"
    )
    assert names == ["0-1_0-1_0-4.h5", "0-1_0-1_4-8.h5"]


def test_generate_tasks_grid_size_and_stride(run_cli, tmp_path):
    names = task_files(run_cli, tmp_path, "generate-tasks -c 1 2 2 -g 1 1 3 --stride 1 2 1")
    assert names == ["0-1_0-2_0-2.h5", "0-1_0-2_1-3.h5", "0-1_0-2_2-4.h5"]


def test_generate_tasks_from_volume_bounds(run_cli, tmp_path):
    run_cli("create-chunk -s 4 8 8 --voxel-offset 2 0 8 save -v vol")
    names = task_files(run_cli, tmp_path, "generate-tasks -v vol -c 4 4 8")
    assert names == ["2-6_0-4_8-16.h5", "2-6_4-8_8-16.h5"]
    result = run_cli("generate-tasks -v vol -c 4 4 8", expect=0)
    assert "2 tasks" in result.err


def test_bad_regions(run_cli):
    assert "needs --start" in error_line(run_cli("generate-tasks -c 1 1 1 -s 0 0 0", expect=1))
    assert "--chunk-size" in error_line(run_cli("generate-tasks -s 0 0 0 -z 1 1 1", expect=2))
    assert "empty" in error_line(run_cli("create-bbox -s 5 5 5 -p 5 6 6", expect=1))


def drain(queue) -> list[str]:
    """Every message body in the queue, in the order received (the queue is left empty)."""
    bodies = []
    while (message := queue.receive(60)) is not None:
        bodies.append(message.body)
        queue.delete(message.handle)
    return bodies


def raster(k: int, n: int, size: int, stop: tuple) -> str:
    """The bbox string of task k of an n x n x n grid of size^3 chunks from 0, clipped to stop."""
    index = (k // (n * n), k // n % n, k % n)
    start = [i * size for i in index]
    end = [min(s + size, e) for s, e in zip(start, stop)]
    return "_".join(f"{s}-{e}" for s, e in zip(start, end))


def test_generate_tasks_index_range_of_a_trillion_task_grid(tmp_path):
    """10^12 tasks (10^4 per axis), clipped at the region stop: an index range is index
    arithmetic into the grid, to the chain, to a task file and to a queue alike. Building the
    grid would take hours and terabytes; the timeout only turns such a hang into a failure."""
    n, size, stop = 10**4, 64, (640_000, 640_000, 639_990)
    region = "-s 0 0 0 -r " + " ".join(map(str, stop)) + f" -c {size} {size} {size} --respect-stop"
    last = n**3
    ranges = {
        "first": (0, 3),
        "middle": (123_456_789_012, 123_456_789_015),
        "last": (last - 3, last),
    }
    for what, (i, j) in ranges.items():
        index = f"--task-index-start {i} --task-index-stop {j}"
        commands = [
            f"generate-tasks {region} {index} -f {what}.txt",
            f"generate-tasks {region} {index} -q {tmp_path / what}",
            f"generate-tasks {region} {index} mark-complete -p {tmp_path / what}-done/",
        ]
        (tmp_path / f"{what}-done").mkdir()
        for command in commands:
            subprocess.run(
                [CHUNKFLOW, "-q", *command.split()], cwd=tmp_path, check=True, timeout=120
            )
        expected = [raster(k, n, size, stop) for k in range(i, j)]
        assert [b.string for b in read_task_file(str(tmp_path / f"{what}.txt"))] == expected
        queue = queue_fixtures.QueueSpec("local", str(tmp_path / what)).open()
        assert sorted(drain(queue)) == sorted(expected)
        assert sorted(os.listdir(tmp_path / f"{what}-done")) == sorted(expected)
    assert expected[-1] == "639936-640000_639936-640000_639936-639990"


def covering_starts(start: int, stop: int, chunk: int, stride: int) -> list[int]:
    """Chunk starts along one axis, one stride apart, until a chunk reaches the stop."""
    starts = [start]
    while starts[-1] + chunk < stop:
        starts.append(starts[-1] + stride)
    return starts


def test_generate_tasks_index_ranges_match_brute_force(run_cli, tmp_path):
    """Every index range of a small grid (overlapping in z, gaps in y and x, clipped at the stop,
    the last y chunk past the stop left out) is that slice of the nested loop, in raster order."""
    run_cli("generate-tasks -s 2 -3 5 -r 9 8 20 -c 3 2 6 --stride 2 7 7 --respect-stop -f all.txt")
    roi = BoundingBox((2, -3, 5), (9, 8, 20))
    loop = [
        BoundingBox((z, y, x), (z + 3, y + 2, x + 6)).intersect(roi)
        for z in covering_starts(2, 9, 3, 2)
        for y in covering_starts(-3, 8, 2, 7)
        for x in covering_starts(5, 20, 6, 7)
    ]
    loop = [box for box in loop if not box.is_empty]
    assert read_task_file("all.txt") == loop and len(loop) == 3 * 2 * 3
    for i, j in [(0, 18), (0, 1), (5, 17), (17, 18), (12, 99), (18, 40), (7, 7)]:
        run_cli(
            f"generate-tasks -s 2 -3 5 -r 9 8 20 -c 3 2 6 --stride 2 7 7 --respect-stop "
            f"--task-index-start {i} --task-index-stop {j} -f part.txt"
        )
        assert read_task_file("part.txt") == loop[i:j]


def test_generate_tasks_refuses_a_queue_that_holds_messages(run_cli, tmp_path):
    queue = tmp_path / "queue"
    grid = "generate-tasks -s 0 0 0 -z 2 4 4 -c 2 2 2"
    run_cli(f"{grid} -q {queue}")
    line = error_line(run_cli(f"{grid} -q {queue}", expect=1))
    assert line == (
        f"chunkflow: error: generate-tasks: queue {queue} already holds 4 messages; "
        "--append adds these tasks to them"
    )
    spec = queue_fixtures.QueueSpec("local", str(queue))
    assert spec.open().count() == 4  # nothing was added
    run_cli(f"{grid} -q {queue} --task-index-start 3 --append")
    assert sorted(drain(spec.open())) == sorted(
        ["0-2_0-2_0-2", "0-2_0-2_2-4", "0-2_2-4_0-2", "0-2_2-4_2-4", "0-2_2-4_2-4"]
    )
    run_cli(f"{grid} -q {queue}")  # empty again: no --append needed
    assert spec.open().count() == 4


def test_generate_tasks_refuses_a_busy_sqs_queue(new_queue, run_cli):
    """25 tasks go out in batches of 10, 10 and 5; a rerun is refused, --append doubles them."""
    spec = new_queue("sqs")
    grid = ["generate-tasks", "-s", 0, 0, 0, "-z", 1, 5, 5, "-c", 1, 1, 1, "-q", spec.name]
    run_cli(grid + spec.options)
    queue = spec.open()
    assert queue.count() == 25
    line = error_line(run_cli(grid + spec.options, expect=1))
    assert f"queue {spec.name} already holds 25 messages" in line and "--append" in line
    run_cli(grid + spec.options + ["--append"])
    expected = [f"0-1_{y}-{y + 1}_{x}-{x + 1}" for y in range(5) for x in range(5)]
    assert sorted(drain(queue)) == sorted(expected * 2)


@pytest.mark.parametrize("kind", ["local", "sqs"])
def test_queue_send_streams_any_iterable(kind, new_queue):
    """send reads its bodies as it goes: while the generator makes body k, the bodies before it
    are written (SQS: all whole batches of 10 are sent; a local queue stages them out of sight
    and queues all of them at the end, so a failure queues none)."""
    queue = new_queue(kind).open(create=True)
    seen = []

    def bodies():
        for k in range(23):
            seen.append(queue.count())
            yield f"{k}-{k + 1}_0-1_0-1"

    queue.send(bodies())
    assert seen == ([0] * 23 if kind == "local" else [k // 10 * 10 for k in range(23)])
    assert sorted(drain(queue)) == sorted(f"{k}-{k + 1}_0-1_0-1" for k in range(23))


def test_create_chunk_too_large_for_memory_is_one_line_before_allocating(run_cli):
    line = error_line(run_cli("create-chunk --size 10000 10000 10000", expect=1))
    assert line.startswith(
        "chunkflow: error: create-chunk: a sin chunk of shape (10000, 10000, 10000) and dtype "
        "uint8 needs 22.7 TiB of memory, more than the "
    )
    assert line.endswith(" available")
