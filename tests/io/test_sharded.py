"""Sharded precomputed volumes (neuroglancer_uint64_sharded_v1): what we write reads back
bit-exact through tensorstore and cloud-volume, a write covering part of a shard keeps the rest
of it, concurrent writers lose nothing, and what cannot be merged is refused before writing."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from cloudvolume import CloudVolume

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.image.downsample import downsample_upload, pyramid
from chunkflow.io.precomputed import create_info, read_precomputed, write_precomputed
from chunkflow.io.shards import shard_shape, shard_spec, tiling_shard_spec
from tests.conftest import error_line
from tests.io.test_precomputed import files_under, tensorstore_read
from tests.queues.conftest import CHUNKFLOW

SHAPE = (32, 128, 128)  # z y x
BLOCK = (16, 32, 32)  # a 2 x 4 x 4 grid of blocks
SHARD = (32, 64, 64)  # 2 x 2 x 2 blocks: four shards


def shard_bytes(voxel_bytes: int) -> int:
    """Eight blocks a shard."""
    return 8 * int(np.prod(BLOCK)) * voxel_bytes


def sharded_volume(path: str, dtype="uint8", channels: int = 1, layer="image", encoding="raw"):
    voxel_bytes = np.dtype(dtype).itemsize * channels
    create_info(
        path,
        SHAPE,
        (40, 4, 4),
        dtype=dtype,
        num_channels=channels,
        layer_type=layer,
        block_size=BLOCK,
        encoding=encoding,
        sharded=True,
        shard_bytes=shard_bytes(voxel_bytes),
    )


def random_array(dtype, channels: int, shape=SHAPE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    full = (channels, *shape) if channels > 1 else shape
    if np.dtype(dtype).kind == "f":
        return rng.random(full, dtype=np.float32).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, full, dtype=dtype, endpoint=True)


def cloudvolume_read(path: str, mip: int = 0) -> np.ndarray:
    vol = CloudVolume(path, mip=mip, progress=False)
    return np.transpose(np.asarray(vol[:, :, :]), (3, 2, 1, 0))


def as_cxyz(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 3 else array


def contents(folder) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def shard_files(folder) -> list[str]:
    return sorted(f for f in files_under(folder) if f.endswith(".shard"))


def test_chosen_shards_are_the_boxes_tensorstore_writes(tmp_path):
    """The shard shape we compute from the spec is the set of blocks tensorstore stores in one
    file: a chunk of exactly one shard makes exactly one shard file, in every corner."""
    path = f"file://{tmp_path}/v"
    sharded_volume(path)
    info = json.loads((tmp_path / "v" / "info").read_text())
    spec = info["scales"][0]["sharding"]
    assert spec["hash"] == "identity" and spec["preshift_bits"] + spec["minishard_bits"] == 3
    assert shard_shape(spec, SHAPE, BLOCK) == SHARD
    folder = tmp_path / "v" / info["scales"][0]["key"]
    for k, start in enumerate([(0, 0, 0), (0, 0, 64), (0, 64, 0), (0, 64, 64)]):
        data = np.full(SHARD, k + 1, np.uint8)
        write_precomputed(Chunk(data, start, (40, 4, 4)), path)
        assert len(shard_files(folder)) == k + 1


def test_shard_parameters_follow_the_volume():
    """Big volumes get shards of 2**13 64^3 uint8 blocks (2 GiB, under the 3.5 GB target) split
    into minishards of at most 4000 blocks; a small volume is one shard; 3 channels make the
    shards three times smaller in blocks (rounded down to a power of two)."""
    big = shard_spec((10000, 100000, 100000), (64, 64, 64), 1)
    assert big["preshift_bits"] + big["minishard_bits"] == 13
    assert 2 ** big["preshift_bits"] <= 4000 and 16 * 2 ** big["minishard_bits"] <= 8192
    assert big["shard_bits"] == 8 + 11 + 11 - 13
    assert shard_shape(big, (10000, 100000, 100000), (64, 64, 64)) == (1024, 1024, 2048)
    small = shard_spec((64, 64, 64), (64, 64, 64), 1)
    assert (small["shard_bits"], small["preshift_bits"], small["minishard_bits"]) == (0, 0, 0)
    rgb = shard_spec((10000, 100000, 100000), (64, 64, 64), 3)
    assert rgb["preshift_bits"] + rgb["minishard_bits"] == 12
    with pytest.raises(ChunkflowError, match="more than 64"):
        shard_spec((2**30, 2**30, 2**30), (1, 1, 1), 1)


def test_shards_that_tile_a_task_are_the_largest_that_do():
    """A tile (a task) of 2 x 4 x 6 blocks (z y x) in a big volume: shard_spec's shard of 32
    blocks is 2 x 4 x 4 blocks, of 16 blocks 2 x 2 x 4; the largest shard whose shape divides
    the tile has 2 x 2 x 2 blocks; with a budget of 4 blocks it is 1 x 2 x 2; a tile larger
    than the budget leaves shard_spec's choice as it is."""
    volume, block = (10000, 100000, 100000), (64, 64, 64)
    tile = (128, 256, 384)
    block_bytes = 64**3 * 4
    for blocks, shape in ((32, (128, 256, 256)), (16, (128, 128, 256))):
        assert shard_shape(shard_spec(volume, block, 4, blocks * block_bytes), volume, block) == (
            shape
        )
    spec = tiling_shard_spec(volume, block, 4, tile, 32 * block_bytes)
    assert shard_shape(spec, volume, block) == (128, 128, 128)
    assert spec == shard_spec(volume, block, 4, 8 * block_bytes)
    spec = tiling_shard_spec(volume, block, 4, tile, 4 * block_bytes)
    assert shard_shape(spec, volume, block) == (64, 128, 128)
    big = (1024, 1024, 2048)
    assert tiling_shard_spec(volume, block, 1, big) == shard_spec(volume, block, 1)
    with pytest.raises(ChunkflowError, match="no whole number of blocks of 64 64 64"):
        tiling_shard_spec(volume, block, 4, (128, 256, 100))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", ["uint8", "uint64", "float32"])
