import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.segmentation.labels import (
    connected_components,
    mask_out_objects,
    renumber,
    threshold,
)


def test_threshold_is_uint8_segmentation():
    out = threshold(Chunk(np.array([[[0.2, 0.5, 0.7]]]), (1, 2, 3)), 0.5)
    assert out.dtype == np.uint8 and out.is_segmentation and out.voxel_offset == (1, 2, 3)
    assert out.array.tolist() == [[[0, 0, 1]]]


def test_cc_dtype_does_not_depend_on_input():
    small = connected_components(Chunk(np.array([[[1, 0, 1]]], np.uint8)))
    big = connected_components(Chunk(np.array([[[1, 0, 1]]], np.uint64)))
    probability = connected_components(Chunk(np.array([[[0.9, 0.1, 0.8]]])), threshold=0.5)
    for out in (small, big, probability):
        assert out.dtype == np.uint32 and out.array.tolist() == [[[1, 0, 2]]]


def test_cc_connectivity():
    diagonal = np.zeros((1, 2, 2), np.uint8)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = 1
    assert connected_components(Chunk(diagonal), connectivity=6).array.max() == 2
    assert connected_components(Chunk(diagonal), connectivity=18).array.max() == 1
    with pytest.raises(ChunkflowError, match="needs `threshold`"):
        connected_components(Chunk(np.zeros((1, 2, 2), np.float32)))


@pytest.fixture(scope="module")
def pinky40(pinky40_labels):
    return Chunk(pinky40_labels, layer_type="segmentation")


@pytest.mark.parametrize("connectivity, expected", [(26, 3619), (6, 4744)])
def test_cc_on_real_pinky40_segmentation(pinky40, connectivity, expected):
    assert len(np.unique(np.asarray(pinky40))) - 1 == 2523
    out = connected_components(pinky40, connectivity=connectivity)
    assert int(out.array.max()) == expected


def test_mask_out_objects_and_renumber():
    seg = Chunk(np.array([[[1, 1, 1, 2, 3, 3, 0, 7]]], np.uint64))
    assert mask_out_objects(seg, dust_threshold=2).array.tolist() == [[[1, 1, 1, 0, 3, 3, 0, 0]]]
    assert mask_out_objects(seg, selected={3, 7}).array.tolist() == [[[0, 0, 0, 0, 3, 3, 0, 7]]]
    assert mask_out_objects(seg, removed={1}).array.tolist() == [[[0, 0, 0, 2, 3, 3, 0, 7]]]
    renumbered, mapping = renumber(seg)
    assert renumbered.array.tolist() == [[[1, 1, 1, 2, 3, 3, 0, 4]]] and mapping[7] == 4
