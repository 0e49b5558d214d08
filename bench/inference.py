"""Inference benchmark: ConvNet inference of one chunk, ours against the original chunkflow 1.2.0.

Workload: a 64x512x512 float32 image (uniform in [0, 1], seeded) in /main of an HDF5 file, a
small 3D conv net 1 -> 3 channels (conv 3x3x3 16, ReLU, conv 3x3x3 16, ReLU, conv 1x1x1 3,
sigmoid; seeded weights saved as a state_dict), input patch 16x128x128, output patch overlap
4x32x32, batch 4, --mask-output-chunk: 5x5x5 = 125 patches, torch on 2 CPU threads in both.

* CLI: the whole command, start-up and HDF5 read included, the output kept in memory. Ours runs
  the pytorch framework; the original's pytorch framework takes batch 1 only and needs CUDA at
  the end, so it runs its universal framework: a `PatchInferencer` around the same net and
  weights that multiplies the output by the patch mask, as the original expects. Target: ours at
  most 0.5x the original. The untimed warm-up runs write the outputs, for the max |difference|.
  Both cut the same 125 patches; the original runs a full batch for the last, single patch
  (128 patch passes to our 125).
* In-process: our Inferencer (built by chunkflow.inference.build.build_inferencer, as the CLI does)
  on the chunk, weight sum included as in a one-chunk CLI run, against the bare forward passes of
  the same model over the same 125 patches in batches of 4 under torch.inference_mode().
  Target: overhead = ours / network - 1 at most 10 %.
* Peak memory: the maximum resident set size of our timed CLI runs (/usr/bin/time -v), and of
  one with --dtype float16, against input + output buffer + model + 1 GiB. In-process, the
  float16 output array is half the float32 one.
* Whole-chunk mode: the same Inferencer with --whole-chunk (the net is fully convolutional:
  one forward pass over the 64x512x512 chunk, no blending), interleaved with the patch mode;
  for information, with the max |difference| to the patch mode (which is not 0: these patches
  have no crop margin, so their borders lack context).
* First-task cost, in a fresh process: importing torch, building the model (build_inferencer:
  model file, weights, device), and the first inference call against the second (oneDNN's
  first-call set-up, the weight-sum cache).
* Queue worker: `generate-tasks` sends 100 tasks of 16x64x128 over the image to a local queue
  folder, then one `fetch-task -q DIR read-h5 inference write-h5 delete-task-in-queue` worker
  drains it; against the same worker on a one-task queue. Target: the 100-task run costs at
  most 100 x (single-task run - first-task cost) + first-task cost, i.e. the first-task cost is
  paid once per worker, not per task (marginal cost per task well under the single-task run).

Everything here runs in the process of bench/run.py, which turns the returned dicts into rows.
Standalone: .venv/bin/python bench/inference.py (ours only; the original runs from run.py).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = (64, 512, 512)
PATCH = (16, 128, 128)
OVERLAP = (4, 32, 32)
CHANNELS = 3
BATCH = 4
THREADS = 2
CLI_RUNS = 3
LIB_RUNS = 3
WHOLE_RUNS = 2
QUEUE_TASKS = 100
QUEUE_CHUNK = (16, 64, 128)
QUEUE_PATCH = (16, 64, 64)
QUEUE_OVERLAP = (4, 16, 16)
RATIO_TARGET = 0.5
OVERHEAD_TARGET = 0.10
MiB = 1 << 20
GiB = 1 << 30

NET = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(16, 3, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.body(x)
"""

# ours: the pytorch framework loads the weights and sets the threads itself
OURS_MODEL = NET + "\n\nInstantiatedModel = Net()\n"

# the original's universal framework: numpy in, numpy out, multiplied by the output patch mask
UNIVERSAL_MODEL = (
    NET
    + f"""

torch.set_num_threads({THREADS})


class PatchInferencer:
    def __init__(self, weight_path, output_patch_mask):
        self.model = Net()
        self.model.load_state_dict(torch.load(weight_path, map_location="cpu", weights_only=True))
        self.model.eval()
        self.mask = torch.from_numpy(output_patch_mask.astype("float32"))

    @property
    def compute_device(self):
        return "cpu"

    def __call__(self, patch):
        with torch.inference_mode():
            out = self.model(torch.from_numpy(patch)) * self.mask
        return out.numpy()
"""
)


