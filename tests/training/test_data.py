"""Training examples: shapes, repeatability, alignment of targets, masks and bad samples."""

from __future__ import annotations

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.training.data import ExampleMaker, PipelineSpec, check_samples, make_loader
from chunkflow.training.targets import add_affinities
from tests.training.synthetic import cells

SPEC = dict(input_size=(8, 24, 24), elastic=dict(jitter_sigma=(0, 1, 1)))


def test_example_shapes_and_dtypes():
    spec = PipelineSpec(input_size=(8, 24, 24), output_size=(4, 16, 16))
    example = ExampleMaker([cells()], spec, seed=1)[0]
    assert example["image"].shape == (1, 8, 24, 24) and example["image"].dtype == np.float32
    assert 0 <= example["image"].min() and example["image"].max() <= 1
    assert example["label"].shape == (4, 16, 16)
    assert (
        example["target:affinities"].shape == example["weight:affinities"].shape == (3, 4, 16, 16)
    )
    assert example["target:affinities"].dtype == example["weight:affinities"].dtype == np.float32


def test_examples_repeat_by_seed_and_index():
    maker = ExampleMaker([cells(), cells(seed=1)], PipelineSpec(**SPEC), seed=7)
    again = ExampleMaker([cells(), cells(seed=1)], PipelineSpec(**SPEC), seed=7)
    for k in (0, 5):
        a, b = maker[k], again[k]
        for key in ("image", "label", "target:affinities", "weight:affinities"):
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(maker[0]["image"], maker[1]["image"])
    other = ExampleMaker([cells(), cells(seed=1)], PipelineSpec(**SPEC), seed=8)
    assert not np.array_equal(maker[0]["image"], other[0]["image"])


def test_targets_are_the_affinities_of_the_augmented_labels():
    maker = ExampleMaker([cells()], PipelineSpec(**SPEC), seed=3)
    for k in range(4):
        example = maker[k]
        expected, known = add_affinities(Chunk(example["label"]))
        np.testing.assert_array_equal(example["target:affinities"], np.asarray(expected))
        assert np.all(example["weight:affinities"][np.asarray(known) == 0] == 0)
        # the image stays aligned with the labels: borders (label 0) are dark, cells bright
        image, label = example["image"][0], example["label"]
        assert image[label > 0].mean() > image[label == 0].mean() + 0.2


def test_balanced_weights_give_both_classes_equal_mass():
    example = ExampleMaker([cells()], PipelineSpec(input_size=(8, 24, 24)), seed=0)[2]
    for target, weight in zip(example["target:affinities"], example["weight:affinities"]):
        positive = weight[target > 0.5].sum()
        negative = weight[(target < 0.5) & (weight > 0)].sum()
        assert positive == pytest.approx(negative, rel=1e-4)


def test_batches_do_not_depend_on_the_number_of_workers():
    spec = PipelineSpec(**SPEC)
    serial = [b["image"].numpy() for b in make_loader([cells()], spec, 2, 0, seed=4, stop=3)]
    parallel = [b["image"].numpy() for b in make_loader([cells()], spec, 2, 2, seed=4, stop=3)]
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    # a run resumed at batch 2 sees the batch an uninterrupted run saw
    resumed = next(iter(make_loader([cells()], spec, 2, 0, seed=4, start=2, stop=3)))
    np.testing.assert_array_equal(resumed["image"].numpy(), serial[2])


def test_min_masked_draws_locations_inside_the_mask():
    sample = cells(shape=(12, 64, 64))
    mask = np.zeros((12, 64, 64), np.uint8)
    mask[:, :32, :32] = 1
    sample["mask"] = Chunk(mask)
    spec = PipelineSpec(input_size=(4, 16, 16), elastic=None, simple=False, min_masked=0.9)
    maker = ExampleMaker([sample], spec, seed=0)
    for k in range(10):
        known = maker[k]["weight:affinities"][2] > 0  # x affinities need p and p - e_x masked
        assert known.mean() > 0.8


