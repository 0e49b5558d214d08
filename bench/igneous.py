"""igneous-pipeline as an anchor: downsampling, meshing and skeletonizing on the same volumes.

igneous-pipeline (https://github.com/seung-lab/igneous, 4.37.0 in its own venv bench/.venv-igneous,
made by igneous_ccl.ensure_igneous) is what users run instead of chunkflow for these jobs. Each
row runs, on one volume, our whole CLI pipeline and igneous's (`igneous -p 1 ...` without
--queue: its tasks run in that process through taskqueue's LocalTaskQueue(parallel=1), one
process per step as a user runs them), each into its own fresh copy of the source volume (both
tools write into the volume they read: scales, mesh and skeleton dirs). The tools take turns;
the first round is an untimed warm-up (on a smaller crop for meshes and skeletons), then each
figure is the median of RUNS runs of the whole pipeline (all its steps, process start-up
included). Same task shape for both; the outputs of the last run are compared. Target on every
timed row: ours at most 1.0x igneous.

* image downsample: a 512x1024x1024 uint8 image (uniform, seeded), 64^3 blocks, raw, voxel size
  40 8 8, to mips 1-3 (factor 1 2 2, z y x). igneous `image downsample --num-mips 3 --compress
  none` (its memory target gives tasks of 64x1024x1024, z y x, as its provenance records); ours
  `generate-tasks -c 64 1024 1024 cutout downsample-upload --start-mip 1 --stop-mip 4` (file://
  writes are uncompressed by default). Both average with tinybrain; compared voxel by voxel.
* segmentation downsample: the 512^3 pinky40 segmentation (data/cc3d_pinky40, uint32, 64^3
  blocks, voxel size 40 32 32), the same way (tasks of 64x512x512). Mode pooling in both with
  the same rule (tinybrain's COUNTLESS, chunkflow/image/downsample.py), so every mip must be
  identical voxel for voxel.
* mesh, multi-resolution sharded: a 256^3 crop of pinky40 (the corner 0:256 in z, y, x) in 8
  tasks of 128^3 (each read with one voxel of overlap, as both tools mesh). igneous `mesh forge
  --shape 128,128,128 --sharded --open-edge` + `mesh merge-sharded --nlod 2 --min-chunk-size
  1,1,1`; ours `generate-tasks -c 129 129 129 --stride 128 128 128 --respect-stop cutout
  --fill-missing mesh --format multires` + `mesh-merge-sharded`. Both: zmesh, simplification
  factor 100, max error 40 nm, up to three levels of detail (ours the default -l 3 -f 4;
  igneous's default --nlod 1 with 256^3 minimum cells would give one level to objects this
  small), draco level 7, 16 vertex quantization bits. --open-edge: igneous closes meshes at the
  volume's low faces by default, ours does not; it still reads one voxel past the high faces
  (zeros), so its meshes there are closed and simplify further (fewer vertices than ours, e.g.
  215k against 264k in the legacy row, with the same objects and fragment files). Checked with
  cloud-volume in our venv: objects, levels of detail and draco fragments from the manifests,
  and every object's lod-0 mesh read back (total vertices; ours are also cut into the lod-0
  octree cells, which adds vertices along the cuts).
  Each tool runs as it does by default: igneous -p 1 runs its tasks one after the other in one
  process, ours too, but simplifies each task's meshes in up to 2 forked processes (its
  default on 2 or more cores), so on a busy machine its lead shrinks.
* mesh, legacy unsharded: the same volume and tasks; igneous `mesh forge --compress none
  --open-edge` + `mesh merge` (manifests); ours `mesh` + `mesh-manifest`. Checked: objects,
  fragment files, and every object read back with cloud-volume (total vertices).
* mesh files: files and bytes in the mesh dir after each of the two pipelines above (sharded:
  the fragment files of the first phase stay beside the shards in both tools). The segmentation
  itself, unsharded against sharded, is measured by bench/sharding.py at 512^3; meshes of the
  whole 512^3 volume take minutes per run on 2 cores, too long to repeat here.
* skeletons: a 128x256x256 crop (z, y, x) of pinky40 in 4 tasks of 128^3, kimimaro with the same
  parameters in both (ours by default: scale 1.5, const 300 nm, soma detection 750, acceptance
  3500, invalidation scale 2, const 300; dust threshold 1000 voxels, fix_branching,
  fix_borders): igneous `skeleton forge` with those + `skeleton merge` (min cable length 1000
  nm), ours `skeletonize` + `skeleton-merge -d 1000`. Compared: skeletons, total cable length
  and vertices read back with cloud-volume (igneous also writes an empty skeleton for an object
  that is all dust after the merge; ours writes no file for it). Both spend nearly all their
  time in kimimaro's TEASAR tracing (the same versions of kimimaro, dijkstra3d and edt).

The module is called igneous.py as the other bench modules are named after what they measure;
no process that has bench/ on its path imports the real igneous (igneous runs as its own
`bin/igneous`, the ccl driver with `python -I`).

`python bench/igneous.py [downsample|mesh|skeleton ...]` runs it standalone (all by default).
"""

