"""Benchmark this chunkflow against the original chunkflow 1.2.0 from PyPI.

What is compared, and why:

* start-up: `chunkflow --help`, the fixed cost every command pays (and every task of a
  distributed run that starts a process). Target: ours at most 0.5 s.
* HDF5 round trip: the whole CLI command that reads a 64x1024x1024 uint8 chunk from an HDF5
  file and writes it to another one, each tool with its own defaults (ours writes uncompressed,
  the original gzip), process start-up included. Target: ours at most 0.4x the original, with our
  output a bit-exact copy. For information: ours with gzip too (same codec as the original), and
  the in-process library round trip (chunkflow.io.h5.read_h5 / write_h5) without start-up.
* inference: ConvNet inference of a 64x512x512 chunk with a small 3D net on the CPU, whole CLI
  command against the original (target: ours at most 0.5x), our in-process overhead over the
  bare network (target: at most 10 %), and our peak memory against its budget; see inference.py.
* scaling: one chunk of 64^3 to 512^3 through cutout -> inference (demo U-Net) -> agglomerate
  -> save, time per voxel (goal: within +-20 % of 128^3's) and peak memory against a fixed part
  plus a stated multiple of the chunk's bytes; see scaling.py.
* segmentation: connected components of a 64x512x512 probability map (target: ours at most 0.5x
  the original) and waterz agglomeration of a 3x64x256x256 affinity map (target: at most 0.7x,
  against the original's waterz plugin), whole CLI commands, with their outputs compared; and
  downsample-upload of a 64x1024x1024 image to mips 1-4, time and peak memory; see
  segmentation.py.
* training data pipeline: batches/s of chunkflow.training.data against gunpowder 1.5.0 (its own
  venv, bench/.venv-gp), same augmentations, in the original's column (target: ours at least
  three times the rate); see training_pipeline.py.
* training on real data: train the example U-Net on the gala training volume with `train`,
  segment the test volume and evaluate (goal: VOI split + merge below 1.35 within 30 minutes of
  training on 2 cores); see train_gala.py.
* whole-volume segmentation: the segment-* phases against the whole volume in one process,
  cc against igneous-pipeline's ccl (its own venv, bench/.venv-igneous), quality against the
  context margin, and the global merge of 10^7 fragments and 10^8 edges; see blockwise.py.
* task generation: generate-tasks with 10^6 tasks to a local queue and to SQS in bounded
  memory, and an index range of a 10^12-task grid at once; see generate.py.
* sharding: files on disk and write time of the 512^3 pinky40 segmentation as uint64, written
  by 8 tasks unsharded and sharded (`create-info --sharded`); see sharding.py.
* igneous-pipeline (bench/.venv-igneous) on the same volumes, whole pipelines side by side:
  image and segmentation downsampling to mips 1-3 (outputs compared voxel by voxel), meshing
  multi-resolution sharded (mesh + mesh-merge-sharded against mesh forge + merge-sharded) and
  legacy unsharded (mesh + mesh-manifest against mesh forge + merge), the mesh dirs' file
  counts, and skeletonizing (skeletonize + skeleton-merge against skeleton forge + merge, the
  same kimimaro parameters), each with objects, vertices or cable length compared. Target:
  ours at most 1.0x igneous on each; see igneous.py.

The "anchor" column is chunkflow 1.2.0 unless a row's name or detail names another anchor
(gunpowder, igneous, the whole volume in one process).

The two tools run side by side, interleaved, in the same run; each figure is a median. The
original is installed once into bench/.venv-orig; when that fails, only our numbers are shown.
Results go to stdout as a table and to bench/results.json. The exit code is 0 even when a target
is missed: this is a report, not a test.

To add a benchmark (inference, segmentation, meshing, ...), write a function that takes a Context
and returns a list of Row, and append it to BENCHMARKS; a module of its own with a
`measure(ctx)` that returns the rows as dicts goes in as `measured("module")`.
"""

from __future__ import annotations

import importlib
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from venvs import install, run_checked  # bench/venvs.py: the anchors' own venvs

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ORIG_VENV = BENCH / ".venv-orig"
RESULTS = BENCH / "results.json"
ORIG_TORCH = "torch==2.13.0"  # a local CPU wheel; unpinned, pip would pull gigabytes of CUDA
ORIG_PACKAGES = ("chunkflow==1.2.0", "numpy<2", "opencv-python-headless")

