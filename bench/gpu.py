"""GPU readiness: inference and a short training with the demo U-Net, on CUDA when present.

Inference (the gala test image, 50x100x200 float32; the demo U-Net, patches 16x64x64 overlap
4x16x16, batch 4, --mask-output-chunk), each variant warmed up once, then timed:

* on CUDA: device-side blending (input, patches, weights and output on the GPU), pinned host
  memory with each batch's copy overlapped with the previous batch's compute on a side stream
  (--pin-memory), autocast float16 and bfloat16, and the whole-chunk mode (48x100x200, one
  forward pass) in float32 and float16;
* on the CPU: the same engine in float32, with host-staged batches (the --pin-memory code
  path without pinning and streams), autocast bfloat16, and the whole-chunk mode;
* on CUDA again, a 64x512x512 chunk (the test image mirrored out) in 32x128x128 patches,
  batch 8: the same variants, and float32 with cudnn.benchmark.

Training: `train` on the bundled gala training volume (patches 16x48x48, batch 4, seed 0),
a few iterations: on CUDA 50, on the CPU 4 (the CPU part only shows that the path runs).

Each line prints voxels/s (output voxels of the chunk, or trained patch voxels), on CUDA the
peak GPU memory (torch.cuda.max_memory_allocated), and the largest difference to the float32
result of its mode on the same chunk (the CPU's for the test image). Without CUDA every CUDA
part prints one `skipped:` line saying what it skipped. The device is always chosen explicitly
(--device cpu or cuda), never by fallback. Exit 0 unless a part that ran failed.

Standalone only (not in bench/run.py): .venv/bin/python bench/gpu.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODEL = ROOT / "examples" / "inference" / "unet.py"
WEIGHTS = ROOT / "examples" / "inference" / "unet.pt"
GALA = ROOT / "data" / "gala_fibsem"
MiB = 1 << 20

CPU_INFERENCE = {
    "float32, patches blended": {},
    "host-staged batches": {"host_staging": True},
    "autocast bfloat16": {"autocast": "bfloat16"},
    "whole-chunk": {"whole_chunk": True},
}
CUDA_INFERENCE = {
    "float32, device-side blending": {},
    "pinned memory + copy stream": {"pin_memory": True},
    "autocast float16": {"autocast": "float16"},
    "autocast bfloat16": {"autocast": "bfloat16"},
    "whole-chunk float32": {"whole_chunk": True},
    "whole-chunk autocast float16": {"whole_chunk": True, "autocast": "float16"},
}
CUDA_BULK = {
    "float32": {},
    "float32, cudnn.benchmark": {"cudnn_benchmark": True},
    "pinned memory + copy stream": {"pin_memory": True},
    "autocast float16": {"autocast": "float16"},
    "autocast bfloat16": {"autocast": "bfloat16"},
    "whole-chunk float32": {"whole_chunk": True},
    "whole-chunk autocast float16": {"whole_chunk": True, "autocast": "float16"},
}
BULK_SHAPE = (64, 512, 512)
BULK = {"patch": (32, 128, 128), "overlap": (8, 32, 32), "batch": 8}
TRAIN_ITERATIONS = {"cpu": 4, "cuda": 50}


def _vec(v) -> str:
    return "x".join(map(str, v))


def image():
    """The gala test image as float32 in [0, 1]."""
    from chunkflow.chunk import Chunk, LayerType
    from chunkflow.io.h5 import read_h5

    chunk = read_h5(str(GALA / "test-image.h5"))
    array = chunk.array.astype(np.float32) / np.float32(255)
    return Chunk(array, chunk.voxel_offset, chunk.voxel_size, LayerType.IMAGE)


def inferencer(device: str, options: dict, patch=(16, 64, 64), overlap=(4, 16, 16), batch=4):
    """The Inferencer as `inference --framework pytorch` builds it, plus engine options."""
    from chunkflow.inference.build import build_inferencer
    from chunkflow.inference.engine import Inferencer

    base = build_inferencer(
        patch,
        output_patch_overlap=overlap,
        mask_output_chunk=True,
        framework="pytorch",
        model_path=str(MODEL),
        weight_path=str(WEIGHTS),
        device=device,
        batch_size=batch,
    )
    # the same model and grid; only the engine options differ
    return Inferencer(base.backend, base.grid, base.device, 1, 3, batch, **options)


def run_inference(device: str, name: str, options: dict, runs: int, chunk=None, reference=None):
    """One timed line, and the output (the reference of the lines after it)."""
    import torch

    options = dict(options)
    cudnn_benchmark = options.pop("cudnn_benchmark", False)
    chunk = image() if chunk is None else chunk
    if options.get("whole_chunk"):  # the U-Net pools by 4: 50x100x200 -> 48x100x200
        chunk = chunk.crop(chunk.bbox.grow(tuple(-(n % 4 // 2) for n in chunk.spatial_shape)))
    engine = inferencer(device, options, **(BULK if chunk.spatial_shape[0] > 50 else {}))
    before, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, cudnn_benchmark
    try:
        out = engine(chunk)  # warm-up (cuDNN / oneDNN set-up, weight sums)
        cuda = engine.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(engine.device)
            torch.cuda.reset_peak_memory_stats(engine.device)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            out = engine(chunk)
            times.append(time.perf_counter() - start)
    finally:
        torch.backends.cudnn.benchmark = before
    seconds = statistics.median(times)
    voxels = int(np.prod(tuple(out.spatial_shape)))
    line = f"inference {device:<5} {name:<32} {voxels / seconds:>12,.0f} voxels/s ({seconds:.3f} s)"
    if cuda:
        line += f", peak GPU memory {torch.cuda.max_memory_allocated(engine.device) / MiB:,.0f} MiB"
    if reference is not None and reference.bbox == out.bbox:
        line += f", max |difference| {np.abs(out.array - reference.array).max():.1e}"
    return line, out


def bulk_image():
    """A 64x512x512 chunk: the gala test image mirrored out to that size."""
    from chunkflow.chunk import Chunk, LayerType

    small = image()
    pad = [(0, max(0, n - s)) for n, s in zip(BULK_SHAPE, small.spatial_shape)]
    array = np.pad(small.array, pad, mode="symmetric")[tuple(slice(n) for n in BULK_SHAPE)]
    return Chunk(np.ascontiguousarray(array), (0, 0, 0), small.voxel_size, LayerType.IMAGE)


def run_inferences(device: str, variants: dict, runs: int, chunk=None, references=None) -> dict:
    """Each variant's line. A variant's difference is to the first output of its mode (patches
    or whole chunk) in `references`, else in this list: the float32 ones come first."""
    references = {} if references is None else references
    for name, options in variants.items():
        whole = bool(options.get("whole_chunk"))
        line, out = run_inference(device, name, options, runs, chunk, references.get(whole))
        references.setdefault(whole, out)
        print(line, flush=True)
    return references


def run_training(device: str) -> str:
    import torch

    from chunkflow.cli.main import main

    iterations = TRAIN_ITERATIONS[device]
    patch, batch = (16, 48, 48), 4
    with tempfile.TemporaryDirectory(prefix="chunkflow-gpu-") as tmp:
        argv = ["read-h5", "-f", str(GALA / "train-image.h5"), "-o", "image"]
        argv += ["read-h5", "-f", str(GALA / "train-gt.lzf.h5"), "--dtype", "uint32"]
        argv += ["-o", "labels", "train", "-m", str(MODEL), "-c", tmp]
        argv += ["--patch-size", *map(str, patch), "--batch-size", str(batch)]
        argv += ["--iterations", str(iterations), "--num-workers", "0", "--seed", "0"]
        argv += ["--device", device, "--checkpoint-interval", str(iterations)]
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        code = main(argv)
        seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"chunkflow {' '.join(argv)} exited {code}")
    voxels = iterations * batch * int(np.prod(patch))
    line = (
        f"training  {device:<5} {f'{iterations} iterations, batch {batch}':<32} "
        f"{voxels / seconds:>12,.0f} voxels/s ({seconds:.1f} s, data loading and start included)"
    )
    if device == "cuda":
        line += f", peak GPU memory {torch.cuda.max_memory_allocated() / MiB:,.0f} MiB"
    return line


def main() -> int:
    import torch

    cuda = torch.cuda.is_available()
    where = f"CUDA: {torch.cuda.get_device_name(0)}" if cuda else "no CUDA device"
    print(f"torch {torch.__version__}; {where}; CPU threads {torch.get_num_threads()}")
    cpu_float32 = run_inferences("cpu", CPU_INFERENCE, runs=1)
    if cuda:
        run_inferences("cuda", CUDA_INFERENCE, runs=3, references=cpu_float32)
        print(f"{_vec(BULK_SHAPE)} chunk, patches {_vec(BULK['patch'])}, batch {BULK['batch']}:")
        run_inferences("cuda", CUDA_BULK, runs=3, chunk=bulk_image())
    else:
        for name in CUDA_INFERENCE:
            print(f"skipped: inference on CUDA, {name} (no CUDA device here)")
        print(f"skipped: inference on CUDA of a {_vec(BULK_SHAPE)} chunk (no CUDA device here)")
    print(run_training("cpu"), flush=True)
    if cuda:
        print(run_training("cuda"), flush=True)
    else:
        print(
            f"skipped: training on CUDA, {TRAIN_ITERATIONS['cuda']} iterations, with its peak GPU "
            "memory (no CUDA device here)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
