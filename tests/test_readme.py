"""README.md stays true: every operator and alias is in its operator table."""

import re

from chunkflow.cli.framework import ALIASES, OPERATORS
from tests.conftest import REPO


def test_operator_table_lists_every_operator_and_alias():
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Operators")
    table = readme[start : readme.index("\n## ", start + 1)]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    listed = set()
    for row in rows:
        first_cell = row.split(" | ")[0]
        listed |= set(re.findall(r"`([a-z][a-z0-9-]*)", first_cell))
    missing = sorted((set(OPERATORS) | set(ALIASES)) - listed)
    assert not missing, f"operators missing from the README table: {missing}"
    unknown = sorted(listed - set(OPERATORS) - set(ALIASES))
    assert not unknown, f"README lists operators that do not exist: {unknown}"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one README section."""
    readme = (REPO / "README.md").read_text()
    start = readme.index(f"## {section}\n")
    end = readme.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", readme[start:end], re.S)


def test_python_library_examples_run(tmp_path):
    """Each example of the Python section runs as written, from a folder holding `data`."""
    import subprocess
    import sys

    from chunkflow.io.h5 import read_h5

    (tmp_path / "data").symlink_to(REPO / "data")
    blocks = python_blocks("Python library")
    assert len(blocks) >= 2 and any("Pipeline(" in block for block in blocks)
    for k, block in enumerate(blocks):
        script = tmp_path / f"example{k}.py"
        script.write_text(block)
        run = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    seg = read_h5(str(tmp_path / "seg.h5"))  # the pipeline's writer ran, once
    assert seg.voxel_size == (10, 10, 10) and seg.shape == (50, 100, 200)
    assert f"{int(seg.array.max())} objects in 0-50_0-100_0-200" in run.stdout
    assert (tmp_path / "half.h5").exists()
    assert read_h5(str(tmp_path / "sin.h5")).voxel_size == (40, 4, 4)
