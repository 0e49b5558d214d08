"""Training data pipeline benchmark: chunkflow.training.data against gunpowder, batches per second.

Both sides serve the same augmented samples of the bundled gala FIB-SEM training volume (raw
data/gala_fibsem/train-image.h5, labels train-gt.lzf.h5 as uint32; 50x100x200, mirrored to
VOLUME so that a rotated 132x132 window fits), voxel size (1, 1, 1): a random 20x132x132 window,
raw normalized to [0, 1], transposed in y/x, elastically deformed (the values of gunpowder's
boundary-prediction tutorial, max_misalign 10), intensity scaled and shifted, labels turned into
3 affinities with balanced weights; batch 1, two worker processes.

* gunpowder 1.5.0 (bench/.venv-gp, installed once; 1.5.0 needs Python >= 3.12 and python3 may
  be older, so the first of python3.12, python3.13 and pyenv's 3.12+ that runs is used, else
  python3 with gunpowder 1.4): Hdf5Source + Normalize +
  RandomLocation + SimpleAugment + ElasticAugment(subsample=8, as its users run it) +
  IntensityAugment + AddAffinities + BalanceLabels + PreCache(cache_size=10, num_workers=2).
* ours: chunkflow.training.data.make_loader(samples, PipelineSpec(...)), a torch DataLoader.

Each round is a fresh process per side: WARMUP untimed batches, then N batches or MAX_S seconds,
whichever comes first. The sides take turns, ROUNDS times; each figure is a median. In the table,
a row holds seconds per batch (ours / gunpowder: lower is better for ours); the note gives
batches per second and the throughput ratio ours / gunpowder. Target: ours at least 3x
gunpowder's rate (ours/orig at most 1/3 in seconds per batch).

Standalone: .venv/bin/python bench/training_pipeline.py
From bench/run.py: measure(ctx) returns the rows as keyword dicts for run.Row.
Internally: <python> bench/training_pipeline.py --side gunpowder|ours FILE.h5 prints one JSON line.

Only the standard library is imported at the top: the gunpowder side runs this file in its venv.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GP_VENV = BENCH / ".venv-gp"
DATA = ROOT / "data" / "gala_fibsem"

VOLUME = (50, 400, 400)
SIZE = (20, 132, 132)
WORKERS = 2
WARMUP = 10
N = 100
MAX_S = 20.0
ROUNDS = 3
ELASTIC = dict(
    control_point_spacing=(4, 40, 40),
    jitter_sigma=(0.0, 2.0, 2.0),
    rotation_interval=(0.0, math.pi / 2),
    prob_slip=0.05,
    prob_shift=0.05,
    max_misalign=10,
)
GP_SUBSAMPLE = 8
INTENSITY = dict(scale=(0.9, 1.1), shift=(-0.1, 0.1))
NEIGHBORHOOD = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]


def rate(next_batch) -> dict:
    """Batches per second of next_batch() after WARMUP untimed calls, over N calls or MAX_S."""
    for _ in range(WARMUP):
        next_batch()
    start = time.perf_counter()
    count = 0
    while count < N and time.perf_counter() - start < MAX_S:
        next_batch()
        count += 1
    seconds = time.perf_counter() - start
    return {"batches": count, "seconds": seconds, "rate": count / seconds}


def run_gunpowder(path: str) -> dict:
    import warnings
    from importlib.metadata import version

    warnings.simplefilter("ignore", DeprecationWarning)  # Hdf5Source, ElasticAugment
    import gunpowder as gp

    raw, labels = gp.ArrayKey("RAW"), gp.ArrayKey("LABELS")
    affs, weights = gp.ArrayKey("AFFINITIES"), gp.ArrayKey("WEIGHTS")
    pipeline = (
        gp.Hdf5Source(path, {raw: "raw", labels: "labels"})
        + gp.Normalize(raw)
        + gp.RandomLocation()
        + gp.SimpleAugment(transpose_only=[1, 2])
        + gp.ElasticAugment(
            ELASTIC["control_point_spacing"],
            ELASTIC["jitter_sigma"],
            ELASTIC["rotation_interval"],
            prob_slip=ELASTIC["prob_slip"],
            prob_shift=ELASTIC["prob_shift"],
            max_misalign=ELASTIC["max_misalign"],
            subsample=GP_SUBSAMPLE,
        )
        + gp.IntensityAugment(raw, *INTENSITY["scale"], *INTENSITY["shift"])
        + gp.AddAffinities(NEIGHBORHOOD, labels, affs)
        + gp.BalanceLabels(affs, weights)
        + gp.PreCache(cache_size=10, num_workers=WORKERS)
    )
    request = gp.BatchRequest()
    for key in (raw, labels, affs, weights):
        request.add(key, gp.Coordinate(SIZE))
    with gp.build(pipeline):
        result = rate(lambda: pipeline.request_batch(request))
    return result | {"version": f"gunpowder {version('gunpowder')}"}


def run_ours(path: str) -> dict:
    import h5py
    import torch

    from chunkflow.chunk import Chunk
    from chunkflow.training.data import PipelineSpec, make_loader

    with h5py.File(path, "r") as f:
        samples = [{"image": Chunk(f["raw"][()]), "label": Chunk(f["labels"][()])}]
    spec = PipelineSpec(
        input_size=SIZE,
        output_size=SIZE,
        simple=True,
        transpose_axes=(1, 2),
        elastic=ELASTIC,
        intensity=INTENSITY,
    )
    loader = make_loader(samples, spec, batch_size=1, num_workers=WORKERS, seed=0)

    def forever():
        while True:
            yield from loader

    batches = forever()
    return rate(lambda: next(batches)) | {"version": f"torch {torch.__version__}"}


def ours_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("chunkflow.training.data") is not None
    except ImportError:
        return False


def gp_python() -> tuple[Path, float | None]:
    """The gunpowder venv's python, installed once (with the seconds that took, else None)."""
    python = GP_VENV / "bin" / "python"
    if (GP_VENV / ".installed").exists():
        return python, None
    start = time.perf_counter()
    base, package = gp_base()
    print(f"installing {package} into {GP_VENV.relative_to(ROOT)} (once) ...", flush=True)
    for argv in (
        [base, "-m", "venv", "--clear", GP_VENV],
        [python, "-m", "pip", "install", package],
    ):
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{argv[1:4]} failed:\n{proc.stdout[-1000:]}{proc.stderr[-1000:]}")
    (GP_VENV / ".installed").write_text(package + "\n")
    return python, time.perf_counter() - start


