"""Training beyond one affinity output: several targets and outputs, named and model-file
losses, 2D models with multi-channel input, TensorBoard scalars, snapshot offsets, sample
weights and elastic redraws."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.training.data import ExampleMaker, PipelineSpec, sample_probabilities
from chunkflow.training.targets import Target
from chunkflow.training.trainer import TrainOptions, train
from tests.training.synthetic import cells, cpu_options

HEADS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Conv3d(1, 4, 3, padding=1)
        self.affs = nn.Conv3d(4, 3, 1)
        self.lsds = nn.Conv3d(4, 10, 1)
        self.dist = nn.Conv3d(4, 1, 1)

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return {
            "affs": torch.sigmoid(self.affs(h)),
            "lsds": torch.sigmoid(self.lsds(h)),
            "dist": torch.tanh(self.dist(h)),
        }


InstantiatedModel = Net()
"""

VALID = """
import torch
from torch import nn

InstantiatedModel = nn.Sequential(nn.Conv3d(1, 3, 3), nn.Sigmoid())
LOSS
"""

TWO_D = """
import torch
from torch import nn

InstantiatedModel = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))


def post_process(y):
    return torch.sigmoid(y)
"""


def options(tmp_path, model: str, **changes) -> TrainOptions:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "model.py"
    path.write_text(model)
    values = dict(model_path=str(path), checkpoint_dir=str(tmp_path / "ckpt"))
    values.update(iterations=3, learning_rate=0.01, checkpoint_interval=3, tensorboard=False)
    return cpu_options(**{**values, **changes})


def scalars(folder) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_several_targets_feed_named_outputs_and_tensorboard_logs_them(tmp_path):
    spec = PipelineSpec(
        input_size=(4, 16, 16),
        elastic=None,
        targets=(
            Target("affinities", "affs"),
            Target("lsd", "lsds", sigma=(4, 4, 4)),
            Target("distance", "dist", scale=3.0),
        ),
    )
    example = ExampleMaker([cells()], spec)[0]
    assert example["target:affs"].shape == (3, 4, 16, 16)
    assert example["target:lsds"].shape == example["weight:lsds"].shape == (10, 4, 16, 16)
    # lsd weights: 1 on objects, 0 in the background (as gunpowder's lsds mask)
    np.testing.assert_array_equal(example["weight:lsds"][0], example["label"] != 0)
    assert -1 < example["target:dist"].min() < 0 < example["target:dist"].max() < 1
    final = train([cells()], spec, options(tmp_path, HEADS, tensorboard=True))
    assert torch.load(final, weights_only=True)["iteration"] == 3
    logged = scalars(tmp_path / "ckpt" / "tensorboard")
    for tag in ("loss", "loss/affs", "loss/lsds", "loss/dist", "learning_rate"):
        assert len(logged[tag]) == 3, tag
    assert all(rate > 0 for rate in logged["batches_per_second"])
    parts = [logged[f"loss/{name}"][0] for name in ("affs", "lsds", "dist")]
    assert logged["loss"][0] == pytest.approx(sum(parts), rel=1e-5)
    assert logged["learning_rate"][0] == pytest.approx(0.01)


def test_a_missing_output_is_named(tmp_path):
    spec = PipelineSpec(input_size=(4, 16, 16), elastic=None, targets=(Target("boundary", "b"),))
    with pytest.raises(ChunkflowError, match="returns outputs affs, lsds, dist but not b"):
        train([cells()], spec, options(tmp_path, HEADS))


MSE_LOSS = """
loss = torch.nn.MSELoss()
loss_inputs = {0: "prediction", "target": "target"}
"""


def test_a_model_file_loss_with_loss_inputs_trains_like_the_named_loss(tmp_path):
    """A valid network (output 2 voxels smaller, all targets known): the model file's
    MSELoss and --loss mse take the same steps."""

    def spec(loss):
        target = Target("affinities", loss=loss)
        return PipelineSpec(
            input_size=(6, 18, 18), output_size=(4, 16, 16), elastic=None, targets=(target,)
        )

    model = VALID.replace("LOSS", MSE_LOSS)
    by_name = train([cells()], spec("mse"), options(tmp_path / "a", model))
    by_file = train([cells()], spec("model"), options(tmp_path / "b", model))
    a = torch.load(by_name, weights_only=True)["state_dict"]
    b = torch.load(by_file, weights_only=True)["state_dict"]
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-4, atol=1e-6)
    with pytest.raises(ChunkflowError, match="defines no loss function"):
        train([cells()], spec("model"), options(tmp_path / "c", VALID.replace("LOSS", "")))
    bad = VALID.replace("LOSS", "loss = torch.nn.MSELoss()\nloss_inputs = {0: 'guess'}")
    with pytest.raises(ChunkflowError, match=r"loss_inputs\[0\] = 'guess'"):
        train([cells()], spec("model"), options(tmp_path / "d", bad))


def two_channel_cells(seed=0) -> dict:
    sample = cells(seed=seed)
    image = np.asarray(sample["image"])
    sample["image"] = Chunk(np.stack([image, 255 - image]), (0, 0, 0), (1, 1, 1), LayerType.IMAGE)
    return sample


