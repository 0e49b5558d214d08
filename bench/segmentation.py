"""Segmentation benchmarks: connected components, agglomeration, downsample-upload.

Each whole CLI command, start-up and HDF5 read included, runs side by side with the original
chunkflow 1.2.0, interleaved after one untimed warm-up run per tool that also writes the output
for the checks; each figure is a median of CLI_RUNS runs.

* connected components: a 64x512x512 float32 probability map, seeded smoothed Gaussian noise
  (sigma 1, 3, 3 voxels in z, y, x), standardized to z and mapped to sigmoid(3 (z - 1)), so that
  about 16 % of the voxels are above 0.5, in a few thousand separate blobs. Threshold 0.5,
  connectivity 6. Ours `read-h5 ... connected-components -t 0.5 --connectivity 6`, the original
  `load-h5 ... connected-components -t 0.5 -c 6`. Target: ours at most 0.5x the original, with
  the same labels. For information: our in-process labels.connected_components, without start-up
  and read.
* agglomerate: a 3x64x256x256 float32 affinity map from a smoothed random boundary map b in
  [0, 1] (membranes b = exp(-(z / 0.5)^2) on the zero crossings of standardized smoothed noise z),
  aff_c[p] = 1 - (b[p] + b[p - e_c]) / 2, channels z, y, x, the first slice along each axis 0.
  Ours `agglomerate --threshold 0.7 --aff-threshold-low 0.001 --aff-threshold-high 0.9999`; the
  original has no agglomerate operator, its users run the waterz plugin of its repository
  (chunkflow/plugins/agglomerate.py, not in the wheel; waterz is installed into bench/.venv-orig
  when missing) with `plugin -f agglomerate.py`: the same waterz call with the same defaults
  (threshold 0.7, 0.001, 0.9999, mean affinity), after flipping the channels, as its model
  outputs x, y, z. The original therefore reads a copy of the map with the channels reversed, so
  that waterz gets the same array from both. Target: ours at most 0.7x the original, with the
  same segmentation (identical, and VOI between the two). For information: our in-process
  agglomerate against the bare waterz call on the same array.
* downsample-upload: a 64x1024x1024 uint8 image (uniform, seeded) to mips 1-4 (factor 1 2 2) of a
  local precomputed volume, 64^3 blocks, raw, made afresh before each run: ours by our
  create-info (downsample-upload adds the scales), the original's by cloudvolume, as its
  create-info drops --max-mip. Time and peak memory (/usr/bin/time -v) of ours and of the
  original; no target. The mips of both are checked against the exact block means (rounded).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from inference import measured  # bench/inference.py: wall time and max RSS of a command

SEED = 0
CC_SHAPE = (64, 512, 512)
AFF_SHAPE = (64, 256, 256)
DS_SHAPE = (64, 1024, 1024)
DS_FACTOR = (1, 2, 2)
DS_MIPS = (1, 5)  # start, stop (exclusive)
BLOCK = (64, 64, 64)
CLI_RUNS = 3
LIB_RUNS = 3
CC_TARGET = 0.5
AGG_TARGET = 0.7
THRESHOLD = 0.7
AFF_LOW = 0.001
AFF_HIGH = 0.9999
MiB = 1 << 20

# the original's waterz plugin, as its repository has it (chunkflow/plugins/agglomerate.py)
ORIG_PLUGIN = """\
import numpy as np
import waterz

from chunkflow.chunk import Chunk


def execute(affs, fragments=None, threshold=0.7, aff_threshold_low=0.001,
            aff_threshold_high=0.9999,
            scoring_function="OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>",
            flip_channel=True):
    properties = affs.properties
    if flip_channel:  # the plugin takes channels x, y, z; waterz wants z, y, x
        affs = np.flip(affs, axis=0)
    affs = np.ascontiguousarray(affs, dtype=np.float32)
    segs = waterz.agglomerate(
        affs, [threshold], fragments=fragments, aff_threshold_low=aff_threshold_low,
        aff_threshold_high=aff_threshold_high, scoring_function=scoring_function,
        force_rebuild=False)
    seg = Chunk(next(segs))
    seg.set_properties(properties)
    return [seg]