from __future__ import annotations

import re
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
from blockwise import pinky40, write_volume  # bench/blockwise.py: the pinky40 labels, volumes
from inference import measured  # bench/inference.py: wall time and max RSS of a command

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
IGNEOUS = BENCH / ".venv-igneous" / "bin" / "igneous"
RUNS = 3
TARGET = 1.0
MiB = 1 << 20
VOL = "{vol}"  # in a command: the file:// url of the tool's own copy of the volume

IMAGE_SHAPE = (512, 1024, 1024)
IMAGE_VOXEL = (40, 8, 8)
SEG_VOXEL = (40, 32, 32)
BLOCK = (64, 64, 64)
NUM_MIPS = 3
MESH_SHAPE = (256, 256, 256)
SKEL_SHAPE = (128, 256, 256)
WARMUP_SHAPE = (128, 128, 128)
TASK = 128
MAX_ERROR = 40  # nm: igneous's default; ours defaults to 8
SIMPLIFICATION = 100
# kimimaro parameters: ours by default, given to igneous explicitly (its defaults differ)
SKELETON_DUST = 1000  # voxels per task (both default to it)
MIN_CABLE = 1000  # nm: igneous skeleton merge's default --min-cable-length


def dims(shape) -> str:
    if len(set(shape)) == 1:
        return f"{shape[0]}^{len(shape)}"
    return "x".join(map(str, shape))


def race(ctx, key: str, pipelines: dict, source: Path, warmup: Path | None = None) -> dict:
    """Run each tool's pipeline (a list of (step, argv)) on its own fresh copy of `source`.

    Tools take turns; round 0 is an untimed warm-up (on `warmup` when given), then RUNS timed
    rounds. Returns {tool: {"seconds": median total, "runs_s", "steps_s" (medians),
    "peak_bytes", "path" (the copy of the last run)}}.
    """
    results = {tool: {"runs_s": [], "steps": {}, "peak_bytes": 0} for tool in pipelines}
    for round_ in range(RUNS + 1):
        for tool, steps in pipelines.items():
            path = ctx.tmp / f"{key}-{tool}"
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(warmup if round_ == 0 and warmup else source, path)
            total = 0.0
            for step, argv in steps:
                argv = [str(a).replace(VOL, f"file://{path}") for a in argv]
                seconds, peak = measured(argv, ctx.tmp)
                if round_:
                    results[tool]["steps"].setdefault(step, []).append(seconds)
                    results[tool]["peak_bytes"] = max(results[tool]["peak_bytes"], peak)
                total += seconds
            if round_:
                results[tool]["runs_s"].append(total)
            results[tool]["path"] = path
    for res in results.values():
        res["seconds"] = statistics.median(res["runs_s"])
        res["steps_s"] = {step: statistics.median(ts) for step, ts in res.pop("steps").items()}
    return results


def row(name: str, res: dict, passed_check: bool, note: str, detail: dict) -> dict:
    ours, theirs = res["ours"]["seconds"], res["igneous"]["seconds"]
    for tool in ("ours", "igneous"):
        detail[tool] = {k: v for k, v in res[tool].items() if k != "path"}
    detail["anchor"] = "igneous-pipeline 4.37.0"
    return dict(
        name=name,
        ours_s=ours,
        orig_s=theirs,
        target=f"ratio <= {TARGET}",
        passed=ours / theirs <= TARGET and passed_check,
        note=note,
        detail=detail,
    )


def cutout_chain(ctx, chunk, stride=None) -> list:
    argv = [ctx.ours, "-q", "generate-tasks", "-v", VOL, "-c", *chunk]
    if stride:
        argv += ["--stride", *stride, "--respect-stop"]
    return argv + ["cutout", "-v", VOL, "--fill-missing"]


# downsampling --------------------------------------------------------------------------------
def read_mip(url: str, mip: int) -> np.ndarray:
    from cloudvolume import CloudVolume

    cv = CloudVolume(url, mip=mip, parallel=1, progress=False)
    return np.ascontiguousarray(np.asarray(cv[:, :, :])[..., 0].T)  # z, y, x


