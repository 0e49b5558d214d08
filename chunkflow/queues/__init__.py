"""Task queues with lease semantics: AWS SQS (boto3) and a local queue in a folder.

A message body is a bounding box string `z0-z1_y0-y1_x0-x1`. `receive` leases one message: it
stays invisible to other workers for `visibility_timeout` seconds, `extend` renews the lease
(the heartbeat of a long task), `delete` removes it once the task is done, `release` makes it
visible again at once (a failed task to retry, a worker told to stop) and `dead_letter` moves it
aside with the reason (a task that failed too often, a message that is not a task). A worker
that dies simply lets its lease expire and the message comes back. Every received message
carries how many times it has been received (`attempts`), so retries are bounded.

Queue names, as every chunkflow release read them:

- `NAME` (no `/`) or `sqs://NAME`: AWS SQS through boto3 and the standard credential chain. The
  endpoint can be changed for SQS-compatible servers with `--endpoint-url` or the
  `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL` environment variables. Dead letters go to the
  queue `NAME-dead`, created when first needed.
- `file:///shared/path` or any path with a `/` (`./queue`, `/scratch/q`): the local queue, a
  folder on a (shared) filesystem that needs no cloud account; dead letters go to its `dead/`
  folder. See `LocalQueue`.
- any other scheme (`gs://`, `https://`, a typo such as `sqs:/name`) is refused.

Both queues return the types of `chunkflow.queues.messages`; this package opens them.
"""

from __future__ import annotations

import os
import re

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.queues.local import LocalQueue
from chunkflow.queues.sqs import SQSQueue

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
SQS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")


def queue_kind(name: str) -> tuple[str, str]:
    """("sqs", queue name) or ("local", folder) for a -q/--queue-name value; a clear error for
    anything else (see the module doc)."""
    if name.startswith("sqs://"):
        kind, rest = "sqs", name[len("sqs://") :]
    elif name.startswith("file://"):
        return "local", name[len("file://") :]
    elif SCHEME.match(name):
        raise ChunkflowError(
            f"queue {name!r}: unknown scheme; expected an SQS queue name (NAME or sqs://NAME) "
            "or a local queue folder (file://PATH or a path with a /)"
        )
    elif "/" in name:
        return "local", name
    else:
        kind, rest = "sqs", name
    if not SQS_NAME.match(rest):
        raise ChunkflowError(
            f"queue {name!r}: not a valid SQS queue name (up to 80 letters, digits, - and _); "
            "for a local queue folder use file://PATH or a path with a /"
        )
    return kind, rest


def open_queue(name: str, endpoint_url: str | None = None, create: bool = False):
    """The queue for `name` (see the module doc); `create` makes it when missing."""
    kind, where = queue_kind(name)
    if kind == "sqs":
        return SQSQueue(where, endpoint_url, create)
    return LocalQueue(where, create)


def open_task_queue(name: str, endpoint_url: str | None = None, append: bool = False):
    """The queue a task grid is sent to, created when missing. One that already holds
    messages is refused unless `append`: a rerun must not queue every task twice."""
    queue = open_queue(name, endpoint_url, create=True)
    waiting = queue.count()
    if waiting and not append:
        raise ParameterError(
            f"queue {name} already holds {waiting} messages; `append` adds these tasks to them"
        )
    return queue


def parse_body(body: str):
    """The bounding box of a message body; a clear error for anything else."""
    from chunkflow.geometry import BoundingBox

    try:
        return BoundingBox.from_string(body.strip())
    except ChunkflowError:
        shown = body if len(body) < 80 else body[:77] + "..."
        raise ChunkflowError(
            f"malformed task message {shown!r}: expected a bounding box z0-z1_y0-y1_x0-x1"
        ) from None


def read_task_file(path: str) -> list:
    """Bounding boxes from a task file: `.npy` (N, 6) [z0 y0 x0 z1 y1 x1] or `.txt` (one bbox
    string per line)."""
    import numpy as np

    from chunkflow.geometry import BoundingBox

    if not os.path.isfile(path):
        raise ChunkflowError(f"task file {path}: no such file")
    if path.endswith(".npy"):
        array = np.load(path, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] != 6:
            raise ChunkflowError(f"task file {path}: expected an (N, 6) array, got {array.shape}")
        return [BoundingBox(row[:3], row[3:]) for row in array.tolist()]
    bboxes = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                bboxes.append(BoundingBox.from_string(line))
            except ChunkflowError:
                shown = line if len(line) < 80 else line[:77] + "..."
                raise ChunkflowError(
                    f"task file {path}, line {number}: {shown!r} is not a bounding box "
                    "z0-z1_y0-y1_x0-x1"
                ) from None
    return bboxes


def write_task_file(path: str, bboxes: list) -> None:
    """Write bounding boxes as `.npy` or `.txt` (atomically)."""
    import numpy as np

    from chunkflow.io.files import atomic_output

    with atomic_output(path) as tmp:
        if path.endswith(".npy"):
            rows = np.fromiter(  # no list of rows: 48 bytes a task
                ((*b.start, *b.stop) for b in bboxes), dtype=np.dtype((np.int64, 6))
            ).reshape(-1, 6)
            with open(tmp, "wb") as f:
                np.save(f, rows, allow_pickle=False)
        elif path.endswith(".txt"):
            with open(tmp, "w") as f:
                f.writelines(f"{b.string}\n" for b in bboxes)
        else:
            raise ChunkflowError(f"task file {path}: expected a .npy or .txt name")
