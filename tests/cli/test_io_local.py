"""Every --dtype cast of the file operators keeps the values or fails, counting what it would
change; floats in [0, 1] become an integer range only with --rescale. The walk finds the
operators by their options, so a new writer or reader with a cast is covered here too."""

import h5py
import numpy as np
import pytest
import tifffile

from chunkflow.chunk import Chunk
from chunkflow.cli.framework import EFFECTS_OF, OPERATORS
from tests.conftest import error_line

# how to write with each writer that has a cast option, and how to read its file back
WRITERS = {
    "write-h5": ("-f out.h5", lambda path: h5py.File(path)["main"][()], "out.h5"),
    "write-tif": ("-f out.tif", tifffile.imread, "out.tif"),
}
READERS = {"read-h5": "f.h5", "read-tif": "f.tif", "load-npy": "f.npy", "load-zarr": "f.zarr"}


def cast_options(kind: str) -> list[str]:
    """Operators with a `dtype` option that casts data: writers (`writes`) or readers."""
    found = []
    for name, command in OPERATORS.items():
        writes = "writes" in EFFECTS_OF[name][0]
        for param in command.params:
            if param.name == "dtype" and "cast" in (param.help or "").lower():
                if writes == (kind == "writers"):
                    found.append(name)
    return sorted(found)


def test_every_cast_option_is_walked_here():
    assert cast_options("writers") == sorted(WRITERS)
    assert cast_options("readers") == sorted(READERS)
    for name in WRITERS:
        assert "rescale" in [p.name for p in OPERATORS[name].params]


PROBABILITIES = "create-chunk -s 4 8 8 -t float32 --pattern random --seed 1 -o p"


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_probability_map_to_uint8_is_refused_unless_rescaled(run_cli, tmp_path, writer):
    args, read, name = WRITERS[writer]
    unit = Chunk.create((4, 8, 8), "float32", "random", seed=1).array
    fractional = np.count_nonzero(unit != np.floor(unit))
    line = error_line(run_cli(f"{PROBABILITIES} {writer} -i p {args} -t uint8", expect=1))
    assert f"error: {writer} (task " in line
    assert f"-t/--dtype uint8: casting float32 to uint8 would change {fractional} of 256" in line
    assert "--rescale maps floats in [0, 1] onto 0..255" in line
    assert not (tmp_path / name).exists()  # before: a file of zeros
    run_cli(f"{PROBABILITIES} {writer} -i p {args} -t uint8 --rescale")
    written = read(tmp_path / name)
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, np.rint(unit * 255).astype(np.uint8))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_rescale_onto_a_signed_dtype_spans_min_to_max_as_its_hint_says(run_cli, tmp_path, writer):
    args, read, name = WRITERS[writer]
    unit = Chunk.create((4, 8, 8), "float32", "random", seed=1).array
    line = error_line(run_cli(f"{PROBABILITIES} {writer} -i p {args} -t int8", expect=1))
    assert "--rescale maps floats in [0, 1] onto -128..127" in line
    run_cli(f"{PROBABILITIES} {writer} -i p {args} -t int8 --rescale")
    written = read(tmp_path / name)
    assert written.dtype == np.int8
    np.testing.assert_array_equal(written, (np.rint(unit * 255) - 128).astype(np.int8))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_casts_that_keep_values_pass_and_rescale_checks_its_range(run_cli, tmp_path, writer):
    args, read, name = WRITERS[writer]
    values = np.array([0.0, 0.5, 1.5, np.nan] * 4, np.float32).reshape(1, 4, 4)
    with h5py.File(tmp_path / "map.h5", "w") as f:
        f["main"] = values
    line = error_line(run_cli(f"read-h5 -f map.h5 {writer} {args} -t uint8 --rescale", expect=1))
    assert "8 of 16 values are outside [0, 1]" in line
    line = error_line(run_cli(f"read-h5 -f map.h5 {writer} {args} --rescale", expect=1))
    assert "--rescale needs -t/--dtype" in line
    run_cli(f"create-chunk -s 2 4 4 -t uint8 {writer} {args} -t uint16")  # widening keeps values
    np.testing.assert_array_equal(
        read(tmp_path / name), Chunk.create((2, 4, 4), "uint8").array.astype(np.uint16)
    )


@pytest.mark.parametrize("reader", sorted(READERS))
def test_reader_casts_are_refused_when_they_change_values(run_cli, tmp_path, reader):
    from chunkflow.io.h5 import write_h5
    from chunkflow.io.npy import write_npy
    from chunkflow.io.tif import write_tif
    from chunkflow.io.zarr import write_zarr

    chunk = Chunk(np.array([0.0, 0.5, 2.0, 300.0] * 4, np.float32).reshape(1, 4, 4))
    writers = {"h5": write_h5, "tif": write_tif, "npy": write_npy, "zarr": write_zarr}
    name = READERS[reader]
    writers[name.split(".")[1]](chunk, str(tmp_path / name))
    line = error_line(run_cli(f"{reader} -f {name} -e uint8 write-h5 -f out.h5", expect=1))
    assert f"error: {reader}" in line
    assert "-e/--dtype uint8: casting float32 to uint8 would change 8 of 16 values" in line
    assert "4 outside [0, 255], 4 not whole numbers" in line
    assert not (tmp_path / "out.h5").exists()
    run_cli(f"{reader} -f {name} -e float64 write-h5 -f out.h5")
    np.testing.assert_array_equal(h5py.File(tmp_path / "out.h5")["main"][()], chunk.array)
