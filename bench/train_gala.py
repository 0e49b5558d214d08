"""Real-data training goal: train on the gala FIB-SEM training volume, segment the test volume.

One chunkflow command trains examples/inference/unet.py on data/gala_fibsem/train-*.h5 with the
`train` operator (the settings of examples/inference/README.md), a second one predicts the test
volume with the result, agglomerates (waterz, threshold 0.7) and evaluates against the test
ground truth. Goal: VOI split + merge below 1.35, what gala's published boundary-mean
agglomeration reaches on the same test volume (0.187 + 1.161), within 30 minutes of training on
2 CPU cores. This is a report, not a test.

Standalone: .venv/bin/python bench/train_gala.py [ITERATIONS [TRAIN OPTION ...]]; the options
go to `train` after the bench's own, e.g. `600 --no-elastic-augment` for the run without elastic
augmentation that the default one is compared with.
From bench/run.py: measure(ctx) returns the rows as keyword dicts for run.Row.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from inference import measured  # bench/inference.py: wall time and max RSS of a command

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "gala_fibsem"
MODEL = ROOT / "examples" / "inference" / "unet.py"
GOAL_VOI = 1.35  # gala boundary-mean agglomeration: split 0.187 + merge 1.161
GOAL_SECONDS = 30 * 60
ITERATIONS = 1500


def train_command(chunkflow: Path, ckpt: Path, iterations: int, options=()) -> list[str]:
    return [
        str(chunkflow),
        *("read-h5", "-f", DATA / "train-image.h5", "-o", "image"),
        *("read-h5", "-f", DATA / "train-gt.lzf.h5", "-e", "uint32", "-o", "labels"),
        *("train", "-m", MODEL, "-c", ckpt, "--iterations", iterations),
        *("--patch-size", 16, 48, 48, "-b", 4, "--num-workers", 2, "--num-threads", 2),
        *("--checkpoint-interval", 500, "--profile-interval", 500, "--seed", 0),
        *options,
    ]


def evaluate_command(chunkflow: Path, weights: Path, scores: Path) -> list[str]:
    return [
        str(chunkflow),
        *("read-h5", "-f", DATA / "test-image.h5", "-o", "image"),
        *("inference", "-i", "image", "-o", "affs", "--framework", "pytorch"),
        *("--convnet-model", MODEL, "--convnet-weight-path", weights),
        *("--input-patch-size", 16, 64, 64, "--output-patch-overlap", 4, 16, 16),
        *("--num-output-channels", 3, "--batch-size", 4, "--mask-output-chunk"),
        *("agglomerate", "-i", "affs", "-o", "seg", "--threshold", 0.7),
        *("--aff-threshold-low", 0.001, "--aff-threshold-high", 0.9999),
        *("read-h5", "-f", DATA / "test-gt.lzf.h5", "-e", "uint32", "-o", "gt"),
        *("evaluate-segmentation", "-s", "seg", "-g", "gt", "-o", scores),
    ]


def measure(ctx=None, iterations: int = ITERATIONS, options=()) -> list[dict]:
    chunkflow = ctx.ours if ctx else Path(sys.executable).parent / "chunkflow"
    with tempfile.TemporaryDirectory(prefix="chunkflow-train-") as tmp:
        ckpt, scores = Path(tmp) / "ckpt", Path(tmp) / "scores.json"
        train_s, _ = measured(train_command(chunkflow, ckpt, iterations, options), ROOT)
        evaluate_s, _ = measured(evaluate_command(chunkflow, ckpt / "model.pt", scores), ROOT)
        result = json.loads(scores.read_text())
    split, merge = result["voi_split"], result["voi_merge"]
    voi = split + merge
    passed = voi < GOAL_VOI and train_s < GOAL_SECONDS
    return [
        {
            "name": f"train on gala, {iterations} iterations {' '.join(options)}".strip(),
            "ours_s": train_s,
            "target": "VOI < 1.35, < 30 min",
            "passed": passed,
            "detail": {"voi_split": split, "voi_merge": merge, "evaluate_s": evaluate_s},
            "note": f"test VOI split {split:.3f} + merge {merge:.3f} = {voi:.3f} "
            f"(gala 1.348); predict+segment {evaluate_s:.1f} s",
        }
    ]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else ITERATIONS
    for row in measure(iterations=count, options=sys.argv[2:]):
        print(json.dumps(row, indent=2))
