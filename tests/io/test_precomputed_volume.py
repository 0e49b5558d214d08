"""Cutouts with context, info from a chunk and saves with a thumbnail, called from Python."""

from __future__ import annotations

import numpy as np
import pytest

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox
from chunkflow.io.precomputed import read_precomputed, volume_exists
from chunkflow.io.precomputed_volume import cutout_with_context, info_parameters, save_chunk


def test_info_parameters_take_what_is_not_given_from_the_chunk():
    chunk = Chunk(np.zeros((2, 4, 6, 8), np.uint16), (1, 2, 3), (4, 5, 6), LayerType.IMAGE)
    info = info_parameters(chunk, dtype=np.dtype("uint8"), voxel_offset=(0, 0, 0))
    assert info["num_channels"] == 2 and info["dtype"] == np.dtype("uint8")
    assert tuple(info["volume_size"]) == (4, 6, 8) and tuple(info["voxel_size"]) == (4, 5, 6)
    assert tuple(info["voxel_offset"]) == (0, 0, 0)


def test_info_parameters_without_a_chunk_need_a_size():
    info = info_parameters(volume_size=(2, 2, 2))
    assert info == dict(
        volume_size=(2, 2, 2),
        voxel_size=(1, 1, 1),
        voxel_offset=(0, 0, 0),
        dtype="uint8",
        num_channels=1,
        layer_type="image",
    )
    with pytest.raises(ParameterError, match="`volume_size` is required"):
        info_parameters()


def test_save_chunk_writes_its_thumbnail_or_refuses_before_writing(tmp_path):
    path = f"file://{tmp_path}/img"
    chunk = Chunk(np.full((4, 8, 8), 200, np.uint8))
    with pytest.raises(ChunkflowError, match="divisible"):
        save_chunk(chunk, path, create_thumbnail=True, thumbnail_mip=4)
    assert not volume_exists(path)
    where, mip = save_chunk(
        chunk, path, block_size=(4, 8, 8), create_thumbnail=True, thumbnail_mip=1
    )
    assert mip == 1 and volume_exists(where)
    np.testing.assert_array_equal(read_precomputed(path, chunk.bbox).array, chunk.array)
    assert save_chunk(chunk, path) is None


def test_cutout_with_context_grows_as_far_as_the_data_goes(tmp_path):
    path = f"file://{tmp_path}/img"
    data = Chunk(np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8))
    save_chunk(data, path, block_size=(4, 8, 8))
    base = BoundingBox((0, 2, 2), (4, 4, 4))
    np.testing.assert_array_equal(cutout_with_context(path, base).array, data.array[:, 2:4, 2:4])
    grown = cutout_with_context(path, base, BoundingBox((0, 0, 0), (4, 12, 12)))
    assert grown.bbox == data.bbox
    np.testing.assert_array_equal(grown.array, data.array)
    with pytest.raises(ChunkflowError, match="outside"):
        cutout_with_context(path, BoundingBox((0, 6, 6), (4, 10, 10)))
    padded = cutout_with_context(path, BoundingBox((0, 6, 6), (4, 10, 10)), fill_missing=True)
    assert padded.array[:, 2:, 2:].max() == 0 and padded.array[:, :2, :2].min() > 0
