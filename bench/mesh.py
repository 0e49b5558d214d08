"""Meshing benchmark: zmesh meshes of segmentation chunks, ours against the original 1.2.0.

Workloads:

* ply, CLI: a 64x256x256 uint32 segmentation of 100 objects (the nearest of 100 distinct seeded
  random seeds for every voxel, 1..100, with three zero planes, z=32, y=128 and x=64, cutting
  through the cells), voxel size 40x4x4 nm, in /main of an HDF5 file (layer type segmentation),
  meshed into one ply file per object. Ours: `read-h5 ... mesh -t ply -s 100 -e 40`; original:
  `load-h5 ... mesh -t ply -f 100 -e 40`, the original's own defaults (simplification factor
  100, max simplification error 40 nm; ours defaults to -e 8). Both run the same zmesh (1.15):
  the work is marching cubes plus the quadric simplification of every object, one file each.
  Whole CLI commands, start-up and HDF5 read included, interleaved, each into an emptied folder,
  after one untimed warm-up; medians. Target: ours at most 0.5x the original. Checked: 100 ply
  files from each, their vertex and face counts (which differ a little: the original's meshes
  are not voxel-centred, and zmesh's simplifier carries state from one object to the next).
  For the record, an in-process split of our time (cloudfiles import, marching cubes,
  simplification, encoding and writing).
* precomputed, 512^3: the pinky40 segmentation (data/cc3d_pinky40, about 2,500 objects,
  decoded with crackle, written as z,y,x HDF5, layer type segmentation, voxel size 40x32x32) in
  one chunk into a precomputed volume made by `create-info`, with our defaults (-s 100 -e 8).
  Ours only, one run (several minutes on 2 cores): wall time and peak memory (maximum resident
  set size, /usr/bin/time -v). Target: peak below 4 GiB.

Everything here runs in the process of bench/run.py, which turns the returned dicts into rows;
`python bench/mesh.py` runs it standalone and prints the rows.
"""

from __future__ import annotations

import gzip
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from inference import measured  # bench/inference.py: wall time and max RSS of a command

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PINKY = ROOT / "data" / "cc3d_pinky40" / "connectomics.npy.ckl.gz"

SHAPE = (64, 256, 256)
OBJECTS = 100
VOXEL_SIZE = (40, 4, 4)
SIMPLIFICATION = 100  # the original's default --simplification-factor
MAX_ERROR = 40  # the original's default --max-simplification-error (ours: 8)
PINKY_VOXEL_SIZE = (40, 32, 32)
RUNS = 3
RATIO_TARGET = 0.5
GiB = 1 << 30
PEAK_TARGET = 4 * GiB


def synthetic_segmentation() -> np.ndarray:
    """The 64x256x256 uint32 labels: nearest of 100 seeds, three zero planes."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    seeds = np.zeros(SHAPE, dtype=np.uint32)
    flat = rng.choice(seeds.size, OBJECTS, replace=False)
    seeds.flat[flat] = np.arange(1, OBJECTS + 1, dtype=np.uint32)
    nearest = ndimage.distance_transform_edt(
        seeds == 0, return_distances=False, return_indices=True
    )
    seg = seeds[tuple(nearest)]
    seg[32] = 0
    seg[:, 128] = 0
    seg[:, :, 64] = 0
    return seg


def write_segmentation(path: Path, array: np.ndarray, voxel_size) -> None:
    from chunkflow.chunk import Chunk
    from chunkflow.io.h5 import write_h5

    write_h5(Chunk(array, voxel_size=voxel_size, layer_type="segmentation"), str(path))


def ours_command(ctx, h5: Path, out: Path) -> list:
    argv = [ctx.ours, "read-h5", "-f", h5, "-o", "seg", "mesh", "-i", "seg"]
    argv += ["-o", f"file://{out}", "-t", "ply", "--voxel-size", *VOXEL_SIZE]
    return argv + ["-s", SIMPLIFICATION, "-e", MAX_ERROR]


def orig_command(ctx, h5: Path, out: Path) -> list:
    argv = [ctx.orig, "load-h5", "-f", h5, "-l", "segmentation", "mesh"]
    argv += ["-o", f"file://{out}", "-t", "ply", "--voxel-size", *VOXEL_SIZE]
    return argv + ["-f", SIMPLIFICATION, "-e", MAX_ERROR]


def ply_stats(folder: Path) -> dict:
    """Number of ply files under `folder` and their vertices and faces, from the headers."""
    files = vertices = faces = 0
    for path in folder.glob("*.ply"):
        with open(path, "rb") as f:
            head = f.read(512).split(b"end_header")[0].decode()
        files += 1
        vertices += int(re.search(r"element vertex (\d+)", head).group(1))
        faces += int(re.search(r"element face (\d+)", head).group(1))
    return {"files": files, "vertices": vertices, "faces": faces}


def import_seconds(module: str) -> float:
    """Time to import `module` in a fresh interpreter of our venv."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(proc.stdout)