def igneous_task_shape(path: Path) -> list | None:
    """The task shape (z, y, x) igneous recorded in the volume's provenance."""
    import json

    steps = json.loads((path / "provenance").read_text()).get("processing", [])
    shapes = [s["method"]["shape"] for s in steps if s["method"].get("task") == "DownsampleTask"]
    return shapes[-1][::-1] if shapes else None


def downsample_row(ctx, name: str, source: Path, task, segmentation: bool) -> dict:
    ours = cutout_chain(ctx, task)[:-1]  # whole tasks, aligned: no --fill-missing needed
    ours += ["downsample-upload", "-v", VOL, "--start-mip", 1, "--stop-mip", NUM_MIPS + 1]
    theirs = [IGNEOUS, "-p", 1, "image", "downsample", VOL, "--num-mips", NUM_MIPS]
    theirs += ["--compress", "none"]
    key = "ds-seg" if segmentation else "ds-img"
    res = race(ctx, key, {"ours": [("downsample", ours)], "igneous": [("downsample", theirs)]},
               source)  # fmt: skip
    a, b = (f"file://{res[tool]['path']}" for tool in ("ours", "igneous"))
    mips, ok = {}, True
    for mip in range(1, NUM_MIPS + 1):
        x, y = read_mip(a, mip), read_mip(b, mip)
        if x.shape != y.shape:
            mips[mip] = {"shapes": [x.shape, y.shape]}
            ok = False
            continue
        differ = x != y
        mips[mip] = {
            "differing_fraction": float(differ.mean()),
            "max_abs_diff": None
            if segmentation
            else int(np.abs(x.astype(np.int64) - y.astype(np.int64)).max()),
        }
        ok &= not differ.any()
    shape = igneous_task_shape(res["igneous"]["path"])
    ok &= shape is None or list(shape[:1]) == [task[0]]
    same = all(m.get("differing_fraction") == 0 for m in mips.values())
    note = f"mips 1-{NUM_MIPS} " + (
        "identical"
        if same
        else "differ: " + ", ".join(f"{m.get('differing_fraction', 1):.2%}" for m in mips.values())
    )
    detail = {"mips": mips, "task_shape_zyx": list(task), "igneous_task_shape_xyz": shape}
    return row(name, res, ok, note, detail)


def bench_downsample(ctx) -> list[dict]:
    image = np.random.default_rng(0).integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
    source = ctx.tmp / "igneous-image"
    write_volume(source, image, "image", BLOCK, IMAGE_VOXEL)
    del image
    rows = [
        downsample_row(
            ctx,
            f"image downsample vs igneous ({IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}^2)",
            source,
            (64, IMAGE_SHAPE[1], IMAGE_SHAPE[2]),
            False,
        )
    ]
    shutil.rmtree(source)
    seg = pinky40()
    source = ctx.tmp / "igneous-pinky"
    write_volume(source, np.ascontiguousarray(seg), "segmentation", BLOCK, SEG_VOXEL)
    rows.append(
        downsample_row(
            ctx, "seg. downsample vs igneous (512^3 u32)", source, (64, *seg.shape[1:]), True
        )
    )
    shutil.rmtree(source)
    return rows


# meshes and skeletons --------------------------------------------------------------------------
def crops(ctx, shape) -> tuple[Path, Path]:
    """The pinky40 corner of `shape` and a smaller one for the warm-up, as volumes."""
    seg = pinky40()
    paths = []
    for name, size in (("crop", shape), ("warmup", WARMUP_SHAPE)):
        path = ctx.tmp / f"igneous-{name}-{dims(size)}"
        if not path.exists():
            part = np.ascontiguousarray(seg[: size[0], : size[1], : size[2]])
            write_volume(path, part, "segmentation", BLOCK, SEG_VOXEL)
        paths.append(path)
    return paths[0], paths[1]


def mesh_dir(path: Path) -> Path:
    import json

    return path / json.loads((path / "info").read_text()).get("mesh", "mesh")


def files_and_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def sharded_stats(path: Path) -> dict:
    from cloudvolume import CloudVolume

    cv = CloudVolume(f"file://{path}", progress=False)
    folder = mesh_dir(path)
    labels = []
    for shard in sorted(folder.glob("*.shard")):
        labels += [int(v) for v in cv.mesh.reader.list_labels(shard.name, path=folder.name)]
    lods, fragments = [], 0
    for label in labels:
        manifest = cv.mesh.get_manifest(label)
        lods.append(int(manifest.num_lods))
        fragments += int(np.sum(manifest.num_fragments_per_lod))
    meshes = cv.mesh.get(labels, lod=0) if labels else {}
    return {
        "objects": len(labels),
        "read_back": len(meshes),
        "lods_per_object": dict(zip(*map(list, np.unique(lods, return_counts=True)))),
        "draco_fragments": fragments,
        "lod0_vertices": int(sum(len(m.vertices) for m in meshes.values())),
        "lod0_faces": int(sum(len(m.faces) for m in meshes.values())),
    }