def test_bad_samples_are_named():
    spec = PipelineSpec(input_size=(8, 24, 24))
    sample = cells()
    with pytest.raises(ChunkflowError, match="sample 0: no label chunk"):
        check_samples([{"image": sample["image"]}], spec)
    moved = cells(offset=(0, 0, 1))["label"]
    with pytest.raises(ChunkflowError, match="sample 0: chunk 'label' .* chunk 'image' .* do not"):
        check_samples([{"image": sample["image"], "label": moved}], spec)
    with pytest.raises(ChunkflowError, match="smaller than the training patch"):
        check_samples([cells(shape=(6, 40, 40))], spec)
    with pytest.raises(ChunkflowError, match="transposing axes 1,2 needs equal patch sizes"):
        PipelineSpec(input_size=(8, 24, 32))
    with pytest.raises(ChunkflowError, match="must fit centred"):
        PipelineSpec(input_size=(8, 24, 24), output_size=(8, 25, 25))


def test_a_sample_too_small_for_the_rotation_context_is_an_error():
    spec = PipelineSpec(input_size=(8, 36, 36))  # rotating 36x36 reads up to 52x52
    with pytest.raises(
        ChunkflowError,
        match=r"sample 0: \(8, 40, 40\) voxels is too small for the elastic transform: none of 20 "
        r"draws fits \(the smallest needs \(8, \d+, \d+\) voxels",
    ):
        for k in range(20):
            ExampleMaker([cells(shape=(8, 40, 40))], spec, seed=0)[k]


def test_context_around_the_output_gives_known_affinities_at_its_border():
    spec = PipelineSpec(input_size=(8, 24, 24), output_size=(4, 16, 16), elastic=None)
    example = ExampleMaker([cells()], spec, seed=0)[0]
    for c in range(3):
        first = [c, slice(None), slice(None), slice(None)]
        first[c + 1] = 0
        assert np.all(
            example["weight:affinities"][tuple(first)] > 0
        )  # unlike without context, below
    flat = ExampleMaker([cells()], PipelineSpec(input_size=(8, 24, 24), elastic=None), seed=0)
    assert np.all(flat[0]["weight:affinities"][0, 0] == 0)


def test_image_and_labels_stay_aligned_voxel_exactly_through_every_augmentation():
    # a 3-channel image holding each voxel's own z, y, x (linear interpolation reproduces it
    # exactly) and labels naming each voxel: after elastic, mirror and transpose and the crop to
    # a smaller output, every label is the voxel nearest to where the image was read
    shape = (24, 60, 60)
    coordinates = np.stack(
        np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    )
    ids = np.arange(1, np.prod(shape) + 1, dtype=np.uint32).reshape(shape)
    for voxel_size in ((1, 1, 1), (40, 4, 4)):
        sample = {
            "image": Chunk(coordinates, voxel_size=voxel_size, layer_type="image"),
            "label": Chunk(ids, voxel_size=voxel_size),
        }
        spec = PipelineSpec(
            input_size=(12, 40, 40),
            output_size=(8, 24, 24),
            intensity=None,
            elastic=dict(jitter_sigma=(0.5, 2, 2), control_point_spacing=(4, 20, 20)),
        )
        maker = ExampleMaker([sample], spec, seed=2)
        for k in range(4):
            example = maker[k]
            z, y, x = spec.context
            read = example["image"][:, z : z + 8, y : y + 24, x : x + 24]
            voxel = np.stack(np.unravel_index(example["label"] - 1, shape))
            assert np.abs(voxel - read).max() <= 0.5 + 1e-4


def test_the_default_elastic_spacing_follows_the_sample_voxel_size():
    # the same world distance between control points along every axis
    for voxel_size, spacing in (((1, 1, 1), (40, 40, 40)), ((40, 4, 4), (4, 40, 40))):
        sample = cells(shape=(12, 64, 64))
        sample = {key: Chunk(c.array, voxel_size=voxel_size) for key, c in sample.items()}
        default = ExampleMaker([sample], PipelineSpec(input_size=(8, 32, 32)), seed=4)
        spec = PipelineSpec(input_size=(8, 32, 32), elastic=dict(control_point_spacing=spacing))
        explicit = ExampleMaker([sample], spec, seed=4)
        for k in range(3):
            np.testing.assert_array_equal(default[k]["image"], explicit[k]["image"])
            np.testing.assert_array_equal(default[k]["label"], explicit[k]["label"])