"""


def dims(shape: tuple) -> str:
    return "x".join(map(str, shape))


def smoothed_noise(shape: tuple, seed: int) -> np.ndarray:
    """Standardized Gaussian noise smoothed by sigma 1, 3, 3 (z, y, x): mean 0, std 1."""
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    z = gaussian_filter(noise, sigma=(1, 3, 3))
    z -= z.mean()
    z /= z.std()
    return z


def probability_map(shape: tuple) -> np.ndarray:
    z = smoothed_noise(shape, SEED)
    return (1 / (1 + np.exp(-3 * (z - 1)))).astype(np.float32)


def affinity_map(shape: tuple) -> np.ndarray:
    """(3, z, y, x), channels z, y, x: aff_c[p] = 1 - (b[p] + b[p - e_c]) / 2, 0 on the border."""
    b = np.exp(-((smoothed_noise(shape, SEED + 1) / 0.5) ** 2)).astype(np.float32)
    affs = np.zeros((3, *shape), np.float32)
    affs[0, 1:] = 1 - (b[1:] + b[:-1]) / 2
    affs[1, :, 1:] = 1 - (b[:, 1:] + b[:, :-1]) / 2
    affs[2, :, :, 1:] = 1 - (b[:, :, 1:] + b[:, :, :-1]) / 2
    return affs


def write(path: Path, array: np.ndarray) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("main", data=array)
    return path


def read(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        return f["main"][()]


def ensure_waterz(orig: Path) -> str | None:
    """Install waterz into the original's venv when missing; None when it is there, else why not."""
    python = orig.parent / "python"
    if subprocess.run([python, "-c", "import waterz"], capture_output=True).returncode == 0:
        return None
    print("installing waterz into the original's venv (once) ...", flush=True)
    proc = subprocess.run(
        [orig.parent / "pip", "install", "-q", "waterz"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"pip exited {proc.returncode}"
    return None


def waterz_version(orig: Path) -> str:
    python = orig.parent / "python"
    argv = [python, "-c", "import waterz; print(waterz.__version__)"]
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def side_by_side(commands: dict, warmups: dict, cwd: Path, before=None) -> dict:
    """Untimed warm-up commands first, then the commands in turns: (times, peak RSS) by name."""
    for argv in warmups.values():
        measured(argv, cwd)
    runs = {name: ([], []) for name in commands}
    for _ in range(CLI_RUNS):
        for name, argv in commands.items():
            if before:
                before(name)
            wall, peak = measured(argv, cwd)
            runs[name][0].append(wall)
            runs[name][1].append(peak)
    return runs


def run_detail(runs: dict) -> dict:
    """The wall times and peak RSS of every run of side_by_side, ours and the original's (None
    where it did not run), as a row's detail lists them."""
    orig = runs.get("orig")
    return {
        "runs_s": runs["ours"][0],
        "orig_runs_s": orig[0] if orig else None,
        "peak_rss_bytes": runs["ours"][1],
        "orig_peak_rss_bytes": orig[1] if orig else None,
    }


def median(runs: dict, name: str) -> float | None:
    return statistics.median(runs[name][0]) if name in runs else None


def best_of(fn, runs: int = LIB_RUNS) -> tuple[float, list]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


@contextmanager
def stdout_to_devnull():
    """The bare waterz call prints its progress; drop it, at the cost of one dup2."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def bench_connected_components(ctx) -> list[dict]:
    from chunkflow.io.h5 import read_h5
    from chunkflow.segmentation.labels import connected_components

    src = write(ctx.tmp / "cc-prob.h5", probability_map(CC_SHAPE))
    out = {"ours": ctx.tmp / "cc-ours.h5", "orig": ctx.tmp / "cc-orig.h5"}
    ours = [ctx.ours, "read-h5", "-f", src, "-o", "p"]
    ours += ["connected-components", "-i", "p", "-o", "seg", "-t", 0.5, "--connectivity", 6]
    commands = {"ours": ours}
    warmups = {"ours": [*ours, "write-h5", "-i", "seg", "-f", out["ours"]]}
    if ctx.orig:
        orig = [ctx.orig, "load-h5", "-f", src, "connected-components", "-t", 0.5, "-c", 6]
        commands["orig"] = orig
        warmups["orig"] = [*orig, "save-h5", "-f", out["orig"]]
    runs = side_by_side(commands, warmups, ctx.tmp)

    labels = {name: read(path) for name, path in out.items() if name in commands}
    count = {name: int(array.max()) for name, array in labels.items()}
    same = np.array_equal(labels["ours"], labels["orig"]) if ctx.orig else None
    del labels
    chunk = read_h5(str(src))
    lib, lib_runs = best_of(lambda: connected_components(chunk, threshold=0.5, connectivity=6))

    t_ours, t_orig = median(runs, "ours"), median(runs, "orig")
    passed = None
    if t_orig:
        passed = t_ours / t_orig <= CC_TARGET and count["ours"] == count["orig"]
    note = f"{count['ours']} components"
    if ctx.orig:
        note += f", original {count['orig']}" + ("; labels identical" if same else "")
    return [
        {
            "name": f"connected components, CLI ({dims(CC_SHAPE)})",
            "ours_s": t_ours,
            "orig_s": t_orig,
            "target": f"ratio <= {CC_TARGET}",
            "passed": passed,
            "note": note,
            "detail": {
                **run_detail(runs),
                "components": count["ours"],
                "orig_components": count.get("orig"),
                "labels_identical": same,
                "foreground_fraction": float((chunk.array > 0.5).mean()),
            },
        },
        {
            "name": "  ours in-process connected_components",
            "ours_s": lib,
            "note": "threshold + cc3d + uint32, no start-up or read",
            "detail": {"runs_s": lib_runs},
        },
    ]


def bench_agglomerate(ctx) -> list[dict]:
    import waterz

    from chunkflow.chunk import Chunk
    from chunkflow.segmentation.agglomerate import MEAN_AFFINITY, agglomerate
    from chunkflow.segmentation.evaluate import evaluate_segmentation

    affs = affinity_map(AFF_SHAPE)
    src = write(ctx.tmp / "agg-affs.h5", affs)
    out = {"ours": ctx.tmp / "agg-ours.h5", "orig": ctx.tmp / "agg-orig.h5"}
    ours = [ctx.ours, "read-h5", "-f", src, "-o", "affs", "agglomerate", "-i", "affs", "-o", "seg"]
    ours += ["--threshold", THRESHOLD, "--aff-threshold-low", AFF_LOW]
    ours += ["--aff-threshold-high", AFF_HIGH]
    commands = {"ours": ours}
    warmups = {"ours": [*ours, "write-h5", "-i", "seg", "-f", out["ours"]]}
    skipped = ensure_waterz(ctx.orig) if ctx.orig else None
    if ctx.orig and not skipped:
        flipped = write(ctx.tmp / "agg-affs-xyz.h5", affs[::-1])  # the plugin flips back
        plugin = ctx.tmp / "agglomerate.py"
        plugin.write_text(ORIG_PLUGIN)
        args = f"threshold={THRESHOLD};aff_threshold_low={AFF_LOW};aff_threshold_high={AFF_HIGH}"
        orig = [ctx.orig, "load-h5", "-f", flipped, "-o", "affs"]
        orig += ["plugin", "-f", plugin, "-i", "affs", "-o", "seg", "-a", args]
        commands["orig"] = orig
        warmups["orig"] = [*orig, "save-h5", "-i", "seg", "-f", out["orig"]]
    runs = side_by_side(commands, warmups, ctx.tmp)

    segs = {name: read(path) for name, path in out.items() if name in commands}
    count = {name: len(np.unique(seg)) for name, seg in segs.items()}
    same = voi = None
    if "orig" in segs:
        same = np.array_equal(segs["ours"], segs["orig"])
        metrics = evaluate_segmentation(segs["ours"], segs["orig"])
        voi = metrics["voi_split"] + metrics["voi_merge"]
    del segs

    chunk = Chunk(affs)

    def bare():
        with stdout_to_devnull():
            next(
                waterz.agglomerate(
                    affs,
                    [THRESHOLD],
                    aff_threshold_low=AFF_LOW,
                    aff_threshold_high=AFF_HIGH,
                    scoring_function=MEAN_AFFINITY,
                )
            )

    bare()  # warm-up: the module load
    lib_runs, bare_runs = [], []
    for _ in range(LIB_RUNS):  # alternating
        lib_runs.append(best_of(lambda: agglomerate(chunk, THRESHOLD, AFF_LOW, AFF_HIGH), 1)[0])
        bare_runs.append(best_of(bare, 1)[0])
    lib, net = statistics.median(lib_runs), statistics.median(bare_runs)

    t_ours, t_orig = median(runs, "ours"), median(runs, "orig")
    passed = None
    if t_orig:
        passed = t_ours / t_orig <= AGG_TARGET and count["ours"] == count["orig"]
    note = f"{count['ours']} segments"
    if "orig" in count:
        note += f", original {count['orig']}; " + (
            "identical" if same else f"VOI ours-orig {voi:.2e} bits"
        )
    elif skipped:
        note += f"; original skipped: waterz ({skipped})"
    return [
        {
            "name": f"agglomerate, CLI (3x{dims(AFF_SHAPE)})",
            "ours_s": t_ours,
            "orig_s": t_orig,
            "target": f"ratio <= {AGG_TARGET}",
            "passed": passed,
            "note": note,
            "detail": {
                **run_detail(runs),
                "segments": count["ours"],
                "orig_segments": count.get("orig"),
                "identical": same,
                "voi_ours_vs_orig_bits": voi,
                "orig_command": "load-h5 (channels x, y, z) + plugin agglomerate.py (waterz)",
                "orig_skipped": skipped,
                "waterz": waterz.__version__,
                "orig_waterz": waterz_version(ctx.orig) if "orig" in runs else None,
            },
        },
        {
            "name": "  ours in-process agglomerate",
            "ours_s": lib,
            "note": f"bare waterz {net:.3f} s; ours {lib / net - 1:+.1%}",
            "detail": {"runs_s": lib_runs, "bare_waterz_runs_s": bare_runs},
        },
    ]


def bench_downsample_upload(ctx) -> list[dict]:
    image = np.random.default_rng(SEED).integers(0, 256, DS_SHAPE, np.uint8)
    src = write(ctx.tmp / "ds-image.h5", image)
    vols = {"ours": ctx.tmp / "ds-ours", "orig": ctx.tmp / "ds-orig"}
    start, stop = DS_MIPS
    size, factor = [str(s) for s in DS_SHAPE], [str(f) for f in DS_FACTOR]
    block = [str(b) for b in BLOCK]
    create = [ctx.ours, "create-info", "-v", f"file://{vols['ours']}", "-z", *size]
    create += ["-b", *block, "-f", *factor]
    ours = [ctx.ours, "read-h5", "-f", src, "-o", "img", "downsample-upload", "-i", "img"]
    ours += ["-v", f"file://{vols['ours']}", "-f", *factor, "--start-mip", start]
    commands = {"ours": [*ours, "--stop-mip", stop]}
    if ctx.orig:
        orig = [ctx.orig, "load-h5", "-f", src, "downsample-upload", "-v", f"file://{vols['orig']}"]
        commands["orig"] = orig + ["-f", *factor, "--start-mip", start, "--stop-mip", stop]

    def fresh(name):
        shutil.rmtree(vols[name], ignore_errors=True)
        if name == "ours":
            measured(create, ctx.tmp)
        else:
            create_orig_info(vols[name], stop - 1)

    for name in commands:
        fresh(name)
    runs = side_by_side(commands, commands, ctx.tmp, before=fresh)
    errors = mip_errors(image, {name: vols[name] for name in commands})
    del image

    t_ours, t_orig = median(runs, "ours"), median(runs, "orig")
    peak = max(runs["ours"][1])
    err = {
        name: max(e.values()) if all(isinstance(v, int) for v in e.values()) else "shape mismatch"
        for name, e in errors.items()
    }
    note = f"peak {peak / MiB:.0f} MiB (input {int(np.prod(DS_SHAPE)) // MiB} MiB)"
    if ctx.orig:
        note += f", original {max(runs['orig'][1]) / MiB:.0f} MiB"
    note += f"; max error {err['ours']}" + (f" (original {err['orig']})" if ctx.orig else "")
    return [
        {
            "name": f"downsample-upload, CLI ({dims(DS_SHAPE)} u8)",
            "ours_s": t_ours,
            "orig_s": t_orig,
            "note": note,
            "detail": {
                **run_detail(runs),
                "mips": list(range(start, stop)),
                "factor": DS_FACTOR,
                "max_abs_error_by_mip": errors["ours"],
                "orig_max_abs_error_by_mip": errors.get("orig"),
                "error": "against the exact block means, rounded to the nearest integer",
            },
        }
    ]


def create_orig_info(path: Path, max_mip: int) -> None:
    """The original's volume, mips 0 to max_mip: its create-info drops --max-mip (it passes the
    factor as Vec(factor), one element, to cloudvolume), so cloudvolume makes the info."""
    from cloudvolume import CloudVolume
    from cloudvolume.lib import Vec

    info = CloudVolume.create_new_info(
        1,
        layer_type="image",
        data_type="uint8",
        encoding="raw",
        resolution=(1, 1, 1),
        voxel_offset=(0, 0, 0),
        volume_size=DS_SHAPE[::-1],
        chunk_size=BLOCK[::-1],
        factor=Vec(*DS_FACTOR[::-1]),
        max_mip=max_mip,
    )
    CloudVolume(f"file://{path}", info=info).commit_info()


def mip_errors(image: np.ndarray, vols: dict) -> dict:
    """Max |difference| of each volume's mips from the exact block means (rounded), by mip."""
    from cloudvolume import CloudVolume

    errors = {name: {} for name in vols}
    for mip in range(*DS_MIPS):
        fz, fy, fx = (f**mip for f in DS_FACTOR)
        z, y, x = (s // f for s, f in zip(DS_SHAPE, (fz, fy, fx)))
        blocks = image[: z * fz, : y * fy, : x * fx].reshape(z, fz, y, fy, x, fx)
        exact = np.rint(blocks.mean(axis=(1, 3, 5))).astype(np.int16)
        for name, path in vols.items():
            cv = CloudVolume(f"file://{path}", mip=mip, progress=False)
            got = np.asarray(cv[:, :, :])[..., 0].transpose(2, 1, 0).astype(np.int16)
            ok = got.shape == exact.shape
            errors[name][mip] = int(np.abs(got - exact).max()) if ok else f"shape {got.shape}"
    return errors


def measure(ctx) -> list[dict]:
    """The segmentation rows, as keyword dicts for run.Row."""
    return bench_connected_components(ctx) + bench_agglomerate(ctx) + bench_downsample_upload(ctx)
