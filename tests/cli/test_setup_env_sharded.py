"""setup-env --sharded: sharded output layers whose shards the tasks write whole, at every mip,
by two worker processes at once as by one."""

import json
import os
import shlex
import subprocess

import numpy as np
import pytest
import tensorstore as ts

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.precomputed import create_info, write_precomputed
from tests.cli.test_setup_env import queued, value
from tests.conftest import error_line
from tests.io.test_precomputed import files_under, tensorstore_read
from tests.queues.conftest import CHUNKFLOW

SHAPE = (18, 144, 144)
# 8 tasks of 8 64 64 (one patch each); blocks of 4 32 32 (12 bytes a voxel): shards of 4
# blocks at mip 0, two in a task
PLAN = (
    "-r 0.02 --input-patch-size 10 72 72 -z 8 64 64 --output-patch-overlap 0 0 0 -c 3 -x 2 "
    "--thumbnail -b 3 --block-size 4 32 32"
)
OPTIONS = f"{PLAN} --sharded --shard-bytes 200000"


@pytest.fixture
def source(tmp_path):
    path = f"file://{tmp_path}/in"
    create_info(path, SHAPE, (40, 4, 4), dtype="uint8", block_size=(16, 64, 64))
    array = np.random.default_rng(1).integers(1, 256, SHAPE, dtype=np.uint8)
    write_precomputed(Chunk(array, (0, 0, 0), (40, 4, 4)), path)
    return path, array


def store(path: str, mip: int):
    spec = {"driver": "neuroglancer_precomputed", "kvstore": path + "/", "scale_index": mip}
    return ts.open(spec).result()