def our_split(h5: Path, out: Path) -> dict:
    """Where our CLI time goes, in-process: meshing (marching cubes, then simplification) and
    writing, as `mesh` does them; plus the cloudfiles import that MeshTarget pays to look for a
    volume info, even under file://."""
    from chunkflow.io.h5 import read_h5
    from chunkflow.mesh.mesh import MeshTarget, mesh_chunk, world_bbox

    seg = read_h5(str(h5))
    start = time.perf_counter()
    mesh_chunk(seg, VOXEL_SIZE, 0, MAX_ERROR)
    unsimplified = time.perf_counter() - start
    start = time.perf_counter()
    meshes = mesh_chunk(seg, VOXEL_SIZE, SIMPLIFICATION, MAX_ERROR)
    meshed = time.perf_counter() - start
    target = MeshTarget(f"file://{out}", "ply", 0, VOXEL_SIZE)
    start = time.perf_counter()
    target.write(meshes, world_bbox(seg, VOXEL_SIZE))
    written = time.perf_counter() - start
    return {
        "cloudfiles_import_s": import_seconds("cloudfiles"),
        "zmesh_import_s": import_seconds("zmesh"),
        "mesh_chunk_s": meshed,
        "marching_cubes_s": unsimplified,
        "simplification_s": meshed - unsimplified,
        "encode_write_s": written,
    }


