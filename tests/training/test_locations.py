"""chunkflow.training.locations: random boxes leave room for the context they need."""

import numpy as np
import pytest

from chunkflow.context import grow_by
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.training.locations import random_box, stored_bounds


def test_random_box_is_seeded_and_leaves_room_for_context():
    bounds = BoundingBox((0, 0, 0), (10, 50, 50))
    grow = grow_by((1, 5, 5), (0, 5, 5))
    draws = [random_box(bounds, (2, 10, 10), np.random.default_rng(3), grow) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = np.random.default_rng(4)
    for _ in range(200):
        assert bounds.contains(grow(random_box(bounds, (2, 10, 10), rng, grow)))
    with pytest.raises(ChunkflowError, match="no box of size 10,10,10 with its context"):
        random_box(bounds, (10, 10, 10), rng, grow)


def test_random_box_without_context_may_fill_the_bounds():
    bounds = BoundingBox((2, 3, 4), (6, 9, 12))
    assert random_box(bounds, bounds.shape, np.random.default_rng(0)) == bounds


def test_stored_bounds_of_an_h5_dataset_choose_it_as_read_h5_does(tmp_path):
    from chunkflow.chunk import Chunk
    from chunkflow.io.h5 import read_h5, write_h5

    path = str(tmp_path / "a.h5")
    write_h5(Chunk(np.zeros((2, 3, 4), np.uint8), (5, 6, 7), (4, 4, 40)), path, "raw")
    assert stored_bounds(path) == read_h5(path).bbox == BoundingBox((5, 6, 7), (7, 9, 11))
    write_h5(Chunk(np.zeros((1, 1, 1), np.uint8)), path, "gt")
    with pytest.raises(ChunkflowError, match="which dataset.*/gt, /raw"):
        stored_bounds(path)
    assert stored_bounds(path, "/gt") == BoundingBox((0, 0, 0), (1, 1, 1))