def test_round_trip_at_every_mip(tmp_path, dtype, channels):
    """Written in two halves, each covering half of every shard, then downsampled from the
    same halves: every mip reads back bit-exact through tensorstore, cloud-volume and us."""
    path = f"file://{tmp_path}/v"
    sharded_volume(path, dtype, channels)
    data = random_array(dtype, channels)
    whole = Chunk(data, (0, 0, 0), (40, 4, 4))
    halves = [Chunk(data[..., z : z + 16, :, :], (z, 0, 0), (40, 4, 4)) for z in (0, 16)]
    for half in halves:
        write_precomputed(half, path)
    np.testing.assert_array_equal(tensorstore_read(path), as_cxyz(data))
    np.testing.assert_array_equal(cloudvolume_read(path), as_cxyz(data))
    np.testing.assert_array_equal(read_precomputed(path, whole.bbox).array, data)
    for half in halves:
        assert downsample_upload(half, path, (1, 2, 2), stop_mip=3) == [1, 2]
    info = json.loads((tmp_path / "v" / "info").read_text())
    assert all("sharding" in scale for scale in info["scales"])
    for mip, level in enumerate(pyramid(whole, (1, 2, 2), 2), start=1):
        expected = as_cxyz(level.array)
        np.testing.assert_array_equal(tensorstore_read(path, mip), expected)
        np.testing.assert_array_equal(cloudvolume_read(path, mip), expected)
        np.testing.assert_array_equal(read_precomputed(path, level.bbox, mip).array, level.array)


def test_partial_shard_write_keeps_the_rest_of_the_shard(tmp_path):
    """Half A, then half B of one shard: both are there. cloud-volume alone would have erased
    half A (the reason for the tensorstore path), shown on a twin volume."""
    a = Chunk(np.full((32, 64, 32), 7, np.uint64), (0, 0, 0), (40, 4, 4), "segmentation")
    b = Chunk(np.full((32, 64, 32), 9, np.uint64), (0, 0, 32), (40, 4, 4), "segmentation")
    for name in ("ours", "cloudvolume"):
        sharded_volume(f"file://{tmp_path}/{name}", "uint64", layer="segmentation")
    path = f"file://{tmp_path}/ours"
    write_precomputed(a, path)
    write_precomputed(b, path)
    shard = BoundingBox((0, 0, 0), SHARD)
    back = read_precomputed(path, shard).array
    assert (back[..., :32] == 7).all() and (back[..., 32:] == 9).all()
    assert (tensorstore_read(path)[0][:, :64, :64] == back).all()

    twin = CloudVolume(f"file://{tmp_path}/cloudvolume", fill_missing=True, progress=False)
    twin[0:32, 0:64, 0:32] = a.array.T
    twin[32:64, 0:64, 0:32] = b.array.T
    assert (np.asarray(twin[0:32, 0:64, 0:32]) == 0).all()  # half A is gone