def prepare(tmp: Path) -> dict:
    """Image, weights and both model files in `tmp`; returns their paths."""
    import h5py
    import torch

    paths = {
        "image": tmp / "inf-image.h5",
        "weights": tmp / "inf-weights.pt",
        "ours_model": tmp / "inf_ours_model.py",
        "orig_model": tmp / "inf_universal_model.py",
    }
    image = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    with h5py.File(paths["image"], "w") as f:
        f.create_dataset("main", data=image)
    paths["ours_model"].write_text(OURS_MODEL)
    paths["orig_model"].write_text(UNIVERSAL_MODEL)
    namespace: dict = {}
    exec(NET, namespace)
    torch.manual_seed(0)
    torch.save(namespace["Net"]().state_dict(), paths["weights"])
    return paths


def common_options() -> list:
    return [
        *("--input-patch-size", *PATCH, "--output-patch-overlap", *OVERLAP),
        *("--num-output-channels", CHANNELS, "--batch-size", BATCH, "--mask-output-chunk"),
    ]


def ours_command(ctx, paths: dict, dtype: str = "float32", out: Path | None = None) -> list:
    argv = [ctx.ours, "read-h5", "-f", paths["image"], "-o", "image"]
    argv += ["inference", "-i", "image", "-o", "affs", "--framework", "pytorch"]
    argv += ["--convnet-model", paths["ours_model"], "--convnet-weight-path", paths["weights"]]
    argv += [*common_options(), "--num-threads", THREADS, "--device", "cpu", "--dtype", dtype]
    return argv + (["write-h5", "-i", "affs", "-f", out] if out else [])


def orig_command(ctx, paths: dict, out: Path | None = None) -> list:
    argv = [ctx.orig, "load-h5", "-f", paths["image"], "inference", "--framework", "universal"]
    argv += ["--convnet-model", paths["orig_model"], "--convnet-weight-path", paths["weights"]]
    argv += common_options()
    return argv + (["save-h5", "-f", out] if out else [])