STARTUP_RUNS = 5
ROUNDTRIP_RUNS = 3
SHAPE = (64, 1024, 1024)


@dataclass
class Context:
    ours: Path  # our `chunkflow` executable
    orig: Path | None  # the original's, or None when it could not be installed
    tmp: Path  # a temporary directory, removed at the end


@dataclass
class Row:
    name: str
    ours_s: float | None  # None: not a timing (e.g. a memory check, whose figures are in `note`)
    orig_s: float | None = None
    target: str = ""  # e.g. "ours <= 0.5 s", "ratio <= 0.4", or "" for information only
    passed: bool | None = None  # None: no target, or it could not be evaluated
    detail: dict = field(default_factory=dict)
    note: str = ""  # a short figure for the table, e.g. a peak memory or an overhead

    @property
    def ratio(self) -> float | None:
        return self.ours_s / self.orig_s if self.ours_s and self.orig_s else None


def timed(argv: list, cwd: Path) -> float:
    start = time.perf_counter()
    run_checked(argv, cwd)
    return time.perf_counter() - start


def interleaved(commands: dict, runs: int, cwd: Path, before=None) -> dict:
    """Median wall time of each command; the commands take turns, after one untimed warm-up."""
    times = {name: [] for name in commands}
    for i in range(runs + 1):
        for name, argv in commands.items():
            if before:
                before(name)
            t = timed(argv, cwd)
            if i:
                times[name].append(t)
    return {name: (statistics.median(ts), ts) for name, ts in times.items()}


def ensure_original() -> Path | None:
    """The original's `chunkflow` executable, installing it into bench/.venv-orig when missing."""
    exe = ORIG_VENV / "bin" / "chunkflow"
    pip = ORIG_VENV / "bin" / "pip"
    steps = [[pip, "install", "-q", ORIG_TORCH], [pip, "install", "-q", *ORIG_PACKAGES]]
    return exe if install(ORIG_VENV, "the original chunkflow 1.2.0", steps, exe) else None


def bench_startup(ctx: Context) -> list[Row]:
    commands = {"ours": [ctx.ours, "--help"]}
    if ctx.orig:
        commands["orig"] = [ctx.orig, "--help"]
    res = interleaved(commands, STARTUP_RUNS, ctx.tmp)
    ours = res["ours"][0]
    return [
        Row(
            "start-up: chunkflow --help",
            ours,
            res["orig"][0] if ctx.orig else None,
            "ours <= 0.5 s",
            ours <= 0.5,
            {"runs_s": res["ours"][1], "orig_runs_s": res["orig"][1] if ctx.orig else None},
        )
    ]


def bench_h5_roundtrip(ctx: Context) -> list[Row]:
    import h5py

    from chunkflow.io.h5 import read_h5, write_h5

    data = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    src = ctx.tmp / "in.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("main", data=data)
    out = {name: ctx.tmp / f"out-{name}.h5" for name in ("ours", "ours_gzip", "orig")}
    ours_cmd = [ctx.ours, "read-h5", "-f", src, "-o", "chunk", "write-h5", "-i", "chunk", "-f"]
    commands = {
        "ours": [*ours_cmd, out["ours"]],
        "ours_gzip": [*ours_cmd, out["ours_gzip"], "-c", "gzip"],
    }
    if ctx.orig:
        commands["orig"] = [ctx.orig, "load-h5", "-f", src, "save-h5", "-f", out["orig"]]
    res = interleaved(
        commands, ROUNDTRIP_RUNS, ctx.tmp, before=lambda name: out[name].unlink(missing_ok=True)
    )

    def same(path: Path) -> bool:
        with h5py.File(path, "r") as f:
            return f["main"].dtype == data.dtype and np.array_equal(f["main"][()], data)

    exact = {name: same(out[name]) for name in commands}
    orig = res["orig"][0] if ctx.orig else None
    ours = res["ours"][0]
    passed = None if orig is None else (ours / orig <= 0.4 and exact["ours"])
    rows = [
        Row(
            "HDF5 round trip, CLI (64x1024x1024 u8)",
            ours,
            orig,
            "ratio <= 0.4",
            passed,
            {
                "runs_s": res["ours"][1],
                "bit_exact": exact["ours"],
                "shape": SHAPE,
                "orig_runs_s": res["orig"][1] if ctx.orig else None,
                "orig_bit_exact": exact.get("orig"),
                "compression": "ours none, original gzip",
            },
        ),
        Row(
            "  ours CLI with -c gzip, as the original",
            res["ours_gzip"][0],
            orig,
            detail={"runs_s": res["ours_gzip"][1], "bit_exact": exact["ours_gzip"]},
        ),
    ]

    lib = []
    for _ in range(ROUNDTRIP_RUNS):
        path = ctx.tmp / "out-lib.h5"
        path.unlink(missing_ok=True)
        start = time.perf_counter()
        write_h5(read_h5(str(src)), str(path))
        lib.append(time.perf_counter() - start)
    rows.append(
        Row(
            "  ours in-process read_h5 + write_h5",
            statistics.median(lib),
            detail={"runs_s": lib, "bit_exact": same(path)},
        )
    )
    return rows


