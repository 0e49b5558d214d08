"""generate-tasks at production scale: a petascale run has 10^6 tasks and more.

Each figure is one whole `chunkflow -q generate-tasks ...` command, process start-up included,
with the peak resident memory of that process (from os.wait4, so no other process counts):

* index range: 3 tasks at the end of a grid of 10^12 tasks (10^4 per axis). Target: at most
  1 s; the grid is index arithmetic, never built.
* local queue: 10^6 tasks (100^3) to a local queue folder, against 10^4 tasks (10 x 10 x 100).
  Target: the peak memory of 10^6 tasks at most 16 MiB above that of 10^4 (the tasks are
  written as they are made, none is held). Time: for information (one file per task; the
  filesystem decides it).
* SQS, send path: SQSQueue.send of 10^6 bodies from a generator, in this process, with the
  queue made on a moto server on loopback (tests/queues/moto.py, dummy credentials, real AWS is
  never contacted) and then its boto3 client replaced by a stub that takes each batch and
  discards it: moto slows down with every message it holds (10^4 messages take minutes).
  Target: at most 1 MiB allocated at the peak (tracemalloc) and every batch 10 messages.
* SQS, whole command: 2,000 tasks to the moto server, the count checked; time for information
  (moto is no measure of AWS).
* task file: 10^6 tasks to a .npy file, for information (the file is written from an array of
  all its rows).

Every row also checks that the queue holds exactly the tasks sent.

Standalone: .venv/bin/python bench/generate.py [--no-sqs]
From bench/run.py: measure(ctx) returns the rows as keyword dicts for run.Row.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.queues
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: queue_overhead
from queue_overhead import dummy_aws_env  # noqa: E402

from tests.queues.moto import moto_server  # noqa: E402

CHUNKFLOW = Path(sys.executable).parent / "chunkflow"
MEMORY_BOUND_MIB = 16
INDEX_RANGE_TARGET_S = 1.0
SEND_PEAK_TARGET_MIB = 1.0
SQS_STREAM = 10**6
SQS_COMMAND = 2_000


def run_measured(argv: list, cwd: Path) -> tuple[float, float]:
    """Run a command; (wall seconds, peak resident MiB of its process). Raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}: {stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def generate(grid: tuple, *options) -> list:
    return [
        CHUNKFLOW,
        "-q",
        "generate-tasks",
        "-s",
        0,
        0,
        0,
        "-g",
        *grid,
        "-c",
        64,
        64,
        64,
        *options,
    ]


def bench_index_range(tmp: Path) -> dict:
    n = 10**4
    last = n**3
    argv = generate((n, n, n), "-i", last - 3, "-p", last, "-f", tmp / "range.txt")
    seconds, mib = run_measured(argv, tmp)
    lines = (tmp / "range.txt").read_text().split()
    correct = lines[-1] == "639936-640000_639936-640000_639936-640000" and len(lines) == 3
    return {
        "name": "generate-tasks: 3 of 10^12 tasks",
        "ours_s": seconds,
        "target": f"<= {INDEX_RANGE_TARGET_S:g} s",
        "passed": seconds <= INDEX_RANGE_TARGET_S and correct,
        "note": f"{mib:.0f} MiB peak" + ("" if correct else "; WRONG tasks"),
        "detail": {"seconds": seconds, "peak_mib": mib, "tasks": lines},
    }


def bench_local_queue(tmp: Path, small: tuple, large: tuple) -> dict:
    """Peak memory of sending the large grid against the small one, and its time."""
    from chunkflow.queues import open_queue

    figures = {}
    for label, grid in (("small", small), ("large", large)):
        name = f"file://{tmp / f'queue-{label}'}"
        seconds, mib = run_measured(generate(grid, "-q", name), tmp)
        count = open_queue(name).count()
        shutil.rmtree(tmp / f"queue-{label}")  # 10^6 files: a few GiB on most filesystems
        figures[label] = {"tasks": grid[0] * grid[1] * grid[2], "count": count}
        figures[label] |= {"seconds": seconds, "peak_mib": mib}
    growth = figures["large"]["peak_mib"] - figures["small"]["peak_mib"]
    correct = all(f["count"] == f["tasks"] for f in figures.values())
    large = figures["large"]
    return {
        "name": f"generate-tasks: {large['tasks']:,} tasks to local queue",
        "ours_s": large["seconds"],
        "target": f"mem <= +{MEMORY_BOUND_MIB} MiB",
        "passed": growth <= MEMORY_BOUND_MIB and correct,
        "note": (
            f"{large['tasks'] / large['seconds']:.0f} tasks/s, {large['peak_mib']:.0f} MiB peak, "
            f"{growth:+.1f} MiB over {figures['small']['tasks']} tasks"
            + ("" if correct else "; WRONG: queue count differs")
        ),
        "detail": figures,
    }


class DiscardingClient:
    """Stands in for the boto3 SQS client: takes each batch, keeps its size, sends nothing."""

    def __init__(self):
        self.batch_sizes = {}

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        self.batch_sizes[len(Entries)] = self.batch_sizes.get(len(Entries), 0) + 1
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def bench_sqs_send(endpoint: str) -> dict:
    import tracemalloc

    from chunkflow.queues.sqs import SQSQueue

    queue = SQSQueue("gen-stream", endpoint, create=True)
    queue.client = client = DiscardingClient()
    queue.send(["0-1_0-1_0-1"])  # warm-up: the first send imports the progress bar's module
    client.batch_sizes.clear()
    bodies = (f"{k}-{k + 1}_0-64_0-64" for k in range(SQS_STREAM))
    tracemalloc.start()
    start = time.perf_counter()
    queue.send(bodies)
    seconds = time.perf_counter() - start
    peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    correct = client.batch_sizes == {10: SQS_STREAM // 10}
    return {
        "name": f"SQSQueue.send: {SQS_STREAM:,} bodies, stub",
        "ours_s": seconds,
        "target": f"peak <= {SEND_PEAK_TARGET_MIB:g} MiB",
        "passed": peak_mib <= SEND_PEAK_TARGET_MIB and correct,
        "note": f"{peak_mib * 1024:.0f} KiB allocated at the peak (tracemalloc on)"
        + ("" if correct else f"; WRONG batches {client.batch_sizes}"),
        "detail": {"seconds": seconds, "peak_mib": peak_mib, "batches": client.batch_sizes},
    }


def bench_sqs_command(tmp: Path, endpoint: str) -> dict:
    from chunkflow.queues import open_queue

    argv = generate((1, 10, SQS_COMMAND // 10), "-q", "sqs://gen-command")
    seconds, mib = run_measured([*argv, "--endpoint-url", endpoint], tmp)
    count = open_queue("sqs://gen-command", endpoint).count()
    return {
        "name": f"generate-tasks: {SQS_COMMAND:,} tasks to SQS (moto)",
        "ours_s": seconds,
        "passed": None if count == SQS_COMMAND else False,
        "note": f"{SQS_COMMAND / seconds:.0f} tasks/s, {mib:.0f} MiB peak"
        + ("" if count == SQS_COMMAND else f"; WRONG: {count} in the queue"),
        "detail": {"seconds": seconds, "peak_mib": mib, "count": count},
    }


def bench_task_file(tmp: Path) -> dict:
    seconds, mib = run_measured(generate((100, 100, 100), "-f", tmp / "tasks.npy"), tmp)
    return {
        "name": "generate-tasks: 1,000,000 tasks to .npy file",
        "ours_s": seconds,
        "note": f"{mib:.0f} MiB peak",
        "detail": {"seconds": seconds, "peak_mib": mib},
    }


def run(workdir: Path | None = None, sqs: bool = True) -> list[dict]:
    """The generate-tasks rows, as keyword dicts for run.Row."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cf-gen-")))
        workdir.mkdir(parents=True, exist_ok=True)
        rows = [bench_index_range(workdir)]
        rows.append(bench_local_queue(workdir, (10, 10, 100), (100, 100, 100)))
        rows.append(bench_task_file(workdir))
        if sqs:
            stack.enter_context(dummy_aws_env())
            try:
                endpoint = stack.enter_context(moto_server(workdir))
            except FileNotFoundError as err:
                rows.append({"name": "generate-tasks: to SQS", "ours_s": None, "note": str(err)})
            else:
                rows.append(bench_sqs_send(endpoint))
                rows.append(bench_sqs_command(workdir, endpoint))
    return rows


def measure(ctx) -> list[dict]:
    """The entry point for bench/run.py."""
    return run(ctx.tmp / "generate")


def main() -> int:
    from run import print_rows  # bench/run.py

    print_rows(run(sqs="--no-sqs" not in sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