def fresh(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def bench_ply(ctx) -> list[dict]:
    h5 = ctx.tmp / "mesh-seg.h5"
    write_segmentation(h5, synthetic_segmentation(), VOXEL_SIZE)
    outputs = {"ours": ctx.tmp / "mesh-ours", "orig": ctx.tmp / "mesh-orig"}
    commands = {"ours": ours_command(ctx, h5, outputs["ours"])}
    if ctx.orig:
        commands["orig"] = orig_command(ctx, h5, outputs["orig"])
    runs = {name: [] for name in commands}
    peaks = {name: [] for name in commands}
    for i in range(RUNS + 1):  # the first round is an untimed warm-up
        for name, argv in commands.items():
            fresh(outputs[name])
            wall, peak = measured(argv, ctx.tmp)
            if i:
                runs[name].append(wall)
                peaks[name].append(peak)
    stats = {name: ply_stats(outputs[name]) for name in commands}
    split = our_split(h5, ctx.tmp / "mesh-split")
    fresh(ctx.tmp / "mesh-split")

    ours = statistics.median(runs["ours"])
    orig = statistics.median(runs["orig"]) if ctx.orig else None
    complete = all(s["files"] == OBJECTS for s in stats.values())
    note = "ply files " + ", ".join(
        f"{name} {s['files']} ({s['vertices'] / 1e3:.0f}k vertices)" for name, s in stats.items()
    )
    note += f"; -s {SIMPLIFICATION} -e {MAX_ERROR}"
    return [
        {
            "name": f"mesh to ply, CLI ({'x'.join(map(str, SHAPE))}, {OBJECTS} ids)",
            "ours_s": ours,
            "orig_s": orig,
            "target": f"ratio <= {RATIO_TARGET}",
            "passed": None if orig is None else complete and ours / orig <= RATIO_TARGET,
            "note": note,
            "detail": {
                "runs_s": runs["ours"],
                "orig_runs_s": runs.get("orig"),
                "peak_rss_bytes": max(peaks["ours"]),
                "orig_peak_rss_bytes": max(peaks["orig"]) if ctx.orig else None,
                "ply": stats,
                "simplification_factor": SIMPLIFICATION,
                "max_simplification_error_nm": MAX_ERROR,
                "ours_split_in_process": split,
            },
        },
        {
            "name": "  ours in-process: simplification",
            "ours_s": split["simplification_s"],
            "note": (
                f"of mesh_chunk {split['mesh_chunk_s']:.2f} s; marching cubes "
                f"{split['marching_cubes_s']:.2f} s, encode+write {split['encode_write_s']:.2f} s"
                f", cloudfiles import {split['cloudfiles_import_s']:.2f} s"
            ),
            "detail": split,
        },
    ]


def bench_pinky(ctx) -> list[dict]:
    import crackle
    import fastremap

    name = "mesh pinky40 512^3 precomputed, ours"
    if not PINKY.exists():
        return [{"name": name, "ours_s": None, "note": f"no data: {PINKY.relative_to(ROOT)}"}]
    h5 = ctx.tmp / "mesh-pinky40.h5"
    with gzip.open(PINKY) as f:
        labels = crackle.decompress(f.read())  # (x, y, z), Fortran order
    write_segmentation(h5, np.ascontiguousarray(labels.T), PINKY_VOXEL_SIZE)
    objects = int(np.count_nonzero(fastremap.unique(labels)))
    del labels
    volume = ctx.tmp / "mesh-pinky40" / "seg"
    fresh(volume.parent)
    create = [ctx.ours, "create-info", "-v", f"file://{volume}", "-t", "segmentation"]
    create += ["-d", "uint32", "-z", 512, 512, 512, "-s", *PINKY_VOXEL_SIZE]
    measured(create, ctx.tmp)
    argv = [ctx.ours, "read-h5", "-f", h5, "-o", "seg", "mesh", "-i", "seg"]
    wall, peak = measured(argv + ["-o", f"file://{volume}"], ctx.tmp)
    fragments = [p for p in (volume / "mesh").iterdir() if p.name != "info"]
    size = sum(p.stat().st_size for p in fragments)
    fresh(volume.parent)
    h5.unlink()
    return [
        {
            "name": name,
            "ours_s": wall,
            "target": "peak < 4 GiB",
            "passed": peak < PEAK_TARGET and len(fragments) == objects,
            "note": (
                f"peak {peak / GiB:.2f} GiB; {len(fragments)} fragments of {objects} objects, "
                f"{size / 2**20:.0f} MiB"
            ),
            "detail": {
                "peak_rss_bytes": peak,
                "fragments": len(fragments),
                "objects": objects,
                "fragment_bytes": size,
            },
        }
    ]


def measure(ctx) -> list[dict]:
    """The meshing rows, as keyword dicts for run.Row."""
    return bench_ply(ctx) + bench_pinky(ctx)


def main() -> int:
    import tempfile
    from types import SimpleNamespace

    orig = BENCH / ".venv-orig" / "bin" / "chunkflow"
    with tempfile.TemporaryDirectory(prefix="chunkflow-bench-mesh-") as tmp:
        ctx = SimpleNamespace(
            ours=Path(sys.executable).parent / "chunkflow",
            orig=orig if orig.exists() else None,
            tmp=Path(tmp),
        )
        rows = measure(ctx)
    for row in rows:
        ratio = row["ours_s"] / row["orig_s"] if row.get("ours_s") and row.get("orig_s") else None
        result = {True: "PASS", False: "FAIL", None: ""}[row.get("passed")]
        print(
            f"{row['name']:<40} ours {row['ours_s'] or 0:7.3f} s  "
            f"orig {row.get('orig_s') or 0:7.3f} s  ratio {ratio or 0:.3f}  "
            f"{row.get('target', '')} {result}  {row.get('note', '')}"
        )
        print(f"    {row.get('detail')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
