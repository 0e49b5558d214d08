"""The API reference (`make docs`) builds from the docstrings without a warning and shows them.

A docstring that sphinx cannot read (broken reST, a bad Args section) fails here, naming its
module and line.
"""

import html
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")

DOCS = Path(__file__).resolve().parent.parent / "docs"

# An object from each part of the library, with the page it must be on.
SHOWN = {
    "api/core": [
        "chunkflow.geometry.BoundingBox.grow",
        "chunkflow.geometry.Cartesian",
        "chunkflow.chunk.Chunk",
        "chunkflow.chunk.LayerType",
        "chunkflow.task.Task",
    ],
    "api/pipeline": ["chunkflow.pipeline.Pipeline", "chunkflow.operators.op"],
    "api/io": [
        "chunkflow.io.h5.read_h5",
        "chunkflow.io.zarr.write_zarr",
        "chunkflow.io.precomputed_volume.save_chunk",
    ],
    "api/inference": [
        "chunkflow.inference.engine.Inferencer",
        "chunkflow.inference.build.build_inferencer",
    ],
    "api/segmentation": ["chunkflow.segmentation.evaluate.evaluate_segmentation"],
    "api/training": ["chunkflow.training.targets.add_affinities"],
    "api/task_creation": ["chunkflow.task_creation.region.task_grid"],
    "api/queues": [
        "chunkflow.queues.open_queue",
        "chunkflow.queues.local.LocalQueue",
        "chunkflow.queues.worker.Worker",
    ],
}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-E"]
    command += ["-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    return proc, out / "html"


def _squeeze(text: str) -> str:
    """Text without its whitespace: markup splits words from their punctuation."""
    return "".join(text.split())


def _text(page: Path) -> str:
    """The words of a built page, whitespace dropped."""
    return _squeeze(html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))))


def _summary(name: str) -> str:
    """The first sentence of an object's docstring as the page shows it (no backticks)."""
    module, _, attribute = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError:  # a class's member
        module, _, owner = module.rpartition(".")
        obj = getattr(getattr(importlib.import_module(module), owner), attribute)
    doc = inspect.cleandoc(obj.__doc__ or "")
    first = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<=[.;:])\s", first.replace("`", ""))[0]


def test_builds_without_warnings(build):
    proc, _ = build
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_every_module_page_is_built(build):
    _, out = build
    directives = {}
    for source in [DOCS / "index.rst", *sorted((DOCS / "api").glob("*.rst"))]:
        page = source.relative_to(DOCS).with_suffix(".html")
        for module in re.findall(r"^\.\. automodule:: (\S+)", source.read_text(), re.M):
            directives[module] = page
    assert len(directives) >= 30
    for module, page in directives.items():
        assert f'id="module-{module}"' in (out / page).read_text(encoding="utf-8"), module


@pytest.mark.parametrize("page,names", SHOWN.items(), ids=list(SHOWN))
def test_pages_show_the_docstrings(build, page, names):
    _, out = build
    built = out / f"{page}.html"
    markup, text = built.read_text(encoding="utf-8"), _text(built)
    for name in names:
        assert f'id="{name}"' in markup, name
        summary = _summary(name)
        assert len(summary) > 20, (name, summary)
        assert _squeeze(summary) in text, (name, summary)