def gp_base() -> tuple[str, str]:
    """A python and the gunpowder for it: 1.5.0 needs Python >= 3.12 (PATH, pyenv), else 1.4."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    newer = sorted(map(str, pyenv.glob("3.1[2-9]*/bin/python3")))
    check = "import sys; assert sys.version_info >= (3, 12)"
    for exe in ["python3.12", "python3.13", *newer]:  # the oldest first: the most wheels
        try:
            if subprocess.run([exe, "-c", check], capture_output=True).returncode == 0:
                return exe, "gunpowder==1.5.0"
        except OSError:
            pass
    return "python3", "gunpowder>=1.4,<1.5"


def prepare(tmp: Path) -> Path:
    """The training volume as uint8 raw and uint32 labels in one HDF5 file, mirrored to VOLUME."""
    import h5py
    import numpy as np

    def grown(array):
        return np.pad(array, [(0, v - s) for v, s in zip(VOLUME, array.shape)], mode="symmetric")

    path = tmp / "train-pipeline.h5"
    with (
        h5py.File(DATA / "train-image.h5", "r") as image,
        h5py.File(DATA / "train-gt.lzf.h5", "r") as gt,
        h5py.File(path, "w") as out,
    ):
        out["raw"] = grown(image["stack"][()].astype(np.uint8))
        out["labels"] = grown(gt["stack"][()].astype(np.uint32))
        for key in ("raw", "labels"):  # as gunpowder reads the voxel size and offset
            out[key].attrs["resolution"], out[key].attrs["offset"] = (1, 1, 1), (0, 0, 0)
    return path


def side(python, name: str, path: Path) -> dict:
    argv = [str(python), __file__, "--side", name, str(path)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout[-1000:]}{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(tmp: Path) -> list[dict]:
    """The training pipeline row, as a keyword dict for run.Row."""
    name = "training pipeline: s/batch, 20x132x132"
    path = prepare(tmp)
    pythons, note, detail = {}, [], {"volume": VOLUME, "size": SIZE, "workers": WORKERS}
    try:
        pythons["gunpowder"], detail["gp_setup_s"] = gp_python()
    except (RuntimeError, OSError) as e:
        note.append(f"gunpowder not available ({str(e).strip().splitlines()[-1]})")
    if ours_available():
        pythons["ours"] = sys.executable
    else:
        note.append("chunkflow pipeline not available")
    runs = {s: [] for s in pythons}
    for _ in range(ROUNDS):
        for s, python in list(pythons.items()):
            try:
                runs[s].append(side(python, s, path))
            except RuntimeError as e:
                note.append(f"{s} failed ({str(e).strip().splitlines()[-1]})")
                del pythons[s], runs[s]
    rates = {s: statistics.median(r["rate"] for r in rs) for s, rs in runs.items()}
    detail |= {f"{s}_runs": rs for s, rs in runs.items()}
    if "gunpowder" in runs:
        detail["gunpowder"] = runs["gunpowder"][0]["version"]
    note.insert(0, ", ".join(f"{s} {r:.2f} batches/s" for s, r in rates.items()))
    if len(rates) == 2:
        note.insert(1, f"ours/gunpowder {rates['ours'] / rates['gunpowder']:.2f}x")
    return [
        {
            "name": name,
            "ours_s": 1 / rates["ours"] if "ours" in rates else None,
            "orig_s": 1 / rates["gunpowder"] if "gunpowder" in rates else None,
            "target": "ratio <= 0.33",
            "passed": rates["gunpowder"] / rates["ours"] <= 1 / 3 if len(rates) == 2 else None,
            "note": "; ".join(filter(None, note)),
            "detail": detail | {"batches_per_s": rates},
        }
    ]


def measure(ctx) -> list[dict]:
    """The entry point for bench/run.py."""
    return run(ctx.tmp)


def main() -> int:
    if sys.argv[1:2] == ["--side"]:
        runner = {"gunpowder": run_gunpowder, "ours": run_ours}[sys.argv[2]]
        print(json.dumps(runner(sys.argv[3])))
        return 0
    with tempfile.TemporaryDirectory(prefix="cf-train-") as tmp:
        (row,) = run(Path(tmp))
    print(f"{row['name']}: {row['note']}")
    print(json.dumps(row["detail"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