def test_refused_partial_shard_names_the_shard_and_writes_nothing(tmp_path, run_cli):
    """crackle is an encoding tensorstore cannot write, so a chunk covering part of a shard
    cannot be merged into it: one line naming the shard (z0-z1_y0-y1_x0-x1), nothing written.
    A chunk of whole shards is written by cloud-volume and reads back."""
    path = f"file://{tmp_path}/v"
    sharded_volume(path, "uint64", layer="segmentation", encoding="crackle")
    key = json.loads((tmp_path / "v" / "info").read_text())["scales"][0]["key"]
    make = "create-chunk --pattern random --seed 2 --dtype uint64 --layer-type segmentation"
    result = run_cli(
        f"{make} --size 16 64 64 --voxel-offset 16 64 0 --voxel-size 40 4 4 save -v {path}",
        expect=1,
    )
    line = error_line(result)
    assert "covers part of shard 0-32_64-128_0-64 (z0-z1_y0-y1_x0-x1)" in line
    assert "crackle" in line and "32 64 64 voxels" in line
    assert files_under(tmp_path / "v") == ["info"]

    data = random_array("uint64", 1, (32, 64, 128), seed=2)
    whole_shards = Chunk(data, (0, 64, 0), (40, 4, 4), "segmentation")
    write_precomputed(whole_shards, path)
    np.testing.assert_array_equal(read_precomputed(path, whole_shards.bbox).array, data)
    assert len(shard_files(tmp_path / "v" / key)) == 2


def _write_in_processes(tmp_path, source: str, target: str, boxes: list[BoundingBox]) -> None:
    """One `chunkflow` process per box, all started at once, each copying its box."""
    env = dict(os.environ, CHUNKFLOW_PROGRESS="0")
    procs = []
    for k, box in enumerate(boxes):
        argv = [
            CHUNKFLOW,
            "create-bbox",
            "-b",
            box.string,
            "cutout",
            "-v",
            source,
            "save",
            "-v",
            target,
        ]
        log = open(tmp_path / f"worker{k}.log", "w")
        procs.append(subprocess.Popen([str(a) for a in argv], stderr=log, stdout=log, env=env))
    codes = [proc.wait(timeout=120) for proc in procs]
    assert codes == [0] * len(boxes), [(tmp_path / f"worker{k}.log").read_text() for k in range(4)]


@pytest.mark.parametrize("layout", ["one per shard", "four in one shard"])
def test_four_processes_write_what_one_does(tmp_path, layout):
    """Four worker processes at once give the same shard files, byte for byte, as one process
    writing the same chunks one after the other; four writers into the same shard included
    (tensorstore writes a shard conditionally and reads it again if another writer won)."""
    source = f"file://{tmp_path}/source"
    data = random_array("uint8", 1, seed=5)
    write_precomputed(Chunk(data, (0, 0, 0), (40, 4, 4)), source, block_size=BLOCK)
    if layout == "one per shard":
        starts = [(0, y, x) for y in (0, 64) for x in (0, 64)]
        boxes = [BoundingBox(s, np.add(s, SHARD)) for s in starts]
    else:  # the four quarters of the first shard, each across a block boundary in y
        starts = [(z, 0, x) for z in (0, 16) for x in (0, 32)]
        boxes = [BoundingBox(s, np.add(s, (16, 64, 32))) for s in starts]
    for name in ("one", "four"):
        sharded_volume(f"file://{tmp_path}/{name}")
    for box in boxes:
        write_precomputed(read_precomputed(source, box), f"file://{tmp_path}/one")
    _write_in_processes(tmp_path, source, f"file://{tmp_path}/four", boxes)
    key = json.loads((tmp_path / "one" / "info").read_text())["scales"][0]["key"]
    one, four = tmp_path / "one" / key, tmp_path / "four" / key
    assert shard_files(one) == shard_files(four) and shard_files(one)
    for name in shard_files(one):
        assert (one / name).read_bytes() == (four / name).read_bytes(), name
    union = BoundingBox(np.min([b.start for b in boxes], 0), np.max([b.stop for b in boxes], 0))
    back = read_precomputed(f"file://{tmp_path}/four", union).array
    np.testing.assert_array_equal(back, data[union.to_slices()])
    assert not [f for f in files_under(tmp_path / "four") if "__lock" in f or ".tmp" in f]