def measured(module: str):
    """A benchmark whose workload and measurements are `measure(ctx)` of bench/{module}.py,
    which returns its rows as dicts."""

    def bench(ctx: Context) -> list[Row]:
        return [Row(**row) for row in importlib.import_module(module).measure(ctx)]

    bench.__name__ = f"bench_{module}"
    return bench


BENCHMARKS = [
    bench_startup,
    bench_h5_roundtrip,
    measured("inference"),  # bench/inference.py: the workload and its measurements
    measured("scaling"),  # bench/scaling.py: 64^3 to 512^3 through a whole chain
    measured("segmentation"),  # bench/segmentation.py: the workloads and their checks
    measured("mesh"),  # bench/mesh.py: meshing to ply, and pinky40 512^3 in one chunk
    measured("queue_overhead"),  # bench/queue_overhead.py: fetch + delete per task
    measured("generate"),  # bench/generate.py: 10^6 tasks, an index range of 10^12
    measured("sharding"),  # bench/sharding.py: unsharded against sharded writes
    measured("igneous"),  # bench/igneous.py: downsampling, meshes, skeletons
    measured("training_pipeline"),  # bench/training_pipeline.py: against gunpowder
    measured("train_gala"),  # bench/train_gala.py: the real-data training goal
    measured("blockwise"),  # bench/blockwise.py: segment-* against the whole volume
]


def fmt(x: float | None, suffix: str = "") -> str:
    return "-" if x is None else f"{x:.3f}{suffix}"


def print_rows(rows: list[dict], unit: str = "s") -> None:
    """A module's rows (dicts, as its `measure` returns them) as it prints them when run by hand:
    name, our time in `unit` (s or ms), target and PASS, FAIL or SKIP (a target that was not
    measured), then the note on a line of its own."""
    scale = {"s": 1, "ms": 1000}[unit]
    for r in rows:
        result = {True: "PASS", False: "FAIL"}.get(r.get("passed"), "SKIP" if "target" in r else "")
        value = "-" if r["ours_s"] is None else f"{r['ours_s'] * scale:.2f}"
        print(f"{r['name']:<42} {value:>8} {unit:<3}{r.get('target', ''):<18} {result}")
        print(f"{'':<42} {r['note']}")


def report(rows: list[Row], ctx: Context) -> None:
    head = (
        f"{'benchmark':<42} {'ours':>9} {'anchor':>9} {'ours/anch':>9}  {'target':<14} result  note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        result = {True: "PASS", False: "FAIL", None: "SKIP" if r.target else ""}[r.passed]
        print(
            f"{r.name:<42} {fmt(r.ours_s, ' s'):>9} {fmt(r.orig_s, ' s'):>9} "
            f"{fmt(r.ratio, 'x'):>9}  {r.target:<14} {result:<4}  {r.note}".rstrip()
        )
    if not ctx.orig:
        print("(original chunkflow 1.2.0 not available: comparison skipped)")
    failed = [r.name.strip() for r in rows if r.passed is False]
    print("FAIL: " + "; ".join(failed) if failed else "all targets met")


def main() -> int:
    orig = ensure_original()
    ours = Path(sys.executable).parent / "chunkflow"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="chunkflow-bench-") as tmp:
        ctx = Context(ours, orig, Path(tmp))
        for bench in BENCHMARKS:
            rows += bench(ctx)
    report(rows, ctx)
    RESULTS.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": f"{platform.system()} {platform.machine()}",
                "original": "chunkflow 1.2.0" if orig else None,
                "results": [asdict(r) | {"name": r.name.strip(), "ratio": r.ratio} for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
