"""Queue overhead benchmark: what a task queue costs a distributed worker per task.

Per task, a worker of `chunkflow fetch-task ... delete-task-in-queue` receives one message,
parses its bounding box, leases it with a heartbeat thread, and deletes it at the end. This runs
N = 100 such cycles in-process through chunkflow.queues, exactly as fetch-task and
delete-task-in-queue do, after 5 untimed warm-up cycles:

* SQS: against a moto server (`moto_server`, from moto[server]) started on a free port of
  127.0.0.1 with dummy credentials (tests/queues/moto.py, shared with the tests), and stopped
  by its PID at the end; real AWS is never contacted. One HTTP round trip each for receive and
  delete, on a kept-alive connection.
* local: the folder queue (a rename to lease, a remove to delete) in a temporary folder.

Target: at most 50 ms per task (fetch + delete), mean over the N cycles. The send of the N
messages is reported, not timed against the target.

This file is named queue_overhead.py, not queue.py: bench/ is the first entry of sys.path when
bench/run.py runs, and a bench/queue.py would shadow the standard library's `queue` module for
every import there (urllib3, torch, concurrent.futures, ...).

Standalone: .venv/bin/python bench/queue_overhead.py [N]
From bench/run.py: measure(ctx) returns the rows as keyword dicts for run.Row.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.queues
from tests.queues.moto import AWS_SCRUB, DUMMY_AWS, moto_server  # noqa: E402

N = 100
WARMUP = 5
TARGET_MS = 50.0
VISIBILITY_TIMEOUT = 60


@contextlib.contextmanager
def dummy_aws_env():
    """Dummy credentials and no other AWS setting in os.environ, restored afterwards."""
    saved = {k: os.environ.get(k) for k in (*AWS_SCRUB, *DUMMY_AWS)}
    for k in AWS_SCRUB:
        os.environ.pop(k, None)
    os.environ.update(DUMMY_AWS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cycles(queue, n: int) -> dict:
    """Send n + WARMUP tasks, then time n receive + lease + delete cycles (after WARMUP)."""
    from chunkflow.queues import parse_body
    from chunkflow.queues.lease import Lease

    bodies = [f"{k}-{k + 1}_0-64_0-64" for k in range(n + WARMUP)]
    start = time.perf_counter()
    queue.send(bodies)
    send_s = time.perf_counter() - start
    total, receive, delete, seen = [], [], [], []
    for k in range(n + WARMUP):
        t0 = time.perf_counter()
        message = queue.receive(VISIBILITY_TIMEOUT, 0)
        if message is None:
            raise RuntimeError(f"{queue}: no message at cycle {k} of {n + WARMUP}")
        parse_body(message.body)
        lease = Lease(queue, message, VISIBILITY_TIMEOUT)
        lease.start_heartbeat()  # as fetch-task does
        t1 = time.perf_counter()
        if not lease.delete():  # as delete-task-in-queue does
            raise RuntimeError(f"{queue}: lease of {message.body} lost")
        t2 = time.perf_counter()
        seen.append(message.body)
        if k >= WARMUP:
            total.append(t2 - t0)
            receive.append(t1 - t0)
            delete.append(t2 - t1)
    left = queue.count()
    return {
        "n": n,
        "total_s": total,
        "receive_s": receive,
        "delete_s": delete,
        "send_s": send_s,
        "all_received_once": sorted(seen) == sorted(bodies),
        "left_in_queue": left,
    }


def _row(name: str, res: dict) -> dict:
    ms = sorted(t * 1000 for t in res["total_s"])
    mean_ms = statistics.fmean(ms)
    p95_ms = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    correct = res["all_received_once"] and res["left_in_queue"] == 0
    return {
        "name": name,
        "ours_s": mean_ms / 1000,
        "target": f"< {TARGET_MS:g} ms/task",
        "passed": mean_ms < TARGET_MS and correct,
        "note": (
            f"{mean_ms:.1f} ms/task (p50 {statistics.median(ms):.1f}, p95 {p95_ms:.1f}), "
            f"{res['n']} tasks" + ("" if correct else "; WRONG: messages lost or left")
        ),
        "detail": {
            "n": res["n"],
            "mean_ms": mean_ms,
            "p50_ms": statistics.median(ms),
            "p95_ms": p95_ms,
            "max_ms": ms[-1],
            "receive_p50_ms": statistics.median(res["receive_s"]) * 1000,
            "delete_p50_ms": statistics.median(res["delete_s"]) * 1000,
            "send_s": res["send_s"],
            "all_received_once": res["all_received_once"],
            "left_in_queue": res["left_in_queue"],
        },
    }


def run(n: int = N, workdir: Path | None = None) -> list[dict]:
    """The queue overhead rows, as keyword dicts for run.Row."""
    from chunkflow.queues.local import LocalQueue
    from chunkflow.queues.sqs import SQSQueue

    sqs_name = "queue fetch+delete: SQS (moto, loopback)"
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cf-queue-")))
        stack.enter_context(dummy_aws_env())
        try:
            endpoint = stack.enter_context(moto_server(workdir))
        except FileNotFoundError as err:
            rows = [
                {
                    "name": sqs_name,
                    "ours_s": None,
                    "target": f"< {TARGET_MS:g} ms/task",
                    "passed": None,
                    "note": f"SKIPPED: no moto_server ({err})",
                }
            ]
        else:
            sqs = SQSQueue("chunkflow-bench", endpoint, create=True)
            rows = [_row(sqs_name, cycles(sqs, n))]
        local = LocalQueue(str(workdir / "local-queue"), create=True)
        rows.append(_row("queue fetch+delete: local folder queue", cycles(local, n)))
    return rows


def measure(ctx) -> list[dict]:
    """The entry point for bench/run.py."""
    return run(N, ctx.tmp)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    from run import print_rows  # bench/run.py

    print_rows(run(n), unit="ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
