"""igneous-pipeline's connected-components labeling ("ccl"), to run beside ours.

igneous (https://github.com/seung-lab/igneous) is installed once into its own venv,
bench/.venv-igneous, by `ensure_igneous()`; its dependency closure has no torch, so no torch pin is
needed. `run_ccl()` runs igneous's whole ccl pipeline on a precomputed volume in one subprocess of
that venv, exactly as `igneous image ccl auto` does but with per-step timings, every task executed
in that one process by taskqueue's `LocalTaskQueue(parallel=1)`:

  1. faces: `create_ccl_face_tasks` -> CCLFacesTask: per task, 6-connected CCL of the task box plus
     a 1-voxel overlap on its +x, +y, +z sides (with the voxel lines where two overlap faces meet
     blacked out), offset by task number * voxels per task; the three back faces are saved.
  2. links: `create_ccl_equivalence_tasks` -> CCLEquivalancesTask: the same CCL again, its front
     faces against the saved back faces of the three neighbours (the same voxels); components
     sharing a voxel are unioned, the equivalences saved per task.
  3. calc_labels: `igneous.tasks.image.ccl.create_relabeling`, in the driver process: a global
     union-find over all equivalences, renumbered 1..N, saved per task, and N (max_label.json).
  4. relabel: `create_ccl_relabel_tasks` -> RelabelCCLTask: the same CCL a third time, remapped to
     the global ids, the overlap cut off, written to the new layer `dest`.
  5. clean: `clean_intermediate_files` (as `ccl auto` does by default): deletes the intermediates.

What it computes: a 6-connected labeling (cc3d.connected_components(..., connectivity=6)). Without
a threshold the input is a *label image*: neighbouring voxels join only when their values are
equal, so distinct ids stay distinct and each id is split into its 6-connected pieces; 0 is
background. On a segmentation the result is therefore the same partition as
`cc3d.connected_components(seg, connectivity=6)` (checked below, on real data), numbered
differently. On a uint8 image without a threshold each grey value is its own label, not a binary
foreground; pass `threshold_gte` / `threshold_lte` for a binary mask (image >= gte and/or
image <= lte), whose 6-connected foreground components are then labelled (also checked below).

The output layer gets the source's info (resolution, bounds, chunk size, encoding unless given),
except its data type: the smallest unsigned type that holds N, e.g. uint8 for up to 255
components. Its chunks are written with CloudVolume's default compression (gzip, for raw as for
compresso encoding); igneous has no option for that. `read_labels(dest)` reads it back in our venv
(z, y, x; any precomputed reader works).

Caveats:
* The task shape should be a multiple of the source chunk size (the relabel tasks write their
  boxes to the output, whose chunk size is the source's unless `chunk_size` is given, and
  CloudVolume refuses unaligned writes); igneous reads each task with its 1-voxel overlap, so a
  task touches up to 8 chunks of the source in each of the 3 CCL passes.
* It writes into the source layer: the intermediates under SRC/<key>/ccl/ (deleted by the clean
  step, on success) and a provenance entry per step. The source must be writable; `dest` should
  be a new layer (an existing one is reused as it is).
* The driver runs `python -I`, so that nothing of bench/ (the working directory of the bench
  scripts) is importable in igneous's process.
* Shapes are z, y, x here (our convention) and reversed to igneous's x, y, z.

Run `python bench/igneous_ccl.py` (our venv) for the self-check: a 128^3 crop of the pinky40
segmentation and a thresholded uint8 volume, each compared with cc3d.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from blockwise import same_partition, write_volume  # bench/blockwise.py: our side
from inference import measured  # bench/inference.py: wall time and max RSS of a command
from venvs import install  # bench/venvs.py: the anchors' own venvs

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
IGNEOUS_VENV = BENCH / ".venv-igneous"
IGNEOUS_PACKAGE = "igneous-pipeline==4.37.0"  # no torch among its dependencies

# Runs in the igneous venv: argv = src dest timings.json x,y,z options.json stderr.log. Its stderr
# goes to the log: that of `measured` ends with the report of /usr/bin/time.
DRIVER = """\
import json, os, sys, time
start = time.perf_counter()
os.dup2(os.open(sys.argv[6], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
from taskqueue import LocalTaskQueue
import igneous.task_creation as tc
from igneous.tasks.image import ccl

src, dest, timings = sys.argv[1:4]
shape = tuple(int(v) for v in sys.argv[4].split(","))
opts = json.loads(sys.argv[5])
thr = {"threshold_gte": opts["threshold_gte"], "threshold_lte": opts["threshold_lte"]}
steps = {"import": time.perf_counter() - start}


def execute(tasks):
    LocalTaskQueue(parallel=1, progress=False).insert_all(tasks)


def step(name, fn):
    t = time.perf_counter()
    fn()
    steps[name] = time.perf_counter() - t


step("faces", lambda: execute(tc.create_ccl_face_tasks(src, 0, shape, **thr)))
step("links", lambda: execute(tc.create_ccl_equivalence_tasks(src, 0, shape, **thr)))
step("calc_labels", lambda: ccl.create_relabeling(src, 0, shape))
step("relabel", lambda: execute(tc.create_ccl_relabel_tasks(
    src, dest, 0, shape, chunk_size=opts["chunk_size"], encoding=opts["encoding"], **thr
)))
if opts["clean"]:
    step("clean", lambda: ccl.clean_intermediate_files(src, 0))
with open(timings, "w") as f:
    json.dump(steps, f)
"""


def ensure_igneous() -> Path | None:
    """The python of bench/.venv-igneous, installing igneous-pipeline there when missing."""
    python = IGNEOUS_VENV / "bin" / "python"
    steps = [
        [IGNEOUS_VENV / "bin" / "pip", "install", "-q", IGNEOUS_PACKAGE],
        [python, "-I", "-c", "import igneous.task_creation, igneous.tasks.image.ccl, taskqueue"],
    ]
    ready = install(IGNEOUS_VENV, "igneous-pipeline", steps, IGNEOUS_VENV / "bin" / "igneous")
    return python if ready else None


def run_ccl(
    python: Path,
    src: str,
    dest: str,
    shape,
    cwd: Path,
    *,
    threshold_gte: float | None = None,
    threshold_lte: float | None = None,
    chunk_size=None,
    encoding: str | None = None,
    clean: bool = True,
) -> dict:
    """igneous's whole ccl pipeline from `src` into the new layer `dest` (file:// paths).

    `shape` (z, y, x) is the task shape; `chunk_size` (z, y, x) that of the output layer (default:
    the source's); `encoding` the output's (default: the source's); the thresholds are igneous's
    (binary mask image >= gte and/or <= lte; default: none, a label image). Returns {"seconds":
    wall time of the whole subprocess, "max_rss_bytes": its peak RSS, "steps": seconds of each step
    (import, faces, links, calc_labels, relabel, clean)}. Raises RuntimeError (with the tail of
    stderr) when it fails.
    """
    xyz = ",".join(str(int(v)) for v in reversed(tuple(shape)))
    opts = {
        "threshold_gte": threshold_gte,
        "threshold_lte": threshold_lte,
        "chunk_size": [int(v) for v in reversed(tuple(chunk_size))] if chunk_size else None,
        "encoding": encoding,
        "clean": clean,
    }
    with tempfile.TemporaryDirectory(prefix="igneous-ccl-") as tmp:
        timings, log = Path(tmp) / "timings.json", Path(tmp) / "stderr.log"
        argv = [python, "-I", "-c", DRIVER, src, dest, timings, xyz, json.dumps(opts), log]
        try:
            seconds, rss = measured(argv, cwd)
        except RuntimeError as e:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else str(e)
            raise RuntimeError(f"igneous ccl {src} -> {dest} failed:\n{tail}") from None
        steps = json.loads(timings.read_text())
    return {"seconds": seconds, "max_rss_bytes": rss, "steps": steps}


def read_labels(dest: str) -> np.ndarray:
    """The labels of the precomputed layer `dest` (mip 0), as a C-ordered z, y, x array."""
    from cloudvolume import CloudVolume

    cv = CloudVolume(dest, parallel=1, progress=False)
    return np.ascontiguousarray(np.asarray(cv[:, :, :])[..., 0].T)


def _check(python: Path, tmp: Path, name: str, array: np.ndarray, expected, **kwargs) -> bool:
    layer_type = "segmentation" if array.dtype != np.uint8 else "image"
    chunk = kwargs.pop("chunk", (64, 64, 64))
    src = write_volume(tmp / f"{name}-src", array, layer_type, chunk)
    dest = f"file://{tmp / f'{name}-ccl'}"
    res = run_ccl(python, src, dest, kwargs.pop("shape"), tmp, **kwargs)
    got = read_labels(dest)
    ok = same_partition(got, expected)
    text = f"{len(np.unique(got)) - 1} vs {len(np.unique(expected)) - 1} components"
    steps = ", ".join(f"{k} {v:.2f}" for k, v in res["steps"].items())
    print(f"{name}: {'OK' if ok else 'MISMATCH'}: {text}; output {got.dtype}")
    print(
        f"  igneous ccl {res['seconds']:.2f} s wall, max RSS {res['max_rss_bytes'] / 2**20:.0f} MiB"
        f" (steps, s: {steps})"
    )
    return ok


def main() -> int:
    import gzip

    import cc3d
    import crackle
    from scipy.ndimage import gaussian_filter

    python = ensure_igneous()
    if python is None:
        return 1
    data = ROOT / "data" / "cc3d_pinky40" / "connectomics.npy.ckl.gz"
    seg = crackle.decompress(gzip.open(data).read()).T  # C-ordered z, y, x
    crop = np.ascontiguousarray(seg[256:384, 256:384, 256:384])
    expected = cc3d.connected_components(crop, connectivity=6)
    merged = cc3d.connected_components(crop != 0, connectivity=6).max()
    print(
        f"segmentation crop {crop.shape} {crop.dtype}: {len(np.unique(crop)) - 1} ids, "
        f"{expected.max()} 6-connected pieces ({merged} if the foreground were binary)"
    )

    noise = np.random.default_rng(0).random((128, 128, 128), dtype=np.float32)
    smooth = gaussian_filter(noise, 2.0)
    image = np.clip((smooth - smooth.mean()) / smooth.std() * 40 + 128, 0, 255).astype(np.uint8)
    binary = cc3d.connected_components(image >= 140, connectivity=6)
    print(f"uint8 image {image.shape}: {binary.max()} 6-connected components of image >= 140")

    with tempfile.TemporaryDirectory(prefix="igneous-check-") as tmp:
        tmp = Path(tmp)
        ok = _check(python, tmp, "segmentation", crop, expected, shape=(64, 64, 64))
        # non-cubic tasks (z, y, x) on 32^3 chunks, and a threshold: a binary foreground
        ok &= _check(
            python,
            tmp,
            "uint8-threshold",
            image,
            binary,
            shape=(32, 64, 128),
            chunk=(32, 32, 32),
            threshold_gte=140,
        )
        from cloudvolume import CloudVolume

        method = CloudVolume(f"file://{tmp / 'uint8-threshold-ccl'}").provenance.processing[-1]
        ok &= method["method"]["shape"] == [128, 64, 32]  # x, y, z in igneous
        src = tmp / "segmentation-src"
        left = [p for p in src.rglob("*") if p.is_file() and "ccl" in p.relative_to(src).parts]
        if left:  # the clean step deletes the files, leaving empty folders
            print(f"intermediate files left in the source: {left[:5]}")
            ok = False
    print("self-check passed" if ok else "self-check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
