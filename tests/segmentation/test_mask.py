"""MaskVolume: chunks masked by a coarser precomputed volume, from Python."""

from __future__ import annotations

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.precomputed import create_info, write_precomputed
from chunkflow.segmentation.mask import MaskVolume


@pytest.fixture
def mask_path(tmp_path):
    """Mip 1 (voxel size 1 2 2) keeps x < 4 there, x < 8 at mip 0."""
    path = f"file://{tmp_path}/mask"
    create_info(path, (8, 16, 16), max_mip=1, factor=(1, 2, 2), block_size=(8, 8, 8))
    keep = np.zeros((8, 8, 8), np.uint8)
    keep[:, :, :4] = 1
    write_precomputed(Chunk(keep, (0, 0, 0), (1, 2, 2)), path, mip=1)
    return path


def test_apply_zeroes_where_the_coarser_mask_is_zero(mask_path):
    image = Chunk(np.full((8, 16, 16), 7, np.uint8))
    right = Chunk(np.full((8, 16, 8), 5, np.uint8), (0, 0, 8))
    masked, masked_right = MaskVolume(mask_path, 0, 1).apply([image, right])
    assert masked.array[:, :, :8].min() == 7 and not masked.array[:, :, 8:].any()
    assert not masked_right.array.any()
    (inverted,) = MaskVolume(mask_path, 0, 1).apply([image], inverse=True)
    assert not inverted.array[:, :, :8].any() and inverted.array[:, :, 8:].min() == 7


def test_check_all_zero_returns_none_only_when_the_mask_zeroes_everything(mask_path):
    right = Chunk(np.ones((8, 16, 8), np.uint8), (0, 0, 8))
    assert MaskVolume(mask_path, 0, 1).apply([right], check_all_zero=True) is None
    assert MaskVolume(mask_path, 0, 1).apply([right], inverse=True, check_all_zero=True)


def test_chunks_at_another_voxel_size_are_refused_by_name(mask_path):
    coarse = Chunk(np.ones((8, 8, 8), np.uint8), voxel_size=(1, 2, 2))
    with pytest.raises(ChunkflowError, match="'img'.*the mask volume .* at mip 0"):
        MaskVolume(mask_path, 0, 1).apply([coarse], names=["img"])
