"""The training loop: learning, checkpoints, resume, snapshots, profile and bad input."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import torch

from chunkflow.errors import ChunkflowError
from chunkflow.training.checkpoints import newest_checkpoint
from chunkflow.training.data import ExampleMaker, PipelineSpec
from chunkflow.training.trainer import TrainOptions, train
from tests.training.synthetic import cells, cpu_options, write_tiny_model

SPEC = dict(input_size=(8, 24, 24), elastic=dict(jitter_sigma=(0, 1, 1)))


def options(tmp_path, **changes) -> TrainOptions:
    tmp_path.mkdir(exist_ok=True)
    model = tmp_path / "tiny.py"
    if not model.exists():
        write_tiny_model(model)
    values = dict(model_path=str(model), checkpoint_dir=str(tmp_path / "ckpt"))
    values.update(iterations=10, learning_rate=0.02, checkpoint_interval=5)
    return cpu_options(**{**values, **changes})


def state(path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def loss_on(weights: dict, model_path, examples) -> float:
    from chunkflow.inference.backends import PytorchBackend

    backend = PytorchBackend(str(model_path), None, torch.device("cpu"))
    backend.model.load_state_dict(weights)
    with torch.no_grad():
        total = 0.0
        for e in examples:
            p = backend(torch.from_numpy(e["image"][None]))[0].clamp(1e-6, 1 - 1e-6)
            t, w = (
                torch.from_numpy(e["target:affinities"]),
                torch.from_numpy(e["weight:affinities"]),
            )
            total += float(torch.nn.functional.binary_cross_entropy(p, t, w))
    return total / len(examples)


def test_training_lowers_the_loss_and_writes_an_inference_model(tmp_path):
    opts = options(tmp_path, iterations=40, checkpoint_interval=20)
    final = train([cells()], PipelineSpec(**SPEC), opts)
    ckpt = tmp_path / "ckpt"
    assert sorted(p.name for p in ckpt.glob("model_*.pt")) == [
        "model_00000020.pt",
        "model_00000040.pt",
    ]
    assert final == str(ckpt / "model.pt")
    held_out = [ExampleMaker([cells(seed=9)], PipelineSpec(**SPEC), seed=99)[k] for k in range(4)]
    from chunkflow.inference.backends import PytorchBackend

    torch.manual_seed(opts.seed)  # the network the trainer started from
    initial = PytorchBackend(opts.model_path, None, torch.device("cpu")).model.state_dict()
    before = loss_on(initial, opts.model_path, held_out)
    middle = loss_on(state(ckpt / "model_00000020.pt"), opts.model_path, held_out)
    after = loss_on(state(final), opts.model_path, held_out)
    assert after < middle < before
    assert after < 0.7 * before


def test_resume_continues_exactly(tmp_path):
    """A run that died after iteration 5 and is started again ends where an uninterrupted
    run ends (same data per iteration, optimizer state and learning-rate schedule)."""
    import shutil

    spec = PipelineSpec(**SPEC)
    straight = train([cells()], spec, options(tmp_path / "a", iterations=10))
    (tmp_path / "b" / "ckpt").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "ckpt" / "model_00000005.pt", tmp_path / "b" / "ckpt")
    resumed = train([cells()], spec, options(tmp_path / "b", iterations=10))
    for name, value in state(straight).items():
        torch.testing.assert_close(state(resumed)[name], value, rtol=1e-5, atol=1e-6)
    assert newest_checkpoint(str(tmp_path / "b" / "ckpt"))[1] == 10


def test_snapshots_and_profile(tmp_path, caplog):
    opts = options(tmp_path, iterations=4, snapshot_interval=2, profile_interval=2)
    with caplog.at_level(logging.INFO, logger="chunkflow"):
        train([cells()], PipelineSpec(**SPEC), opts)
    snapshots = sorted((tmp_path / "ckpt" / "snapshots").glob("*.h5"))
    assert [p.name for p in snapshots] == ["batch_00000002.h5", "batch_00000004.h5"]
    with h5py.File(snapshots[0]) as f:
        assert f["image"].shape == (8, 24, 24) and f["label"].shape == (8, 24, 24)
        for name in ("target", "prediction", "weight"):
            assert f[f"{name}/affinities"].shape == (3, 8, 24, 24)
        prediction = f["prediction/affinities"][()]
        assert 0 <= prediction.min() and prediction.max() <= 1
        assert f.attrs["iteration"] == 2
    profiles = [r.getMessage() for r in caplog.records if "ms per batch" in r.getMessage()]
    assert len(profiles) == 2
    for stage in ("sampling (workers)", "augmentation (workers)", "targets (workers)"):
        assert stage in profiles[0]
    assert "forward + backward" in profiles[0] and "batches/s" in profiles[0]


def test_model_with_wrong_output_channels(tmp_path):
    write_tiny_model(tmp_path / "two.py", out_channels=2)
    opts = options(tmp_path, model_path=str(tmp_path / "two.py"))
    with pytest.raises(
        ChunkflowError,
        match=r"outputs 2 channels .* but the targets have 3 channels \(3 affinities\)",
    ):
        train([cells()], PipelineSpec(**SPEC), opts)


def test_unwritable_checkpoint_folder(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    opts = options(tmp_path, checkpoint_dir=str(tmp_path / "file" / "ckpt"))
    with pytest.raises(ChunkflowError, match="checkpoint folder .*file/ckpt: cannot write there"):
        train([cells()], PipelineSpec(**SPEC), opts)


def test_corrupt_checkpoint_is_named(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model_00000003.pt").write_bytes(b"garbage")
    with pytest.raises(ChunkflowError, match="checkpoint .*model_00000003.pt cannot be read"):
        train([cells()], PipelineSpec(**SPEC), options(tmp_path))


def test_same_seed_same_weights(tmp_path):
    spec = PipelineSpec(**SPEC)
    a = train([cells()], spec, options(tmp_path / "a", iterations=3))
    b = train([cells()], spec, options(tmp_path / "b", iterations=3))
    for name, value in state(a).items():
        assert torch.equal(state(b)[name], value)
    assert np.isfinite(sum(float(v.sum()) for v in state(a).values()))


class _FailsAtTwo(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 2:
            raise ChunkflowError("no location out of 100 tries has 90% of its output patch masked")
        return index


def test_a_worker_error_comes_back_as_its_own_line():
    from chunkflow.training.trainer import _worker_errors

    loader = torch.utils.data.DataLoader(_FailsAtTwo(), num_workers=1)
    seen = []
    with pytest.raises(ChunkflowError) as raised:
        for batch in _worker_errors(loader):
            seen.append(int(batch))
    assert seen == [0, 1]
    assert str(raised.value) == "no location out of 100 tries has 90% of its output patch masked"
