"""Label volumes keep their ids through every geometric augmentation, whatever their dtype.

The gala ground truth stored as uint16 (as label volumes often are) used to be taken for an
image: elastic augmentation interpolated it linearly and invented thousands of ids. Integer data
other than uint8 is now a segmentation unless declared otherwise, and whatever `train` uses as
labels (or mask) is resampled with nearest neighbour whatever its dtype or layer type.
"""

import h5py
import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox
from chunkflow.training.augment import ElasticTransform, elastic_augment, simple_augment
from chunkflow.training.data import ExampleMaker, PipelineSpec
from chunkflow.training.targets import grow_boundary
from tests.conftest import GALA, read_stack

ELASTIC = dict(
    control_point_spacing=(4, 20, 20),
    jitter_sigma=(0.0, 3.0, 3.0),
    rotation_interval=(0.2, 1.3),
    prob_slip=0.1,
    prob_shift=0.1,
    max_misalign=3,
)


@pytest.fixture(scope="module")
def gala_uint16():
    """The gala training image and its ground truth stored as uint16, no layer types given.

    gala numbers its 87 objects 1..87, so an interpolated value would mostly be another existing
    id; the ids are spread over the uint16 range (x 719), as in real label volumes, where an
    interpolated value is almost always an id that does not exist.
    """
    image = Chunk(read_stack(GALA / "train-image.h5")[:20], (0, 0, 0), (10, 10, 10))
    ids = read_stack(GALA / "train-gt.lzf.h5")[:20].astype(np.uint16) * np.uint16(719)
    return image, Chunk(ids, (0, 0, 0), (10, 10, 10))


def new_ids(out, labels) -> set:
    return set(np.unique(np.asarray(out)).tolist()) - set(np.unique(np.asarray(labels)).tolist())


def test_uint16_labels_are_a_segmentation_by_default(gala_uint16):
    image, labels = gala_uint16
    assert image.is_image and labels.is_segmentation


def test_elastic_augment_invents_no_ids(gala_uint16):
    image, labels = gala_uint16
    for seed in range(3):
        out = elastic_augment(
            {"image": image, "labels": labels},
            np.random.default_rng(seed),
            output_size=(16, 64, 64),
            **ELASTIC,
        )
        assert out["labels"].dtype == np.uint16 and out["labels"].is_segmentation
        assert not new_ids(out["labels"], labels)
        assert len(np.unique(out["labels"].array)) > 5  # a real warp of real labels
    # the test would catch interpolation: resampled linearly the same labels get new ids
    transform = ElasticTransform.random((16, 64, 64), np.random.default_rng(0), **ELASTIC)
    source = labels.crop(transform.source_bbox.shift((2, 18, 68)))
    assert len(new_ids(transform.apply(source, (2, 18, 68), order=1), labels)) > 100


def test_simple_augment_invents_no_ids(gala_uint16):
    image, labels = gala_uint16
    square = labels.crop(BoundingBox((0, 0, 0), (20, 100, 100)))  # y and x get transposed
    raw = image.crop(square.bbox)
    for seed in range(4):
        out = simple_augment({"image": raw, "labels": square}, np.random.default_rng(seed))
        assert out["labels"].dtype == np.uint16 and out["labels"].is_segmentation
        assert sorted(np.unique(out["labels"].array)) == sorted(np.unique(square.array))


@pytest.mark.parametrize("declared", [None, "image"])
def test_train_augmentation_keeps_label_ids_whatever_the_layer_type(gala_uint16, declared):
    image, labels = gala_uint16
    # even labels (and a mask) declared as images are ids and flags to train
    labels = Chunk(labels.array, labels.voxel_offset, labels.voxel_size, declared)
    mask = Chunk((labels.array > 0).astype(np.uint8) * 255, (0, 0, 0), (10, 10, 10), "image")
    spec = PipelineSpec(input_size=(8, 48, 48), elastic=ELASTIC)
    maker = ExampleMaker([{"image": image, "label": labels, "mask": mask}], spec, seed=1)
    seen = set()
    for k in range(6):
        example = maker[k]
        ids = set(np.unique(example["label"]).tolist())
        assert ids <= set(np.unique(labels.array).tolist())
        seen |= ids
    assert len(seen) > 5


def test_grow_boundary_returns_a_segmentation_whatever_its_input_type():
    labels = Chunk(np.array([[[1, 1, 2, 2, 2]]], np.uint8))  # uint8 without a type: an image
    grown = grow_boundary(labels, 1)
    assert labels.is_image and grown.is_segmentation and grown.dtype == np.uint8
    assert grown.array.tolist() == [[[1, 0, 0, 2, 2]]]


def test_cli_uint8_labels_declared_a_segmentation_keep_their_ids(run_cli, tmp_path):
    """uint8 is an image by default; labels stored as uint8 are declared with -l."""
    run_cli(
        f"read-h5 -f {GALA / 'train-gt.lzf.h5'} -e uint8 -l segmentation -o labels "
        "elastic-augment -i labels --seed 3 --rotation-interval 10 80 --output-size 16 64 64 "
        "write-h5 -i labels -f out.h5"
    )
    with h5py.File(tmp_path / "out.h5") as f:
        out = f["main"][()]
    original = read_stack(GALA / "train-gt.lzf.h5")
    assert out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= set(np.unique(original).tolist())


def test_cli_uint16_labels_through_both_augmentations(run_cli, tmp_path):
    """The chain of the issue: gala ground truth read as uint16, augmented with the image."""
    run_cli(
        f"read-h5 -f {GALA / 'train-image.h5'} -o image -t 0 0 0 -s 20 100 100 "
        f"read-h5 -f {GALA / 'train-gt.lzf.h5'} -e uint16 -o labels -t 0 0 0 -s 20 100 100 "
        "simple-augment -i image,labels --seed 1 "
        "elastic-augment -i image,labels --seed 2 --output-size 16 64 64 "
        "--rotation-interval 0 90 --prob-slip 0.05 --prob-shift 0.05 --max-misalign 5 "
        "write-h5 -i labels -f labels.h5"
    )
    with h5py.File(tmp_path / "labels.h5") as f:
        out = f["main"][()]
        assert f.attrs["layer_type"] == "segmentation"
    original = read_stack(GALA / "train-gt.lzf.h5")[:20, :100, :100]
    assert out.dtype == np.uint16
    assert set(np.unique(out).tolist()) <= set(np.unique(original).tolist())
