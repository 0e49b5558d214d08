"""The anchors' own virtual environments (bench/.venv-*): made once, on first use."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_checked(argv: list, cwd: Path) -> None:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )


def install(venv: Path, what: str, steps: list, check: Path) -> bool:
    """Create `venv` and run `steps` (argv lists) in the repository unless `check` exists.

    On failure, print one SKIPPED line naming `what` and return False.
    """
    if check.exists():
        return True
    print(f"installing {what} into {venv.relative_to(ROOT)} (once) ...", flush=True)
    try:
        for argv in [["python3", "-m", "venv", venv], *steps]:
            run_checked(argv, ROOT)
    except (RuntimeError, OSError) as e:
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        print(f"SKIPPED comparison: {what} could not be installed ({last})")
        return False
    return check.exists()