def measured(argv: list, cwd: Path) -> tuple[float, int]:
    """Wall time and maximum resident set size (bytes) of a command, by /usr/bin/time -v."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *map(str, argv)], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    kib = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return wall, int(kib.group(1)) * 1024


def read_output(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        return f["main"][()].astype(np.float32)


def build(paths: dict, dtype: str = "float32", whole_chunk: bool = False):
    """Our Inferencer, exactly as the CLI options of ours_command build it."""
    from chunkflow.inference.build import build_inferencer

    return build_inferencer(
        PATCH,
        output_patch_overlap=OVERLAP,
        mask_output_chunk=True,
        framework="pytorch",
        model_path=str(paths["ours_model"]),
        weight_path=str(paths["weights"]),
        device="cpu",
        num_threads=THREADS,
        num_output_channels=CHANNELS,
        batch_size=BATCH,
        dtype=dtype,
        whole_chunk=whole_chunk,
    )


def network_seconds(model, batches: list) -> float:
    import torch

    with torch.inference_mode():
        start = time.perf_counter()
        for batch in batches:
            model(batch)
        return time.perf_counter() - start


def in_process(paths: dict) -> dict:
    """Our Inferencer against the bare forward passes, interleaved; float16 once for its size."""
    import torch

    from chunkflow.io.h5 import read_h5

    chunk = read_h5(str(paths["image"]))
    inferencer = build(paths)
    plan = inferencer.grid.plan(chunk.bbox)
    model = inferencer.backend  # the model as the engine calls it (layout, pre/post included)
    image = torch.from_numpy(np.ascontiguousarray(chunk.array))
    patches = [image[tuple(slice(a, b) for a, b in zip(i.start, i.stop))] for i, _ in plan.patches]
    batches = [torch.stack(patches[k : k + BATCH])[:, None] for k in range(0, len(patches), BATCH)]
    network_seconds(model, batches[:1])  # warm-up
    ours, net, forward = [], [], []
    result = None
    for i in range(2 * LIB_RUNS):  # alternating, the network first in every other pair
        if i % 2 == (i // 2) % 2:
            net.append(network_seconds(model, batches))
            continue
        inferencer._weight_cache = {}  # a one-chunk CLI run computes the weight sum too
        inferencer.forward_seconds = 0.0
        start = time.perf_counter()
        result = inferencer(chunk)
        ours.append(time.perf_counter() - start)
        forward.append(inferencer.forward_seconds)
    inferencer._weight_cache = {}
    start = time.perf_counter()
    inferencer.weight_sum(plan)
    weight_sum_s = time.perf_counter() - start
    half = build(paths, "float16")(chunk)
    return {
        "ours": ours,
        "network": net,
        "engine_forward": forward,
        "weight_sum_s": weight_sum_s,
        "patches": len(plan.patches),
        "forward_calls": len(batches),
        "f32_nbytes": result.array.nbytes,
        "f16_nbytes": half.array.nbytes,
        "f16_dtype": str(half.array.dtype),
        "f16_max_abs_diff": float(np.abs(half.array.astype(np.float32) - result.array).max()),
        "model_bytes": sum(p.numel() * p.element_size() for p in model.model.parameters()),
    }


def whole_chunk(paths: dict) -> dict:
    """Whole-chunk mode against the patch mode, interleaved, on the same chunk."""
    from chunkflow.io.h5 import read_h5

    chunk = read_h5(str(paths["image"]))
    modes = {"patches": build(paths), "whole": build(paths, whole_chunk=True)}
    outputs = {name: inferencer(chunk) for name, inferencer in modes.items()}  # warm-up
    times = {name: [] for name in modes}
    for i in range(WHOLE_RUNS):
        for name in sorted(modes, reverse=bool(i % 2)):
            start = time.perf_counter()
            modes[name](chunk)
            times[name].append(time.perf_counter() - start)
    delta = np.abs(outputs["whole"].array - outputs["patches"].array)
    return {
        "runs_s": times,
        "max_abs_diff": float(delta.max()),
        "mean_abs_diff": float(delta.mean()),
    }


FIRST_TASK = """
import json, sys, time
start = time.perf_counter()
import torch
imported = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from inference import build
from chunkflow.io.h5 import read_h5
paths = json.loads(sys.argv[2])
chunk = read_h5(paths["image"])
loaded = time.perf_counter()
inferencer = build(paths)
built = time.perf_counter()
inferencer(chunk)
first = time.perf_counter()
inferencer(chunk)
second = time.perf_counter()
print(json.dumps({
    "import_torch_s": imported - start,
    "build_model_s": built - loaded,
    "first_call_s": first - built,
    "second_call_s": second - first,
}))
"""


def first_task(paths: dict) -> dict:
    """The first-task cost in a fresh process (see FIRST_TASK), as a dict of seconds."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FIRST_TASK,
            str(Path(__file__).resolve().parent),
            json.dumps({k: str(v) for k, v in paths.items()}),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"first-task run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def queue_worker(ctx, paths: dict, tasks: int, name: str) -> dict:
    """Send `tasks` tasks to a fresh local queue, then time one worker that drains it."""
    queue = ctx.tmp / f"inf-queue-{name}"
    out = ctx.tmp / f"inf-queue-out-{name}"
    out.mkdir()
    generate = [ctx.ours, "generate-tasks", "--roi-start", 0, 0, 0, "--roi-size", *SHAPE]
    generate += ["--chunk-size", *QUEUE_CHUNK, "--task-index-stop", tasks, "-q", f"file://{queue}"]
    start = time.perf_counter()
    run_quiet(generate, ctx.tmp)
    send_s = time.perf_counter() - start
    worker = [ctx.ours, "fetch-task", "-q", f"file://{queue}", "-r", 0, "-w", 0, "--lease-wait", 0]
    worker += ["read-h5", "-f", paths["image"], "-o", "image"]
    worker += ["inference", "-i", "image", "-o", "affs", "--framework", "pytorch"]
    worker += ["--convnet-model", paths["ours_model"], "--convnet-weight-path", paths["weights"]]
    worker += ["--input-patch-size", *QUEUE_PATCH, "--output-patch-overlap", *QUEUE_OVERLAP]
    worker += ["--num-output-channels", CHANNELS, "--batch-size", BATCH, "--mask-output-chunk"]
    worker += ["--num-threads", THREADS, "--device", "cpu"]
    worker += ["write-h5", "-i", "affs", "-f", f"{out}/", "delete-task-in-queue"]
    wall, peak = measured(worker, ctx.tmp)
    written = len(list(out.glob("*.h5")))
    if written != tasks:
        raise RuntimeError(f"queue worker {name}: {written} outputs for {tasks} tasks")
    return {"wall_s": wall, "peak_rss_bytes": peak, "send_s": send_s, "outputs": written}