def legacy_stats(path: Path) -> dict:
    from cloudvolume import CloudVolume

    cv = CloudVolume(f"file://{path}", progress=False)
    names = [p.name.removesuffix(".gz") for p in mesh_dir(path).iterdir()]
    labels = [int(n[:-2]) for n in names if re.fullmatch(r"\d+:0", n)]
    fragments = sum(1 for n in names if re.fullmatch(r"\d+:0:.+", n))
    meshes = cv.mesh.get(labels, fuse=False) if labels else {}
    return {
        "objects": len(labels),
        "read_back": len(meshes),
        "fragment_files": fragments,
        "vertices": int(sum(len(m.vertices) for m in meshes.values())),
        "faces": int(sum(len(m.faces) for m in meshes.values())),
    }


def bench_mesh(ctx) -> list[dict]:
    source, warmup = crops(ctx, MESH_SHAPE)
    chunk, stride = (TASK + 1,) * 3, (TASK,) * 3
    mesh_opts = ["-s", SIMPLIFICATION, "-e", MAX_ERROR]
    forge = [IGNEOUS, "-p", 1, "mesh", "forge", VOL, "--shape", f"{TASK},{TASK},{TASK}"]
    forge += ["--max-error", MAX_ERROR, "--open-edge"]
    sharded = {
        "ours": [
            ("mesh", [*cutout_chain(ctx, chunk, stride), "mesh", "-o", VOL, "-t", "multires",
                      *mesh_opts]),
            ("merge", [ctx.ours, "-q", "mesh-merge-sharded", "-v", VOL]),
        ],
        "igneous": [
            ("forge", [*forge, "--sharded"]),
            ("merge", [IGNEOUS, "-p", 1, "mesh", "merge-sharded", VOL, "--nlod", 2,
                       "--min-chunk-size", "1,1,1"]),
        ],
    }  # fmt: skip
    legacy = {
        "ours": [
            ("mesh", [*cutout_chain(ctx, chunk, stride), "mesh", "-o", VOL, *mesh_opts]),
            ("manifest", [ctx.ours, "-q", "mesh-manifest", "-v", VOL]),
        ],
        "igneous": [
            ("forge", [*forge, "--compress", "none"]),
            ("merge", [IGNEOUS, "-p", 1, "mesh", "merge", VOL]),
        ],
    }
    rows, files = [], {}
    for label, pipelines, stats in (
        ("multires sharded", sharded, sharded_stats),
        ("legacy unsharded", legacy, legacy_stats),
    ):
        res = race(ctx, f"mesh-{label.split()[0]}", pipelines, source, warmup)
        got = {tool: stats(res[tool]["path"]) for tool in res}
        for tool in res:
            files[(label, tool)] = files_and_bytes(mesh_dir(res[tool]["path"]))
            shutil.rmtree(res[tool]["path"])
        ok = all(g["objects"] > 0 and g["read_back"] == g["objects"] for g in got.values())
        if label.startswith("multires"):
            note = ", ".join(
                f"{tool} {g['objects']} objects, {g['draco_fragments']} fragments, "
                f"{g['lod0_vertices'] / 1e3:.0f}k lod-0 vertices"
                for tool, g in got.items()
            )
        else:
            note = ", ".join(
                f"{tool} {g['objects']} objects, {g['fragment_files']} fragments, "
                f"{g['vertices'] / 1e3:.0f}k vertices"
                for tool, g in got.items()
            )
        detail = {"outputs": got, "volume_zyx": MESH_SHAPE, "task": TASK, "tasks": 8}
        detail["steps"] = {tool: res[tool]["steps_s"] for tool in res}
        rows.append(row(f"mesh {label} vs igneous ({dims(MESH_SHAPE)})", res, ok, note, detail))
    rows.append(
        dict(
            name=f"  mesh files {dims(MESH_SHAPE)}: legacy, sharded",
            ours_s=None,
            note="; ".join(
                f"{tool} {files[('legacy unsharded', tool)][0]} files "
                f"{files[('legacy unsharded', tool)][1] / MiB:.1f} MiB, "
                f"{files[('multires sharded', tool)][0]} files "
                f"{files[('multires sharded', tool)][1] / MiB:.1f} MiB"
                for tool in ("ours", "igneous")
            ),
            detail={
                f"{label}, {tool}": {"files": n, "bytes": b}
                for (label, tool), (n, b) in files.items()
            },
        )
    )
    return rows


