"""The bundled example model: it trains with `train`, and its weights load as inference does."""

import torch

from chunkflow.inference.backends import PytorchBackend
from tests.conftest import REPO

UNET = REPO / "examples" / "inference"
CPU = torch.device("cpu")


def test_bundled_weights_load_and_predict_affinities():
    backend = PytorchBackend(str(UNET / "unet.py"), str(UNET / "unet.pt"), CPU)
    with torch.inference_mode():
        out = backend(torch.rand(2, 1, 16, 32, 32))
    assert out.shape == (2, 3, 16, 32, 32)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_the_model_file_trains_with_the_train_operator(run_cli, tmp_path):
    """The README's training command, shortened: unet.py (batch norm, pooling) trains and the
    result loads the way inference loads it."""
    gala = REPO / "data" / "gala_fibsem"
    run_cli(
        f"read-h5 -f {gala}/train-image.h5 -o image "
        f"read-h5 -f {gala}/train-gt.lzf.h5 -e uint32 -o labels "
        f"train -m {UNET}/unet.py -c ckpt --patch-size 8 16 16 -b 1 --iterations 2 "
        "--num-workers 0 --num-threads 1"
    )
    backend = PytorchBackend(str(UNET / "unet.py"), str(tmp_path / "ckpt" / "model.pt"), CPU)
    with torch.inference_mode():
        out = backend(torch.rand(1, 1, 8, 16, 16))
    assert out.shape == (1, 3, 8, 16, 16)
