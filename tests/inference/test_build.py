"""`build_inferencer` builds from plain parameters what the `inference` operator runs."""

import h5py
import numpy as np
import pytest

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ParameterError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.inference.build import build_inferencer
from chunkflow.inference.grid import PatchGrid
from tests.inference import models


def test_the_identity_model_returns_the_input_cropped_by_the_read_margin():
    chunk = Chunk.create((12, 40, 40), "float32", "random", seed=3, voxel_offset=(1, 2, 3))
    inferencer = build_inferencer(
        (6, 20, 20), (4, 16, 16), (2, 8, 8), framework="identity", device="cpu", batch_size=3
    )
    out = inferencer(chunk)
    margin = inferencer.grid.read_margin
    assert margin == Cartesian(1, 2, 2) + (2, 8, 8)  # patch crop margin + the overlap
    assert out.bbox == chunk.bbox.grow(-margin)
    assert out.layer_type is LayerType.IMAGE  # the identity backend's default
    np.testing.assert_allclose(out.array[0], chunk.crop(out.bbox).array, atol=1e-6)


@pytest.mark.parametrize(
    "grid",
    [
        dict(input_patch_size=(6, 20, 20), output_patch_size=(4, 16, 16)),
        dict(input_patch_size=(4, 16, 16), output_crop_margin=(1, 3, 2)),
        dict(input_patch_size=(4, 16, 16), mask_output_chunk=True),
    ],
)
def test_the_read_margin_is_what_a_plan_loses_on_each_side(grid):
    box = BoundingBox((5, 7, 9), (25, 87, 99))
    plan = PatchGrid.create(**grid).plan(box)
    margin = PatchGrid.create(**grid).read_margin
    assert plan.output_bbox.start - box.start == margin == box.stop - plan.output_bbox.stop


def test_whole_chunk_mode_crops_no_overlap_by_default():
    assert PatchGrid.create((4, 16, 16), output_patch_overlap=(2, 8, 8)).read_margin == (2, 8, 8)
    whole = PatchGrid.create((4, 16, 16), output_patch_overlap=(2, 8, 8), whole_chunk=True)
    assert whole.read_margin == (0, 0, 0)


def test_a_pytorch_model_and_the_engine_options(tmp_path):
    model = models.write(tmp_path, "net.py", models.PATCH_DEPENDENT, CROP=(0, 0, 0), CHANNELS=2)
    inferencer = build_inferencer(
        (4, 16, 16),
        mask_output_chunk=True,
        framework="pytorch",
        model_path=str(model),
        device="cpu",
        num_output_channels=2,
        dtype="float16",
        batch_size=2,
    )
    out = inferencer(Chunk.create((4, 24, 24), "uint8", "random", seed=1))
    assert out.shape == (2, 4, 24, 24) and out.dtype == np.float16
    assert out.layer_type is LayerType.PROBABILITY_MAP and inferencer.batch_size == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(framework="pytorch"), "`framework` pytorch needs `model_path`"),
        (dict(framework="identity", num_threads=0), "`num_threads` 0 must be at least 1"),
        (dict(framework="identity", device="tpu"), "`device` 'tpu': expected auto, cpu"),
        (dict(framework="identity", batch_size=0), "`batch_size` 0 must be at least 1"),
        (dict(framework="identity", output_patch_size=(5, 8, 8)), "`output_patch_size` 5 8 8"),
    ],
)
def test_errors_name_the_parameter(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        build_inferencer((4, 16, 16), device=kwargs.pop("device", "cpu"), **kwargs)


def test_the_operator_builds_the_same_inferencer(run_cli, tmp_path):
    chunk = Chunk.create((8, 48, 48), "uint8", "random", seed=2)
    model = models.write(tmp_path, "net.py", models.PATCH_DEPENDENT, CROP=(1, 4, 4), CHANNELS=3)
    options = dict(output_patch_size=(6, 24, 24), output_patch_overlap=(2, 8, 8))
    expected = build_inferencer(
        (8, 32, 32), framework="pytorch", model_path=str(model), device="cpu", **options
    )(chunk)
    run_cli(
        "create-chunk -s 8 48 48 -t uint8 --pattern random --seed 2 -o image "
        f"inference -i image -o out -f pytorch -m {model} -s 8 32 32 -z 6 24 24 -v 2 8 8 "
        "--device cpu write-h5 -i out -f out.h5"
    )
    with h5py.File(tmp_path / "out.h5") as f:
        np.testing.assert_array_equal(f["main"][()], expected.array)
        assert tuple(f["voxel_offset"][()]) == tuple(expected.voxel_offset)