def test_failed_block_of_sharded_writes_leaves_the_shards_as_they_were(tmp_path):
    """Writes inside `sharded_writes()` are committed when it ends: a failure on the way (here
    after the first of two mips) leaves every shard file as it was and no temporary behind."""
    from chunkflow.io.shard_writes import sharded_writes

    path = f"file://{tmp_path}/v"
    sharded_volume(path)
    first = Chunk(np.full(SHARD, 3, np.uint8), (0, 0, 0), (40, 4, 4))
    write_precomputed(first, path)
    before = contents(tmp_path / "v")
    with pytest.raises(RuntimeError), sharded_writes():
        write_precomputed(Chunk(np.full(SHARD, 4, np.uint8), (0, 0, 0), (40, 4, 4)), path)
        write_precomputed(Chunk(np.full(SHARD, 5, np.uint8), (0, 64, 64), (40, 4, 4)), path)
        raise RuntimeError("failed on the way")
    assert contents(tmp_path / "v") == before


def test_generate_tasks_align_to_shards(tmp_path, run_cli):
    """--align-to-shards makes tasks of whole shards, also where the volume's offset and size
    are not multiples of the shard shape (the last shards are clipped, so are the tasks): every
    task writes its shards whole, and the volume reads back whole."""
    path = f"file://{tmp_path}/v"
    create_info(
        path,
        (32, 100, 128),
        (40, 4, 4),
        voxel_offset=(0, 8, 0),
        block_size=BLOCK,
        sharded=True,
        shard_bytes=shard_bytes(1),
    )
    key = json.loads((tmp_path / "v" / "info").read_text())["scales"][0]["key"]
    tasks = tmp_path / "tasks.txt"
    run_cli(f"generate-tasks -v {path} -c 32 64 64 --align-to-shards -f {tasks}")
    assert tasks.read_text().split() == [
        "0-32_8-72_0-64",
        "0-32_8-72_64-128",
        "0-32_72-108_0-64",
        "0-32_72-108_64-128",
    ]
    run_cli(
        f"generate-tasks -v {path} -c 32 64 128 --align-to-shards "
        f"create-chunk --pattern random --seed 4 --voxel-size 40 4 4 save -v {path}"
    )
    assert len(shard_files(tmp_path / "v" / key)) == 4
    back = read_precomputed(path, BoundingBox((0, 8, 0), (32, 108, 128))).array
    np.testing.assert_array_equal(back, tensorstore_read(path)[0])
    assert back[:, :64].any() and back[:, 64:].any()

    line = error_line(run_cli(f"generate-tasks -v {path} -c 32 64 32 --align-to-shards", 1))
    assert "chunk size 32 64 32 is not a multiple of the shard shape 32 64 64 (z y x)" in line


def test_compressed_segmentation_in_shards_round_trip(tmp_path):
    """compressed_segmentation blocks in shards, written half a shard at a time, read back
    bit-exact through both readers."""
    path = f"file://{tmp_path}/v"
    sharded_volume(path, "uint64", layer="segmentation", encoding="compressed_segmentation")
    data = random_array("uint64", 1, seed=6) % 50  # few labels, as segmentations have
    for z in (0, 16):
        write_precomputed(Chunk(data[z : z + 16], (z, 0, 0), (40, 4, 4), "segmentation"), path)
    np.testing.assert_array_equal(tensorstore_read(path)[0], data)
    np.testing.assert_array_equal(cloudvolume_read(path)[0], data)


def test_jpeg_in_shards_reads_the_same_through_both_readers(tmp_path):
    """jpeg is lossy: the shards hold what tensorstore encoded, and cloud-volume decodes the
    same voxels from them; a smooth image stays within a few grey levels."""
    path = f"file://{tmp_path}/v"
    sharded_volume(path, "uint8", encoding="jpeg")
    info = json.loads((tmp_path / "v" / "info").read_text())
    assert info["scales"][0]["sharding"]["data_encoding"] == "raw"  # jpeg is compressed
    z, y, x = np.indices(SHAPE)
    data = (100 + 50 * np.sin(y / 9) * np.cos(x / 7) + z).astype(np.uint8)
    for start in (0, 16):
        write_precomputed(Chunk(data[start : start + 16], (start, 0, 0), (40, 4, 4)), path)
    back = tensorstore_read(path)[0]
    np.testing.assert_array_equal(cloudvolume_read(path)[0], back)
    assert np.abs(back.astype(int) - data).max() <= 8


