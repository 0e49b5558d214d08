"""No half-written output: a write that fails (a full disk, SIGKILL) leaves the previous
content; one that succeeds replaces it whole. Walks the local writers of many files:
precomputed `save`, `downsample-upload`, zarr into an existing array, mesh fragments.

The full disk is a small tmpfs the test mounts (root only; skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.files import put_files, staged_writes
from chunkflow.io.precomputed import create_info, read_precomputed, write_precomputed
from chunkflow.io.zarr import read_zarr, write_zarr
from tests.conftest import error_line

SHAPE = (16, 128, 128)
WHOLE = BoundingBox((0, 0, 0), SHAPE)


def visible_files(root) -> dict:
    """Every file a reader could see (temporaries are hidden), with its bytes."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if ".tmp-" not in name:
                path = os.path.join(folder, name)
                out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


def hidden_files(root) -> list:
    return [n for _, _, names in os.walk(root) for n in names if ".tmp-" in n]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk, leave: int) -> None:
    """Fill the disk but `leave` bytes."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_staged_writes_land_together_or_not_at_all(tmp_path):
    target = f"file://{tmp_path}/files"
    put_files(target, [("a", b"old a"), ("sub/b", b"old b")])
    with pytest.raises(RuntimeError):
        with staged_writes():
            put_files(target, [("a", b"new a")])
            put_files(target, [("sub/b", b"new b")])
            assert visible_files(tmp_path / "files") == {"a": b"old a", "sub/b": b"old b"}
            raise RuntimeError("interrupted")
    assert visible_files(tmp_path / "files") == {"a": b"old a", "sub/b": b"old b"}
    assert hidden_files(tmp_path / "files") == []
    with staged_writes():
        put_files(target, [("a", b"new a"), ("sub/b", b"new b")])
    assert visible_files(tmp_path / "files") == {"a": b"new a", "sub/b": b"new b"}


def test_full_disk_keeps_the_previous_precomputed_blocks(small_disk, run_cli):
    path = f"file://{small_disk}/vol"
    create_info(path, SHAPE, (1, 1, 1), (0, 0, 0), "uint8", 1, "image", (16, 32, 32), "raw")
    ones = Chunk(np.ones(SHAPE, np.uint8))
    write_precomputed(ones, path)
    before = visible_files(small_disk / "vol")
    fill(small_disk, 100_000)  # room for 6 of the 16 blocks of 16 KiB
    twos = np.full(SHAPE, 2, np.uint8)
    np.save(small_disk.parent / "twos.npy", twos)
    result = run_cli(f"load-npy -f {small_disk.parent}/twos.npy save -v {path}", expect=1)
    line = error_line(result)
    assert line.startswith(f"chunkflow: error: save: {small_disk}/vol/")
    assert line.endswith(": cannot write (No space left on device)")
    assert visible_files(small_disk / "vol") == before  # every block as it was
    assert hidden_files(small_disk / "vol") == []
    np.testing.assert_array_equal(read_precomputed(path, WHOLE).array, 1)
    os.remove(small_disk / "filler")
    run_cli(f"load-npy -f {small_disk.parent}/twos.npy save -v {path}")
    np.testing.assert_array_equal(read_precomputed(path, WHOLE).array, 2)


def test_full_disk_keeps_every_mip_of_downsample_upload(small_disk, run_cli):
    path = f"file://{small_disk}/vol"
    create_info(path, SHAPE, (1, 1, 1), (0, 0, 0), "uint8", 1, "image", (16, 16, 16), "raw", 2)
    image = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    np.save(small_disk.parent / "image.npy", image)
    fill(small_disk, 60_000)  # mip 1 needs 64 KiB
    argv = f"load-npy -f {small_disk.parent}/image.npy downsample-upload -v {path} -s 1 -p 3"
    assert "No space left on device" in error_line(run_cli(argv, expect=1))
    assert not (small_disk / "vol" / "2_2_1").exists() or not visible_files(
        small_disk / "vol" / "2_2_1"
    )
    assert not (small_disk / "vol" / "4_4_1").exists() or not visible_files(
        small_disk / "vol" / "4_4_1"
    )
    assert hidden_files(small_disk / "vol") == []


def test_full_disk_keeps_the_zarr_array(small_disk):
    store = str(small_disk / "a.zarr")
    write_zarr(Chunk(np.ones(SHAPE, np.uint8)), store, block_size=(16, 32, 32))
    before = visible_files(small_disk / "a.zarr")
    fill(small_disk, 60_000)
    noise = np.random.default_rng(1).integers(0, 256, SHAPE, dtype=np.uint8)  # incompressible
    with pytest.raises(ChunkflowError, match=r"a.zarr/c/.*: cannot write \(No space left"):
        write_zarr(Chunk(noise), store)
    assert visible_files(small_disk / "a.zarr") == before
    assert hidden_files(small_disk / "a.zarr") == []
    np.testing.assert_array_equal(read_zarr(store).array, 1)


WRITER = """
import sys
import numpy as np
from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.precomputed import write_precomputed
from chunkflow.io import files

