import numpy as np
import pytest
from scipy import ndimage

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.image.filters import channel_voting, gaussian_filter


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_gaussian_keeps_dtype_and_smooths(dtype):
    rng = np.random.default_rng(0)
    array = (rng.random((4, 32, 32)) * 200).astype(dtype)
    chunk = Chunk(array, (1, 2, 3), (40, 4, 4), "image")  # a uint16 image is declared one
    out = gaussian_filter(chunk, 1.5)
    assert out.dtype == dtype and out.shape == array.shape
    assert out.voxel_offset == (1, 2, 3) and out.voxel_size == (40, 4, 4)
    assert out.array.astype(float).var() < 0.2 * array.astype(float).var()
    assert abs(out.array.astype(float).mean() - array.astype(float).mean()) < 1.0


def test_gaussian_2d_stays_in_its_section_3d_does_not():
    array = np.zeros((3, 9, 9), dtype=np.float32)
    array[1, 4, 4] = 1.0
    flat = gaussian_filter(Chunk(array), 1.0).array
    assert not flat[0].any() and not flat[2].any()
    np.testing.assert_allclose(flat[1], ndimage.gaussian_filter(array[1], 1.0), rtol=1e-6)
    np.testing.assert_allclose(flat[1].sum(), 1.0, rtol=1e-5)
    deep = gaussian_filter(Chunk(array), 1.0, three_d=True).array
    assert deep[0, 4, 4] > 0 and deep[2, 4, 4] > 0
    np.testing.assert_allclose(deep, ndimage.gaussian_filter(array, 1.0), rtol=1e-5, atol=1e-7)


def test_gaussian_integers_round_and_channels_stay_apart():
    np.testing.assert_array_equal(
        gaussian_filter(Chunk(np.full((2, 5, 5), 100, dtype=np.uint8)), 2.0).array, 100
    )
    affs = np.zeros((3, 1, 7, 7), dtype=np.float32)
    affs[1, 0, 3, 3] = 1.0
    out = gaussian_filter(Chunk(affs), 1.0)
    assert out.is_affinity_map and not out.array[0].any() and not out.array[2].any()
    assert out.array[1, 0, 3, 2] > 0


def test_gaussian_errors():
    with pytest.raises(ChunkflowError, match="`sigma` 0"):
        gaussian_filter(Chunk(np.zeros((1, 4, 4), dtype=np.uint8)), 0)
    with pytest.raises(ChunkflowError, match="segmentation"):
        gaussian_filter(Chunk(np.zeros((1, 4, 4), dtype=np.uint32)), 1.0)


def test_channel_voting_on_a_handmade_map():
    probs = np.zeros((3, 1, 2, 3), dtype=np.float32)
    # voxel:          (0,0) (0,1) (0,2) (1,0) (1,1) (1,2)
    probs[0, 0] = [[0.0, 0.7, 0.0], [0.4, 0.2, 0.0]]
    probs[1, 0] = [[0.0, 0.2, 0.3], [0.4, 0.3, 0.0]]
    probs[2, 0] = [[0.0, 0.1, 0.6], [0.2, 0.5, 0.0]]
    out = channel_voting(Chunk(probs, (2, 4, 6), (40, 4, 4)))
    assert out.dtype == np.uint8 and out.is_segmentation and out.shape == (1, 2, 3)
    assert out.voxel_offset == (2, 4, 6) and out.voxel_size == (40, 4, 4)
    # all zero -> 0; argmax + 1; the tie 0.4/0.4 goes to the lowest channel
    assert out.array[0].tolist() == [[0, 1, 3], [1, 3, 0]]


def test_channel_voting_needs_channels():
    with pytest.raises(ChunkflowError, match=r"\(c, z, y, x\) map"):
        channel_voting(Chunk(np.zeros((2, 2, 2), dtype=np.float32)))
