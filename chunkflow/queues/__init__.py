"""Task queues with lease semantics: AWS SQS (boto3) and a local queue in a folder.

A message body is a bounding box string `z0-z1_y0-y1_x0-x1`. `receive` leases one message: it
stays invisible to other workers for `visibility_timeout` seconds, `extend` renews the lease
(the heartbeat of a long task), and `delete` removes it once the task is done. A worker that
dies simply lets its lease expire and the message comes back.

Queue names:

- `sqs://NAME`: AWS SQS through boto3 and the standard credential chain. The endpoint can be
  changed for SQS-compatible servers with `--endpoint-url` or the `AWS_ENDPOINT_URL_SQS` /
  `AWS_ENDPOINT_URL` environment variables.
- anything else (`file:///shared/path`, `some/folder`, or a bare name, which is a folder in the
  working directory): the local queue, the default, a folder on a (shared) filesystem that needs
  no cloud account. See `LocalQueue`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from chunkflow.errors import ChunkflowError


@dataclass
class Message:
    body: str
    handle: str  # the lease: pass it to extend/delete


def open_queue(name: str, endpoint_url: str | None = None, create: bool = False):
    """The queue for `name` (see the module doc); `create` makes it when missing."""
    if name.startswith("sqs://"):
        from chunkflow.queues.sqs import SQSQueue

        return SQSQueue(name[len("sqs://") :], endpoint_url, create)
    from chunkflow.queues.local import LocalQueue

    return LocalQueue(name[len("file://") :] if name.startswith("file://") else name, create)


def parse_body(body: str):
    """The bounding box of a message body; a clear error for anything else."""
    from chunkflow.geometry import BoundingBox

    try:
        return BoundingBox.from_string(body.strip())
    except ChunkflowError:
        shown = body if len(body) < 80 else body[:77] + "..."
        raise ChunkflowError(
            f"malformed task message {shown!r}: expected a bounding box "
            "z0-z1_y0-y1_x0-x1 (left in the queue for inspection)"
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
            rows = np.array([[*b.start, *b.stop] for b in bboxes], dtype=np.int64).reshape(-1, 6)
            with open(tmp, "wb") as f:
                np.save(f, rows, allow_pickle=False)
        elif path.endswith(".txt"):
            with open(tmp, "w") as f:
                f.writelines(f"{b.string}\n" for b in bboxes)
        else:
            raise ChunkflowError(f"task file {path}: expected a .npy or .txt name")
