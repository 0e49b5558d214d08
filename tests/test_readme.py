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