def test_a_2d_model_on_two_channel_input(tmp_path):
    spec = PipelineSpec(
        input_size=(1, 24, 24),
        spatial_dims=2,
        neighborhood=[(0, 1, 0), (0, 0, 1)],
        elastic=dict(jitter_sigma=(0, 1, 1)),
    )
    example = ExampleMaker([two_channel_cells()], spec)[0]
    assert example["image"].shape == (2, 1, 24, 24)
    final = train([two_channel_cells()], spec, options(tmp_path, TWO_D))
    assert torch.load(final, weights_only=True)["iteration"] == 3
    with pytest.raises(ChunkflowError, match="fails on a .* with 1 channel"):
        train([cells()], spec, options(tmp_path / "one", TWO_D))
    with pytest.raises(ChunkflowError, match="one section thick"):
        PipelineSpec(input_size=(4, 24, 24), spatial_dims=2)
    with pytest.raises(ChunkflowError, match="a 2D model has no z neighbours"):
        PipelineSpec(input_size=(1, 24, 24), spatial_dims=2)


def test_snapshot_arrays_overlay_by_their_offsets(tmp_path):
    """Image and labels of a valid network, read back by their `offset` and `resolution`
    attributes: every label voxel sits on the image voxel made from it."""
    sample = cells(shape=(12, 40, 40), offset=(3, 5, 7))
    labels = np.asarray(sample["label"])
    image = (labels % 251).astype(np.uint8)  # the image shows the label ids
    voxel_size = (4, 2, 2)
    sample = {
        "image": Chunk(image, (3, 5, 7), voxel_size, LayerType.IMAGE),
        "label": Chunk(labels, (3, 5, 7), voxel_size, LayerType.SEGMENTATION),
    }
    spec = PipelineSpec(
        input_size=(6, 18, 18), output_size=(4, 16, 16), elastic=None, intensity=None
    )
    opts = options(tmp_path, VALID.replace("LOSS", ""), snapshot_interval=1, iterations=2)
    train([sample], spec, opts)
    for path in sorted((tmp_path / "ckpt" / "snapshots").glob("*.h5")):
        with h5py.File(path) as f:
            raw, label = f["image"], f["label"]
            assert tuple(raw.attrs["resolution"]) == tuple(label.attrs["resolution"]) == voxel_size
            for name in ("target/affinities", "prediction/affinities", "weight/affinities"):
                assert tuple(f[name].attrs["offset"]) == tuple(label.attrs["offset"])
            start = (label.attrs["offset"] - raw.attrs["offset"]) / voxel_size
            assert tuple(start) == (1, 1, 1)
            # the world offset is inside the sample, where the patch was cut
            assert all(raw.attrs["offset"] >= np.multiply((3, 5, 7), voxel_size))
            inner = tuple(slice(int(s), int(s) + n) for s, n in zip(start, label.shape))
            shown = np.rint(raw[()][inner] * 255).astype(np.int64)
            np.testing.assert_array_equal(shown, label[()] % 251)


def test_sample_weights():
    samples = [cells(), cells(shape=(12, 40, 80))]
    np.testing.assert_allclose(sample_probabilities(samples, "size"), [1 / 3, 2 / 3])
    np.testing.assert_allclose(sample_probabilities(samples, "uniform"), [0.5, 0.5])
    np.testing.assert_allclose(sample_probabilities(samples, (1, 3)), [0.25, 0.75])
    spec = PipelineSpec(input_size=(4, 16, 16), elastic=None, sample_weights=(0, 1))
    maker = ExampleMaker([cells(), cells(offset=(0, 0, 1000))], spec)
    assert all(maker[k]["offset"][2] >= 1000 for k in range(10))
    with pytest.raises(ChunkflowError, match="3 sample weights given for 2 samples"):
        sample_probabilities(samples, (1, 2, 3))
    with pytest.raises(ChunkflowError, match="expected size, uniform or a list"):
        PipelineSpec(sample_weights="voxels")


def test_a_transform_too_large_for_the_sample_is_redrawn():
    """Rotations near 45 degrees need more context than the sample holds: with one draw some
    examples fail, with redraws (seeded: the same each time) none do."""
    elastic = dict(jitter_sigma=(0, 0, 0), rotation_interval=(0, np.pi / 2))
    sample = [cells(shape=(8, 44, 44))]

    def failures(redraws):
        spec = PipelineSpec(input_size=(8, 36, 36), elastic=elastic, max_redraws=redraws)
        maker, failed = ExampleMaker(sample, spec, names=["gala"]), []
        for k in range(12):
            try:
                maker[k]
            except ChunkflowError as err:
                failed.append(str(err))
        return failed

    once = failures(1)
    assert once and once[0].startswith("gala: (8, 44, 44) voxels is too small")
    assert failures(20) == []
    spec = PipelineSpec(input_size=(8, 36, 36), elastic=elastic)
    maker = ExampleMaker(sample, spec)
    np.testing.assert_array_equal(maker[3]["image"], maker[3]["image"])
