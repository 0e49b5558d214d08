"""Every reader against damaged input: empty, truncated, corrupt and wrong-typed files, a
folder where a file belongs, and damaged blocks inside a volume. Each case ends in one line
that names the file, a non-zero exit and no traceback; none is read as data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.io.h5 import write_h5
from chunkflow.io.precomputed import create_info, write_precomputed
from chunkflow.io.tif import write_tif
from chunkflow.io.zarr import write_zarr

IMAGE = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)

# reader: (command with {path}, suffix, how to make a good file at path)
READERS = {
    "read-h5": ("read-h5 -f {path}", ".h5", lambda p: write_h5(Chunk(IMAGE), p)),
    "read-tif": ("read-tif -f {path}", ".tif", lambda p: write_tif(Chunk(IMAGE), p)),
    "load-npy": ("load-npy -f {path}", ".npy", lambda p: np.save(p, IMAGE)),
}


def damaged(kind: str, path, good: bytes) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    elif kind == "text":
        path.write_text("0-8_0-16_0-16\nnot an image\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "flipped":  # one byte changed in the middle of the data
        data = bytearray(good)
        data[len(data) * 3 // 4] ^= 0xFF
        path.write_bytes(bytes(data))


def damage_in_place(kind: str, path) -> None:
    """Replace the good file at `path` by a damaged one of `kind` (see `damaged`)."""
    good = path.read_bytes()
    path.unlink()
    damaged(kind, path, good)


def assert_one_line_naming(result, path) -> None:
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("chunkflow: error: ") and str(path) in lines[0], lines[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "text", "folder"])
def test_damaged_files(reader, kind, run_cli, tmp_path):
    command, suffix, make = READERS[reader]
    good = tmp_path / f"good{suffix}"
    make(str(good))
    path = tmp_path / f"bad{suffix}"
    damaged(kind, path, good.read_bytes())
    result = run_cli(command.format(path=path), expect=None)
    assert_one_line_naming(result, path)


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "folder"])
def test_damaged_zarr_metadata(kind, run_cli, tmp_path):
    store = tmp_path / "a.zarr"
    write_zarr(Chunk(IMAGE), str(store))
    meta = store / "zarr.json"
    damage_in_place(kind, meta)
    result = run_cli(f"load-zarr -f {store}", expect=None)
    assert_one_line_naming(result, store)


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage"])
def test_damaged_zarr_block_is_not_read_as_data(kind, run_cli, tmp_path):
    store = tmp_path / "a.zarr"
    write_zarr(Chunk(IMAGE), str(store), block_size=(4, 16, 16))
    block = next(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")
    damage_in_place(kind, block)
    result = run_cli(f"load-zarr -f {store}", expect=None)
    assert_one_line_naming(result, store)


@pytest.fixture
def volume(tmp_path):
    path = f"file://{tmp_path}/vol"
    create_info(path, (4, 32, 32), (1, 1, 1), (0, 0, 0), "uint8", 1, "image", (4, 16, 16), "raw")
    write_precomputed(Chunk(IMAGE), path)
    return path, tmp_path / "vol"


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "folder"])
def test_damaged_precomputed_block(kind, volume, run_cli):
    path, folder = volume
    block = next((folder / "1_1_1").iterdir())
    damage_in_place(kind, block)
    for fill in ("", "--fill-missing"):  # a damaged block is not a missing one
        result = run_cli(f"cutout -v {path} -s 0 0 0 -z 4 32 32 {fill}", expect=None)
        assert_one_line_naming(result, folder)


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "text", "folder"])
def test_damaged_precomputed_info(kind, volume, run_cli):
    path, folder = volume
    info = folder / "info"
    damage_in_place(kind, info)
    result = run_cli(f"cutout -v {path} -s 0 0 0 -z 4 32 32", expect=None)
    assert_one_line_naming(result, folder)


def test_an_info_of_the_wrong_shape(volume, run_cli):
    path, folder = volume
    info = json.loads((folder / "info").read_text())
    for key, value in [("scales", {}), ("data_type", "complex128"), ("num_channels", 0)]:
        broken = dict(info, **{key: value})
        (folder / "info").write_text(json.dumps(broken))
        result = run_cli(f"cutout -v {path} -s 0 0 0 -z 4 32 32", expect=None)
        assert_one_line_naming(result, folder)


def test_every_file_reader_is_walked():
    """A new reader operator must join the walk above."""
    from chunkflow.cli.framework import FAMILY_OF, OPERATORS
    from chunkflow.cli.main import cli  # noqa: F401  (registers the operators)

    readers = {n for n in OPERATORS if FAMILY_OF[n] == "io" and n.startswith(("read", "load"))}
    assert readers == set(READERS) | {"load-zarr"}