def test_queue_workers_sharing_shards_lose_nothing(tmp_path, run_cli):
    """generate-tasks into a local queue, four `fetch-task` worker processes: tasks of half a
    shard, so workers write into the same shards at once. The volume is the source, and its
    shard files are byte for byte those of one process doing every task."""
    source = f"file://{tmp_path}/source"
    data = random_array("uint8", 1, seed=8)
    write_precomputed(Chunk(data, (0, 0, 0), (40, 4, 4)), source, block_size=BLOCK)
    chain = ["cutout", "-v", source, "save", "-v"]
    for name in ("one", "four"):
        sharded_volume(f"file://{tmp_path}/{name}")
        queue = f"file://{tmp_path}/queue-{name}"
        run_cli(f"generate-tasks -v {source} -c 16 64 64 -q {queue}")  # 8 tasks, 2 a shard
        worker = ["fetch-task", "-q", queue, "-v", 30, "-r", 0, "-w", 0]
        worker += [*chain, f"file://{tmp_path}/{name}", "delete-task-in-queue"]
        if name == "one":
            run_cli(worker)
            continue
        env = dict(os.environ, CHUNKFLOW_PROGRESS="0")
        logs = [open(tmp_path / f"worker{k}.log", "w") for k in range(4)]
        procs = [
            subprocess.Popen([str(CHUNKFLOW), *map(str, worker)], stderr=log, env=env)
            for log in logs
        ]
        codes = [proc.wait(timeout=120) for proc in procs]
        assert codes == [0] * 4, [(tmp_path / f"worker{k}.log").read_text() for k in range(4)]
        done = [(tmp_path / f"worker{k}.log").read_text().count(": fetch-task") for k in range(4)]
        assert sum(done) == 8
    key = json.loads((tmp_path / "one" / "info").read_text())["scales"][0]["key"]
    one, four = tmp_path / "one" / key, tmp_path / "four" / key
    assert len(shard_files(four)) == 4 and shard_files(one) == shard_files(four)
    for name in shard_files(one):
        assert (one / name).read_bytes() == (four / name).read_bytes(), name
    np.testing.assert_array_equal(tensorstore_read(f"file://{tmp_path}/four")[0], data)


WRITER = """
import sys, time
import numpy as np
import tensorstore  # imported before the start line, so that the writes start together
from chunkflow.chunk import Chunk
from chunkflow.io.precomputed import write_precomputed

path, k, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
z, y, x = (k // 4) * 16, (k // 2) % 2 * 32, k % 2 * 32
chunk = Chunk(np.full((16, 32, 32), k + 1, np.uint8), (z, y, x), (40, 4, 4))
while time.time() < start:
    time.sleep(0.001)
write_precomputed(chunk, path)
"""


def test_eight_writers_into_one_shard_at_the_same_moment(tmp_path):
    """Eight processes write the eight blocks of one shard at the same moment: each reads the
    shard, adds its block and writes it back; none of the eight blocks is lost."""
    import sys
    import time

    path = f"file://{tmp_path}/v"
    sharded_volume(path)
    (tmp_path / "writer.py").write_text(WRITER)
    start = time.time() + 4
    argv = [sys.executable, str(tmp_path / "writer.py"), path]
    procs = [subprocess.Popen([*argv, str(k), str(start)]) for k in range(8)]
    assert [proc.wait(timeout=120) for proc in procs] == [0] * 8
    shard = read_precomputed(path, BoundingBox((0, 0, 0), SHARD)).array
    assert sorted(np.unique(shard)) == list(range(1, 9))


def test_downsampled_mips_get_shards_of_the_chunk_mips_size(tmp_path):
    """Mips that downsample-upload adds to a sharded volume are sharded with as many bytes a
    shard as the chunk's mip (here 2 blocks, from --shard-bytes), not one default 3.5 GB shard."""
    path = f"file://{tmp_path}/v"
    block_bytes = int(np.prod(BLOCK))
    create_info(
        path,
        (32, 256, 256),
        (40, 4, 4),
        block_size=BLOCK,
        sharded=True,
        shard_bytes=2 * block_bytes,
    )
    data = random_array("uint8", 1, (32, 256, 256), seed=9)
    chunk = Chunk(data, (0, 0, 0), (40, 4, 4))
    write_precomputed(chunk, path)
    downsample_upload(chunk, path, (1, 2, 2), stop_mip=2)
    info = json.loads((tmp_path / "v" / "info").read_text())
    spec = info["scales"][1]["sharding"]
    assert spec["preshift_bits"] + spec["minishard_bits"] == 1  # 2 blocks a shard
    assert len(shard_files(tmp_path / "v" / info["scales"][1]["key"])) == 32 * 128 * 128 // (
        2 * block_bytes
    )
    np.testing.assert_array_equal(tensorstore_read(path, 1)[0], pyramid(chunk, (1, 2, 2))[0].array)