def skeleton_stats(path: Path) -> dict:
    from cloudvolume import CloudVolume

    cv = CloudVolume(f"file://{path}", progress=False)
    folder = path / cv.skeleton.meta.skeleton_path
    names = [p.name.removesuffix(".gz") for p in folder.iterdir()]
    labels = sorted(int(n) for n in names if n.isdigit())
    skeletons = cv.skeleton.get(labels) if labels else []
    return {
        "skeletons": len(labels),
        "read_back": len(skeletons),
        "empty": sum(1 for s in skeletons if len(s.vertices) == 0),
        "fragments": sum(1 for n in names if re.fullmatch(r"\d+:.+", n)),
        "cable_length_nm": float(sum(s.cable_length() for s in skeletons)),
        "vertices": int(sum(len(s.vertices) for s in skeletons)),
    }


def bench_skeleton(ctx) -> list[dict]:
    source, warmup = crops(ctx, SKEL_SHAPE)
    chunk, stride = (TASK + 1,) * 3, (TASK,) * 3
    pipelines = {
        "ours": [
            ("skeletonize", [*cutout_chain(ctx, chunk, stride), "skeletonize", "-o", VOL]),
            ("merge", [ctx.ours, "-q", "skeleton-merge", "-v", VOL, "-d", MIN_CABLE]),
        ],
        "igneous": [
            ("forge", [IGNEOUS, "-p", 1, "skeleton", "forge", VOL,
                       "--shape", f"{TASK},{TASK},{TASK}", "--dust-threshold", SKELETON_DUST,
                       "--scale", 1.5, "--const", 300, "--soma-detect", 750,
                       "--soma-accept", 3500, "--soma-scale", 2, "--soma-const", 300]),
            ("merge", [IGNEOUS, "-p", 1, "skeleton", "merge", VOL,
                       "--min-cable-length", MIN_CABLE]),
        ],
    }  # fmt: skip
    res = race(ctx, "skeleton", pipelines, source, warmup)
    got = {tool: skeleton_stats(res[tool]["path"]) for tool in res}
    ok = all(g["skeletons"] > 0 and g["read_back"] == g["skeletons"] for g in got.values())
    note = ", ".join(
        f"{tool} {g['skeletons'] - g['empty']} skeletons"
        + (f" (+{g['empty']} empty files)" if g["empty"] else "")
        + f", {g['cable_length_nm'] / 1e6:.3f} mm, {g['vertices']} vertices"
        for tool, g in got.items()
    )
    detail = {"outputs": got, "volume_zyx": SKEL_SHAPE, "task": TASK, "tasks": 4}
    detail["steps"] = {tool: res[tool]["steps_s"] for tool in res}
    for tool in res:
        shutil.rmtree(res[tool]["path"])
    return [row(f"skeletons vs igneous ({dims(SKEL_SHAPE)})", res, ok, note, detail)]


def measure(ctx) -> list[dict]:
    """The rows, as keyword dicts for run.Row (one saying so when igneous is not available)."""
    from igneous_ccl import ensure_igneous  # bench/igneous_ccl.py: installs the venv

    if ensure_igneous() is None:
        return [dict(name="igneous anchor", ours_s=None, note="igneous-pipeline not available")]
    return bench_downsample(ctx) + bench_mesh(ctx) + bench_skeleton(ctx)


def main() -> int:
    import tempfile
    from types import SimpleNamespace

    from igneous_ccl import ensure_igneous

    if ensure_igneous() is None:
        return 1
    with tempfile.TemporaryDirectory(prefix="chunkflow-bench-igneous-") as tmp:
        ctx = SimpleNamespace(ours=Path(sys.executable).parent / "chunkflow", tmp=Path(tmp))
        benches = [globals()[f"bench_{name}"] for name in sys.argv[1:]] or [
            bench_downsample,
            bench_mesh,
            bench_skeleton,
        ]
        rows = [r for bench in benches for r in bench(ctx)]
    for r in rows:
        ratio = f"{r['ours_s'] / r['orig_s']:.2f}x" if r.get("orig_s") else ""
        times = f"ours {r['ours_s']:7.2f} s igneous {r['orig_s']:7.2f} s" if r.get("orig_s") else ""
        result = {True: "PASS", False: "FAIL", None: ""}[r.get("passed")]
        print(f"{r['name']:<44} {times} {ratio} {result}  {r.get('note', '')}")
        steps = r.get("detail", {}).get("steps")
        if steps:
            print(f"    steps (s): {steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
