"""The bundled example model: its training script runs, and its weights load as chunkflow does."""

import subprocess
import sys

import torch

from chunkflow.inference.backends import PytorchBackend
from tests.conftest import REPO

UNET = REPO / "examples" / "inference"


def test_bundled_weights_load_and_predict_affinities():
    backend = PytorchBackend(str(UNET / "unet.py"), str(UNET / "unet.pt"), torch.device("cpu"))
    with torch.inference_mode():
        out = backend(torch.rand(2, 1, 16, 32, 32))
    assert out.shape == (2, 3, 16, 32, 32)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_training_script_runs(tmp_path):
    weights = tmp_path / "w.pt"
    proc = subprocess.run(
        [
            sys.executable,
            str(UNET / "train.py"),
            "--iterations",
            "2",
            "--patch-size",
            "8",
            "16",
            "16",
            "--batch-size",
            "1",
            "--threads",
            "1",
            "--out",
            str(weights),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    backend = PytorchBackend(str(UNET / "unet.py"), str(weights), torch.device("cpu"))
    assert sum(p.numel() for p in backend.model.parameters()) > 0
