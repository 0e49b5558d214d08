"""Shared fixtures: run the real `chunkflow` entry point in-process, paths to bundled data."""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from chunkflow.cli.main import main

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
GALA = DATA / "gala_fibsem"


def pytest_addoption(parser):
    parser.addoption(
        "--screenshot-dir",
        default=None,
        help="Browser tests also save their screenshots here (make screenshots: docs/images).",
    )


@pytest.fixture(autouse=True)
def _reset_chunkflow_logger():
    """Each CLI run configures the `chunkflow` logger; give every test a clean one."""
    yield
    logger = logging.getLogger("chunkflow")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys, monkeypatch, tmp_path):
    """Run `chunkflow ARGS` through `chunkflow.cli.main.main` inside tmp_path."""
    monkeypatch.chdir(tmp_path)

    def run(args, expect: int | None = 0) -> Result:
        argv = shlex.split(args) if isinstance(args, str) else [str(a) for a in args]
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
        result = Result(code, captured.out, captured.err)
        if expect is not None:
            assert code == expect, f"chunkflow {args} exited {code}:\n{captured.err}"
        return result

    return run


@pytest.fixture(scope="session")
def gala():
    return GALA


@pytest.fixture(scope="session")
def pinky40_labels():
    """The 512^3 pinky40 segmentation (uint32), as a C-ordered (z, y, x) view."""
    import gzip

    import crackle

    labels = crackle.decompress(gzip.open(DATA / "cc3d_pinky40" / "connectomics.npy.ckl.gz").read())
    return labels.T


def read_stack(path: Path):
    import h5py

    with h5py.File(path, "r") as f:
        return f["stack"][()]


def error_line(result: Result) -> str:
    """The single error line of a failed run; asserts there is no traceback."""
    lines = [line for line in result.err.splitlines() if line.startswith("chunkflow: error:")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err, result.err
    return lines[0]
