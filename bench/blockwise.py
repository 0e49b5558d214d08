"""Whole-volume segmentation (the segment-* phases) against the whole volume in one process.

Each phase runs as one CLI process over all of its tasks (`generate-tasks ... segment-PHASE`),
as a single worker would; figures are one run each, wall time and peak memory (maximum resident
set size, /usr/bin/time -v).

* agglomerate, ideal affinities: the pinky40 segmentation (data/cc3d_pinky40), a 256^3 crop at
  256, 256, 256, turned into affinities (`add-affinities`), a float32 precomputed volume of 64^3
  blocks. The job in tasks of 64^3 (64 tasks) and of 128^3 (8 tasks), default margin 1, against
  `cutout ... agglomerate ... save` of the whole volume in one process. Checked: identical
  partitions. Reported: seconds and voxels per second of every phase and of the whole job, and
  the peak memory of each phase against the whole-volume run. Target: a worker's peak memory is
  bounded by its chunk: with 64^3 tasks at most half the whole-volume run's.
* agglomerate, quality against context: the bundled U-Net's affinities of the gala test volume
  (50x100x200) in 8 chunks of 25x50x100, for several margins, against the whole volume at the
  same threshold (0.7, low 0.001): VOI split + merge against the ground truth and against the
  whole volume's segmentation, and phase 1's time. Target: within 0.02 of the whole volume.
* cc: connected components (6-connected) of the whole 512^3 pinky40 segmentation, a uint32
  precomputed volume of 128^3 blocks, in tasks of 128^3 (64 tasks), against cc3d of the whole
  volume in one process (`cutout ... connected-components ... save`) and against
  igneous-pipeline's ccl (its four task steps in one process, its own venv
  bench/.venv-igneous; bench/igneous_ccl.py), same input and task shape. Checked: all three give
  the same partition. Target: ours at most 1.0x igneous.
* the global step: `segment-merge` of a synthetic agglomerate job of 10^7 fragments and 10^8
  edges (1000 tasks of 10^4 fragments and 10^5 edges, random contacts, 90 % inside a task,
  10 % to the task before it): time and peak memory.

`python bench/blockwise.py` runs it standalone.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from inference import measured  # bench/inference.py: wall time and max RSS of a command

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PINKY = ROOT / "data" / "cc3d_pinky40" / "connectomics.npy.ckl.gz"
GALA = ROOT / "data" / "gala_fibsem"
UNET = ROOT / "examples" / "inference"
PHASES = ("fragments", "edges", "merge", "relabel")
MiB = 1 << 20


def pinky40() -> np.ndarray:
    import crackle

    return crackle.decompress(gzip.open(PINKY).read()).T  # C-ordered z, y, x


def write_volume(path: Path, array: np.ndarray, layer_type: str, block, voxel_size=(40, 32, 32)):
    from chunkflow.chunk import Chunk
    from chunkflow.io.precomputed import write_precomputed

    write_precomputed(
        Chunk(array, (0, 0, 0), voxel_size, layer_type), f"file://{path}", block_size=block
    )
    return f"file://{path}"


def read_volume(url: str, shape) -> np.ndarray:
    from chunkflow.geometry import BoundingBox
    from chunkflow.io.precomputed import read_precomputed

    return np.asarray(read_precomputed(url, BoundingBox((0, 0, 0), shape)))


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    import fastremap

    a, _ = fastremap.renumber(a.ravel().copy())
    b, _ = fastremap.renumber(b.ravel().copy())
    pairs = fastremap.unique(a.astype(np.uint64) << np.uint64(32) | b.astype(np.uint64))
    return len(fastremap.unique(a)) == len(fastremap.unique(b)) == len(pairs)


def run_job(ctx, mode: str, source: str, output: str, chunk, *options) -> dict:
    """Set up a job and run every phase as one process: {phase: (seconds, peak bytes)}."""
    chunk = [str(c) for c in chunk]
    setup = ["segment-setup", "--mode", mode, "-i", source, "-o", output, "-c", *chunk]
    measured([ctx.ours, "-q", *setup, *options], ctx.tmp)
    tasks = ["generate-tasks", "-v", output, "-c", *chunk]
    runs = {}
    for phase in PHASES:
        argv = [f"segment-{phase}", "-o", output]
        runs[phase] = measured(
            [ctx.ours, "-q", *(tasks if phase != "merge" else []), *argv], ctx.tmp
        )
    return runs


def phase_rows(label: str, runs: dict, voxels: int) -> list[dict]:
    return [
        dict(
            name=f"  {label}: {phase}",
            ours_s=seconds,
            detail={"voxels_per_s": voxels / seconds, "peak_bytes": peak},
            note=f"{voxels / seconds / 1e6:.1f} Mvoxel/s, peak {peak / MiB:.0f} MiB",
        )
        for phase, (seconds, peak) in runs.items()
    ]


def agglomeration_rows(ctx, label: str, affs: np.ndarray, chunks) -> list[dict]:
    """The job over `affs` in tasks of each of `chunks`, against the whole volume."""
    shape = affs.shape[1:]
    source = write_volume(ctx.tmp / f"{label}-affs", affs, "affinity_map", (64, 64, 64))
    whole_out = f"file://{ctx.tmp}/{label}-whole"
    whole_s, whole_peak = measured(
        [ctx.ours, "-q", "cutout", "-v", source, "--start", 0, 0, 0, "--size", *shape,
         "-o", "affs", "agglomerate", "-i", "affs", "-o", "seg", "save", "-i", "seg",
         "-v", whole_out],
        ctx.tmp,
    )  # fmt: skip
    whole = read_volume(whole_out, shape)
    voxels = int(np.prod(shape))
    rows = []
    for chunk in chunks:
        output = f"file://{ctx.tmp}/{label}-{chunk[0]}"
        runs = run_job(ctx, "agglomerate", source, output, chunk)
        total = sum(s for s, _ in runs.values())
        peak = max(p for _, p in runs.values())
        seg = read_volume(output, shape)
        identical = same_partition(seg, whole)
        tasks = int(np.prod([s // c for s, c in zip(shape, chunk)]))
        bounded = peak <= whole_peak / 2 if chunk[0] == 64 else None
        rows.append(
            dict(
                name=f"segment {label} 256^3, {tasks} tasks",
                ours_s=total,
                orig_s=whole_s,
                target="peak <= whole/2" if bounded is not None else "",
                passed=bounded,
                detail={
                    "anchor": "agglomerate of the whole volume in one process",
                    "identical_partition": identical,
                    "voi_to_whole": _voi(seg, whole),
                    "peak_bytes": peak,
                    "whole_peak_bytes": whole_peak,
                    "voxels_per_s": voxels / total,
                    "whole_voxels_per_s": voxels / whole_s,
                },
                note=f"vs whole volume; peak {peak / MiB:.0f} MiB vs {whole_peak / MiB:.0f} MiB"
                + (", identical" if identical else f", VOI to it {sum(_voi(seg, whole)):.4f}"),
            )
        )
        rows += phase_rows(f"{tasks} tasks", runs, voxels)
    return rows


def _voi(seg: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    from chunkflow.segmentation.evaluate import evaluate_segmentation

    metrics = evaluate_segmentation(seg, reference + 1)  # + 1: the reference's 0 voxels count
    return metrics["voi_split"], metrics["voi_merge"]


def bench_ideal_agglomeration(ctx) -> list[dict]:
    """Ideal affinities of a real segmentation: the job must give the whole-volume result."""
    from chunkflow.chunk import Chunk
    from chunkflow.training.targets import add_affinities

    labels = np.ascontiguousarray(pinky40()[256:512, 256:512, 256:512])
    affs, _ = add_affinities(Chunk(labels))
    rows = agglomeration_rows(ctx, "ideal", np.asarray(affs), [(64, 64, 64)])
    rows[0]["passed"] = rows[0]["passed"] and rows[0]["detail"]["identical_partition"]
    return rows


def bench_synthetic_agglomeration(ctx) -> list[dict]:
    """Smoothed-noise membranes (bench/segmentation.py's affinity map): speed and memory."""
    from segmentation import affinity_map  # bench/segmentation.py

    return agglomeration_rows(
        ctx, "synthetic", affinity_map((256, 256, 256)), [(64, 64, 64), (128, 128, 128)]
    )


def unet_affinities(ctx) -> str:
    path = f"file://{ctx.tmp}/unet-affs"
    measured(
        [ctx.ours, "-q", "read-h5", "-f", GALA / "test-image.h5", "--voxel-size", 10, 10, 10,
         "-o", "image", "inference", "-i", "image", "-o", "affs", "--framework", "pytorch",
         "--convnet-model", UNET / "unet.py", "--convnet-weight-path", UNET / "unet.pt",
         "--input-patch-size", 16, 64, 64, "--output-patch-overlap", 4, 16, 16,
         "--num-output-channels", 3, "--batch-size", 4, "--mask-output-chunk",
         "save", "-i", "affs", "-v", path, "--block-size", 25, 50, 50],
        ctx.tmp,
    )  # fmt: skip
    return path


def bench_margin(ctx) -> list[dict]:
    import h5py

    from chunkflow.segmentation.agglomerate import agglomerate
    from chunkflow.segmentation.evaluate import evaluate_segmentation

    with h5py.File(GALA / "test-gt.lzf.h5", "r") as f:
        gt = f["stack"][()]
    source = unet_affinities(ctx)
    from chunkflow.geometry import BoundingBox
    from chunkflow.io.precomputed import read_precomputed

    affs = read_precomputed(source, BoundingBox((0, 0, 0), gt.shape))
    whole = evaluate_segmentation(np.asarray(agglomerate(affs, 0.7, 0.001)), gt)
    reference = whole["voi_split"] + whole["voi_merge"]
    rows = []
    whole_seg = np.asarray(agglomerate(affs, 0.7, 0.001))
    for margin in ((0, 0, 0), (1, 1, 1), (4, 8, 8), (8, 8, 8), (12, 25, 25)):
        output = f"file://{ctx.tmp}/margin-{'-'.join(map(str, margin))}"
        runs = run_job(
            ctx, "agglomerate", source, output, (25, 50, 100), "--threshold", "0.7",
            "--aff-threshold-low", "0.001", "--margin", *map(str, margin),
        )  # fmt: skip
        seg = read_volume(output, gt.shape)
        metrics = evaluate_segmentation(seg, gt)
        total = metrics["voi_split"] + metrics["voi_merge"]
        to_whole = _voi(seg, whole_seg)
        rows.append(
            dict(
                name=f"gala U-Net, 8 chunks, margin {' '.join(map(str, margin))}",
                ours_s=runs["fragments"][0],
                target="VOI within 0.02",
                passed=abs(total - reference) <= 0.02,
                detail={
                    "voi": metrics,
                    "whole_voi": whole,
                    "voi_to_whole": to_whole,
                    "phases": runs,
                },
                note=f"VOI split+merge {metrics['voi_split']:.3f}+{metrics['voi_merge']:.3f}"
                f"={total:.4f}, whole volume {reference:.4f}, to the whole volume "
                f"{sum(to_whole):.4f} (time: phase 1)",
            )
        )
    return rows


def bench_cc(ctx) -> list[dict]:
    import igneous_ccl as anchor  # bench/igneous_ccl.py

    shape = (512, 512, 512)
    labels = np.ascontiguousarray(pinky40())
    source = write_volume(ctx.tmp / "pinky", labels, "segmentation", (128, 128, 128))
    del labels
    whole_out = f"file://{ctx.tmp}/cc-whole"
    whole_s, whole_peak = measured(
        [ctx.ours, "-q", "cutout", "-v", source, "--start", 0, 0, 0, "--size", *shape,
         "connected-components", "--connectivity", 6, "save", "-v", whole_out],
        ctx.tmp,
    )  # fmt: skip
    whole = read_volume(whole_out, shape)
    output = f"file://{ctx.tmp}/cc-blockwise"
    runs = run_job(ctx, "cc", source, output, (128, 128, 128))
    total = sum(s for s, _ in runs.values())
    peak = max(p for _, p in runs.values())
    identical = same_partition(read_volume(output, shape), whole)
    python = anchor.ensure_igneous()
    theirs = None
    if python is not None:
        theirs = anchor.run_ccl(python, source, f"file://{ctx.tmp}/cc-igneous", (128,) * 3, ctx.tmp)
        theirs["identical_partition"] = same_partition(
            read_volume(f"file://{ctx.tmp}/cc-igneous", shape), whole
        )
    voxels = int(np.prod(shape))
    return [
        dict(
            name="segment cc 512^3, 64 tasks vs igneous ccl",
            ours_s=total,
            orig_s=theirs["seconds"] if theirs else None,
            target="ratio <= 1.0",
            passed=(total <= theirs["seconds"] and identical) if theirs else None,
            detail={
                "anchor": "igneous-pipeline ccl, one process",
                "identical_partition": identical,
                "peak_bytes": peak,
                "igneous": theirs,
                "whole_s": whole_s,
                "whole_peak_bytes": whole_peak,
            },
            note=(
                f"peak {peak / MiB:.0f} MiB, igneous {theirs['max_rss_bytes'] / MiB:.0f} MiB; "
                if theirs
                else "igneous not available; "
            )
            + f"cc3d of the whole volume in one process {whole_s:.1f} s, "
            f"{whole_peak / MiB:.0f} MiB",
        ),
        *phase_rows("cc 64 tasks", runs, voxels),
    ]


def synthetic_job(work: Path, tasks: int = 1000, fragments: int = 10_000, edges: int = 100_000):
    """A plan and per-task edge files of an agglomerate job, without any voxels."""
    from chunkflow.geometry import BoundingBox, Cartesian
    from chunkflow.io.files import put_files
    from chunkflow.segmentation.blockwise import ID_BITS, Plan

    side = round(tasks ** (1 / 3))
    plan = Plan(
        mode="agglomerate",
        input_path="file:///nowhere",
        mip=0,
        output_path=f"file://{work}/out",
        work_path=f"file://{work}",
        roi=BoundingBox((0, 0, 0), (64 * side,) * 3),
        chunk_size=Cartesian(64, 64, 64),
        voxel_size=Cartesian(1, 1, 1),
        threshold=0.5,
    )
    put_files(plan.work_path, [("plan.json", plan.to_json().encode())])
    rng = np.random.default_rng(0)
    (work / "edges").mkdir(parents=True, exist_ok=True)
    for index, bbox in plan.tasks():
        other = max(index - 1, 0)
        u = rng.integers(1, fragments + 1, edges, dtype=np.uint64)
        v = rng.integers(1, fragments + 1, edges, dtype=np.uint64)
        near = rng.random(edges) < 0.9
        u |= np.uint64(index << ID_BITS)
        v |= np.where(near, np.uint64(index << ID_BITS), np.uint64(other << ID_BITS))
        keep = u != v
        pairs = np.unique(np.stack([np.minimum(u, v), np.maximum(u, v)], 1)[keep], axis=0)
        count = rng.integers(1, 100, len(pairs))
        with open(work / "edges" / f"{bbox}.npz", "wb") as f:
            np.savez(
                f,
                fragments=np.int64(fragments),
                u=pairs[:, 0],
                v=pairs[:, 1],
                sum=count * rng.random(len(pairs)),
                count=count,
                forced=np.zeros(len(pairs), dtype=bool),
            )
    return plan


def bench_global_step(ctx) -> list[dict]:
    work = ctx.tmp / "synthetic"
    plan = synthetic_job(work)
    seconds, peak = measured(
        [ctx.ours, "-q", "segment-merge", "-o", plan.output_path, "--work-path", plan.work_path],
        ctx.tmp,
    )
    summary = json.loads((work / "merge" / "summary.json").read_text())
    shutil.rmtree(work)
    return [
        dict(
            name="segment-merge 1e7 fragments, 1e8 edges",
            ours_s=seconds,
            detail={"peak_bytes": peak, **summary},
            note=f"peak {peak / MiB:.0f} MiB, {summary['edges']} edges -> "
            f"{summary['objects']} objects",
        )
    ]


def measure(ctx) -> list[dict]:
    """The whole-volume segmentation rows, as keyword dicts for run.Row."""
    return [
        row
        for bench in (
            bench_ideal_agglomeration,
            bench_synthetic_agglomeration,
            bench_margin,
            bench_cc,
            bench_global_step,
        )
        for row in bench(ctx)
    ]


def main() -> int:
    import tempfile
    from types import SimpleNamespace

    with tempfile.TemporaryDirectory(prefix="chunkflow-bench-blockwise-") as tmp:
        ctx = SimpleNamespace(ours=Path(sys.executable).parent / "chunkflow", tmp=Path(tmp))
        benches = [globals()[f"bench_{name}"] for name in sys.argv[1:]] or [measure]
        rows = [row for bench in benches for row in bench(ctx)]
    for row in rows:
        anchor = f"anchor {row['orig_s']:8.3f} s" if row.get("orig_s") else ""
        result = {True: "PASS", False: "FAIL", None: ""}[row.get("passed")]
        print(f"{row['name']:<44} {row['ours_s']:8.3f} s {anchor} {result} {row.get('note', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