slow = files._write_staged
def stall(path, write, exclusive=False):  # a slow disk: the kill lands mid-write
    slow(path, write, exclusive)
    print("block", flush=True)
    import time; time.sleep(0.05)
files._write_staged = stall
write_precomputed(Chunk(np.full((16, 128, 128), int(sys.argv[2]), np.uint8)), sys.argv[1])
print("done", flush=True)
"""


def test_sigkill_during_save_leaves_the_old_blocks(tmp_path):
    path = f"file://{tmp_path}/vol"
    create_info(path, SHAPE, (1, 1, 1), (0, 0, 0), "uint8", 1, "image", (16, 32, 32), "raw")
    write_precomputed(Chunk(np.ones(SHAPE, np.uint8)), path)
    before = visible_files(tmp_path / "vol")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), path, "7"], stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(5):  # five of sixteen blocks staged
            assert proc.stdout.readline().strip() == "block"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert visible_files(tmp_path / "vol") == before
    np.testing.assert_array_equal(read_precomputed(path, WHOLE).array, 1)
    time.sleep(0)  # the hidden temporaries of the killed writer are all a reader could miss
    assert 1 <= len(hidden_files(tmp_path / "vol")) <= 6


def test_a_new_compression_removes_the_stale_file(tmp_path):
    from cloudfiles import CloudFiles

    from chunkflow.io.files import install_staged_writes

    install_staged_writes()
    files = CloudFiles(f"file://{tmp_path}/cf")
    files.put("block", b"old", compress="gzip")
    files.put("block", b"new", compress=None)
    assert sorted(os.listdir(tmp_path / "cf")) == ["block"]
    assert files.get("block") == b"new"


def test_two_creators_of_one_zarr_store_lose_nothing(tmp_path, monkeypatch):
    """Another process creates the store while this one prepares it: both datasets stay (the
    store is never replaced whole); a chunk the other's array cannot hold is refused."""
    from chunkflow.io import zarr as zarr_io

    store = str(tmp_path / "s.zarr")
    real = zarr_io._create
    calls = []

    def racing(chunk, group, name, block_size, *options):
        calls.append(name)
        if len(calls) == 1:  # the other process gets there first
            write_zarr(Chunk(np.full((2, 4, 4), 7, np.uint8)), store, "labels")
        real(chunk, group, name, block_size, *options)

    monkeypatch.setattr(zarr_io, "_create", racing)
    write_zarr(Chunk(np.full((2, 4, 4), 1, np.uint8)), store, "raw")
    assert read_zarr(store, "labels").array.max() == 7
    assert read_zarr(store, "raw").array.min() == 1

    calls.clear()
    single = str(tmp_path / "single.zarr")

    def racing_single(chunk, group, name, block_size, *options):
        calls.append(name)
        if len(calls) == 1:
            write_zarr(Chunk(np.full((2, 4, 4), 7, np.uint8)), single)
        real(chunk, group, name, block_size, *options)

    monkeypatch.setattr(zarr_io, "_create", racing_single)
    with pytest.raises(ChunkflowError, match="outside the dataset"):
        write_zarr(Chunk(np.ones((2, 4, 4), np.uint8), (8, 0, 0)), single)
    assert read_zarr(single).array.min() == 7  # the other's array is intact
    assert hidden_files(tmp_path) == []


def test_full_disk_queues_no_task(small_disk, run_cli):
    """generate-tasks -q into a full disk: one line, and the queue holds none of the tasks (a
    rerun would otherwise be refused as non-empty, or duplicate them with --append)."""
    from chunkflow.queues import open_queue

    queue = f"file://{small_disk}/queue"
    fill(small_disk, 40_000)  # room for about ten message files of 4 KiB
    argv = f"generate-tasks -s 0 0 0 -z 1 64 64 -c 1 4 4 -q {queue}"
    line = error_line(run_cli(argv, expect=1))
    assert line.startswith(f"chunkflow: error: generate-tasks: local queue {small_disk}/queue: ")
    assert line.endswith("cannot write the tasks (No space left on device); none was queued")
    counts = open_queue(queue).counts()
    assert (counts.pending, counts.leased, counts.dead) == (0, 0, 0)
    assert sorted(os.listdir(small_disk / "queue")) == ["dead", "leased", "pending"]
    os.remove(small_disk / "filler")
    run_cli(argv)
    assert open_queue(queue).count() == 256