def whole_shards(path: str, mip: int, task: BoundingBox) -> int:
    """How many shards (tensorstore's write chunks) `task`, a box of mip 0 voxels, covers at
    `mip`; fails if it covers part of one."""
    at = store(path, mip)
    shard = Cartesian.from_xyz(at.chunk_layout.write_chunk.shape[:3])
    start = Cartesian.from_xyz(at.domain.origin[:3])
    stop = start + Cartesian.from_xyz(at.domain.shape[:3])
    factor = Cartesian(1, 2**mip, 2**mip)
    assert not any(task.start % factor) and not any(task.stop % factor)
    box = BoundingBox(task.start // factor, task.stop // factor)
    assert not any((box.start - start) % shard), (mip, box, shard)
    assert all(s % k == 0 or s == e for s, k, e in zip(box.stop - start, shard, stop - start))
    return (box.shape // shard).prod


def shard_files(folder) -> dict:
    return {
        os.path.relpath(os.path.join(root, name), folder): open(
            os.path.join(root, name), "rb"
        ).read()
        for root, _, names in os.walk(folder)
        for name in names
        if name.endswith(".shard")
    }


def test_two_workers_write_whole_shards_as_one_process_does(run_cli, source, tmp_path):
    path, array = source
    out = f"file://{tmp_path}/out"
    report = run_cli(
        f"setup-env -i {path} -l {out} {OPTIONS} -q file://{tmp_path}/q --framework identity"
    ).out
    assert "raw, sharded, mips 0-2" in report
    shard = value(report, "shard shape:")
    assert shard == (4, 64, 64) and "(2 1 1 per task, at most 200000 bytes)" in report
    assert "shards by mip:        1: 4 32 32; 2: 4 16 16" in report
    # the info: every scale of both layers in shards of the create-info --sharded kind
    for layer in ("out", "out/thumbnail"):
        info = json.loads((tmp_path / layer / "info").read_text())
        for scale in info["scales"]:
            spec = scale["sharding"]
            assert spec["@type"] == "neuroglancer_uint64_sharded_v1"
            assert spec["hash"] == "identity" and spec["minishard_index_encoding"] == "gzip"
    assert Cartesian.from_xyz(store(out, 0).chunk_layout.write_chunk.shape[:3]) == shard
    # each task covers whole shards at every mip it writes, and no two tasks share one
    tasks = queued(tmp_path / "q")
    assert len(tasks) == 8
    for mip in (0, 1, 2):
        assert [whole_shards(out, mip, task) for task in tasks] == [2] * 8, mip
    assert [whole_shards(f"{out}/thumbnail", 3, task) for task in tasks] == [2] * 8

    # two workers on the queue at once
    words = shlex.split(report.strip().splitlines()[-1])
    at = words.index("-q") + 2
    worker = words[1:at] + ["-w", "0", "-r", "0"] + words[at:]
    procs = []
    for k in range(2):
        with open(tmp_path / f"worker{k}.log", "w") as log:
            procs.append(subprocess.Popen([str(CHUNKFLOW), *worker], stdout=log, stderr=log))
    codes = [proc.wait(timeout=120) for proc in procs]
    logs = [(tmp_path / f"worker{k}.log").read_text() for k in range(2)]
    assert codes == [0, 0], logs
    assert queued(tmp_path / "q") == []

    # one process, the same chain over the streamed tasks, into another layer
    one = f"file://{tmp_path}/one"
    chain = " ".join(shlex.quote(w) for w in words[words.index("cutout") : -1])
    run_cli(f"setup-env -i {path} -l {one} {OPTIONS} " + chain.replace(out, one))
    # the same shard files, byte for byte: 2 per task at mips 0-2 and in the thumbnail
    two_files, one_files = shard_files(tmp_path / "out"), shard_files(tmp_path / "one")
    assert sorted(two_files) == sorted(one_files) and len(two_files) == 8 * 2 * 4
    assert two_files == one_files
    assert not [f for f in files_under(tmp_path / "out") if "__lock" in f or ".tmp" in f]
    # read back by tensorstore: identity inference is the input / 255 on the output region
    region = BoundingBox.from_string(
        next(ln for ln in report.splitlines() if ln.startswith("output region:")).split()[2]
    )
    written = tensorstore_read(out)
    expected = np.broadcast_to(array[region.to_slices()] / np.float32(255), written.shape)
    np.testing.assert_allclose(written, expected, atol=1e-6)
    for mip in (1, 2):
        np.testing.assert_array_equal(tensorstore_read(out, mip), tensorstore_read(one, mip))
        assert np.count_nonzero(tensorstore_read(out, mip)) == tensorstore_read(out, mip).size
    thumb = tensorstore_read(f"{out}/thumbnail", 3)
    assert thumb.size and np.count_nonzero(thumb) == thumb.size
    np.testing.assert_array_equal(thumb, tensorstore_read(f"{one}/thumbnail", 3))


def test_an_existing_layer_sharded_otherwise_is_refused(run_cli, source):
    path, _ = source
    run_cli(f"setup-env -i {path} -l out {PLAN} -f t.txt")
    line = error_line(run_cli(f"setup-env -i {path} -l out {OPTIONS} -f t.txt", expect=1))
    assert "an info exists and differs (mip 0 is unsharded, expected sharded)" in line
    run_cli(f"setup-env -i {path} -l out {OPTIONS} -f t.txt --overwrite-info")
    result = run_cli(f"setup-env -i {path} -l out {OPTIONS} -f t.txt")
    assert "kept the existing info (it matches)" in result.err
    line = error_line(run_cli(f"setup-env -i {path} -l out {PLAN} -f t.txt", expect=1))
    assert "an info exists and differs (mip 0 is sharded, expected unsharded)" in line
    # other shards than the plan's differ too
    bigger = OPTIONS.replace("200000", "400000")
    line = error_line(run_cli(f"setup-env -i {path} -l out {bigger} -f t.txt", expect=1))
    assert "an info exists and differs (mip 0 sharding" in line


def test_shard_bytes_needs_sharded_and_a_dry_run_writes_nothing(run_cli, source, tmp_path):
    path, _ = source
    result = run_cli(f"setup-env -i {path} -l out {PLAN} --shard-bytes 200000", expect=1)
    assert error_line(result).endswith("setup-env: --shard-bytes 200000 needs --sharded")
    result = run_cli(f"--dry-run setup-env -i {path} -l out {OPTIONS} -q q/")
    assert "shard shape:          4 64 64 at mip 0" in result.out
    assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "q")