def run_quiet(argv: list, cwd: Path) -> None:
    proc = subprocess.run(list(map(str, argv)), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed:\n{proc.stderr[-2000:]}")


def startup_rows(ctx, paths: dict) -> list[dict]:
    """First-task cost, and a 100-task queue worker against a one-task one."""
    first = first_task(paths)
    single = queue_worker(ctx, paths, 1, "single")
    many = queue_worker(ctx, paths, QUEUE_TASKS, "many")
    fixed = first["import_torch_s"] + first["build_model_s"]
    marginal = (many["wall_s"] - single["wall_s"]) / (QUEUE_TASKS - 1)
    per_task = many["wall_s"] / QUEUE_TASKS
    # paid once: the 100-task run is the single run plus 99 tasks without the fixed cost
    passed = per_task < single["wall_s"] - fixed / 2 and marginal < single["wall_s"] - fixed
    return [
        {
            "name": "inference first-task cost (fresh process)",
            "ours_s": fixed,
            "note": (
                f"import torch {first['import_torch_s']:.2f} s + build model "
                f"{first['build_model_s']:.2f} s; first call {first['first_call_s']:.2f} s, "
                f"second {first['second_call_s']:.2f} s"
            ),
            "detail": first,
        },
        {
            "name": f"  queue worker, {QUEUE_TASKS} tasks of {'x'.join(map(str, QUEUE_CHUNK))}",
            "ours_s": many["wall_s"],
            "target": "fixed cost once",
            "passed": passed,
            "note": (
                f"{per_task:.3f} s/task ({marginal:.3f} s marginal) vs single-task run "
                f"{single['wall_s']:.2f} s; {QUEUE_TASKS} single runs would take "
                f"{QUEUE_TASKS * single['wall_s']:.0f} s"
            ),
            "detail": {
                "many": many,
                "single": single,
                "marginal_s": marginal,
                "per_task_s": per_task,
            },
        },
        {
            "name": "  queue worker, 1 task",
            "ours_s": single["wall_s"],
            "note": "process start-up, torch, model, one task",
            "detail": single,
        },
    ]


def measure(ctx) -> list[dict]:
    """The inference rows, as keyword dicts for run.Row."""
    paths = prepare(ctx.tmp)
    outputs = {"ours": ctx.tmp / "inf-out-ours.h5", "orig": ctx.tmp / "inf-out-orig.h5"}
    # untimed warm-up runs that also write the outputs
    measured(ours_command(ctx, paths, out=outputs["ours"]), ctx.tmp)
    commands = {"ours": ours_command(ctx, paths)}
    if ctx.orig:
        measured(orig_command(ctx, paths, out=outputs["orig"]), ctx.tmp)
        commands["orig"] = orig_command(ctx, paths)
    runs = {name: [] for name in commands}
    peaks = {name: [] for name in commands}
    for _ in range(CLI_RUNS):
        for name, argv in commands.items():
            wall, peak = measured(argv, ctx.tmp)
            runs[name].append(wall)
            peaks[name].append(peak)
    f16_wall, f16_peak = measured(ours_command(ctx, paths, "float16"), ctx.tmp)
    lib = in_process(paths)
    whole = whole_chunk(paths)

    ours = read_output(outputs["ours"])
    diff = interior = None
    if ctx.orig:
        delta = np.abs(ours - read_output(outputs["orig"]))
        diff = float(delta.max())
        interior = float(delta[(slice(None), *(slice(o, -o) for o in OVERLAP))].max())

    cli_ours = statistics.median(runs["ours"])
    cli_orig = statistics.median(runs["orig"]) if ctx.orig else None
    input_bytes = int(np.prod(SHAPE)) * 4
    budget = {
        dtype: input_bytes + lib[f"{key}_nbytes"] + lib["model_bytes"] + GiB
        for dtype, key in (("float32", "f32"), ("float16", "f16"))
    }
    peak32 = max(peaks["ours"])
    total, net = statistics.median(lib["ours"]), statistics.median(lib["network"])
    overhead = total / net - 1
    # the engine's own view: its time outside the forward passes, against them
    inside = statistics.median(t / f - 1 for t, f in zip(lib["ours"], lib["engine_forward"]))
    patches = f"{lib['patches']} patches, batch {BATCH}"
    return [
        {
            "name": "inference, CLI (64x512x512 f32, 3 ch)",
            "ours_s": cli_ours,
            "orig_s": cli_orig,
            "target": f"ratio <= {RATIO_TARGET}",
            "passed": None if cli_orig is None else cli_ours / cli_orig <= RATIO_TARGET,
            "note": patches + ("" if diff is None else f"; max |ours-orig| {diff:.1e}"),
            "detail": {
                "runs_s": runs["ours"],
                "orig_runs_s": runs.get("orig"),
                "orig_peak_rss_bytes": max(peaks["orig"]) if ctx.orig else None,
                "max_abs_diff": diff,
                "max_abs_diff_interior": interior,
                "orig_framework": "universal (PatchInferencer, same net and weights)",
                "orig_patch_passes": -(-lib["patches"] // BATCH) * BATCH,
                "ours_patch_passes": lib["patches"],
            },
        },
        {
            "name": "  ours CLI peak memory, float32",
            "ours_s": None,
            "target": "RSS <= budget",
            "passed": peak32 <= budget["float32"],
            "note": f"peak {peak32 / GiB:.2f} GiB, budget {budget['float32'] / GiB:.2f} GiB"
            + (f"; original {max(peaks['orig']) / GiB:.2f} GiB" if ctx.orig else ""),
            "detail": {"peak_rss_bytes": peaks["ours"], "budget_bytes": budget["float32"]},
        },
        {
            "name": "  ours CLI --dtype float16",
            "ours_s": f16_wall,
            "target": "RSS <= budget",
            "passed": f16_peak <= budget["float16"],
            "note": (
                f"peak {f16_peak / GiB:.2f} GiB, budget {budget['float16'] / GiB:.2f} GiB; "
                f"output {lib['f16_nbytes'] // MiB} MiB (f32 {lib['f32_nbytes'] // MiB} MiB)"
            ),
            "detail": {
                "peak_rss_bytes": f16_peak,
                "budget_bytes": budget["float16"],
                "output_nbytes": lib["f16_nbytes"],
                "output_dtype": lib["f16_dtype"],
                "float32_output_nbytes": lib["f32_nbytes"],
                "max_abs_diff_to_float32": lib["f16_max_abs_diff"],
            },
        },
        {
            "name": "inference, in-process: ours",
            "ours_s": total,
            "target": f"overhead <={OVERHEAD_TARGET:.0%}",
            "passed": overhead <= OVERHEAD_TARGET,
            "note": f"overhead {overhead:.1%} over the network alone ({inside:.1%} in-engine)",
            "detail": {
                "runs_s": lib["ours"],
                "overhead": overhead,
                "overhead_outside_engine_forward": inside,
                "engine_forward_s": lib["engine_forward"],
                "weight_sum_s": lib["weight_sum_s"],
            },
        },
        {
            "name": "  network forward passes only",
            "ours_s": net,
            "note": f"{patches} ({lib['forward_calls']} calls)",
            "detail": {"runs_s": lib["network"]},
        },
        {
            "name": "inference --whole-chunk (in-process)",
            "ours_s": statistics.median(whole["runs_s"]["whole"]),
            "orig_s": statistics.median(whole["runs_s"]["patches"]),
            "note": (
                "anchor: our patch mode; max |whole - patches| "
                f"{whole['max_abs_diff']:.1e} (patch borders lack context)"
            ),
            "detail": whole,
        },
        *startup_rows(ctx, paths),
    ]


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import Context, Row, report

    with tempfile.TemporaryDirectory(prefix="chunkflow-bench-") as tmp:
        context = Context(Path(sys.executable).parent / "chunkflow", None, Path(tmp))
        report([Row(**row) for row in measure(context)], context)
