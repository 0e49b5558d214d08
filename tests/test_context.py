"""chunkflow.context: the request pass, padding, world-coordinate alignment."""

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.context import Context, Request, align, centred, cover, grow_by, pad, plan
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.training.margins import affinity_grow

BOX = BoundingBox((0, 0, 0), (4, 8, 8))


def test_plan_composes_context_backwards_and_stops_at_readers():
    chain = [
        Context((), ("raw",)),  # a reader
        Context((), ("gt",)),
        Context(("raw", "gt"), ("raw", "gt"), grow_by((1, 2, 2), (1, 2, 2))),  # a warp
        None,  # an operator that declares nothing: requests pass it
        Context(("gt",), ("affs",), affinity_grow([(1, 0, 0), (0, 0, -3)])),
        Context(("raw",), ("norm",)),  # voxel-wise
    ]
    requests = plan(chain)
    # the warp's inputs cover the union of what its outputs need, grown by its context
    assert requests[0].box("raw", BOX) == BoundingBox((-2, -2, -2), (5, 10, 13))
    assert requests[1].box("gt", BOX) == BoundingBox((-2, -2, -2), (5, 10, 13))
    assert requests[2].box("gt", BOX) == BoundingBox((-1, 0, 0), (4, 8, 11))
    assert requests[4].box("affs", BOX) == BOX and not requests[4].asks("affs")
    # what readers read, as a task source before them sees it
    assert requests[0].reads.keys() == {"gt"} and not requests[1].reads
    source = plan([None, *chain])[0]  # a task source before them all
    assert source.reads["gt"](BOX) == BoundingBox((-2, -2, -2), (5, 10, 13))


def test_plan_with_a_base_that_chooses_the_output_box():
    chain = [Context((), ("raw",)), Context(("raw",), ("raw",), grow_by(2, 2), centred((2, 4, 4)))]
    assert plan(chain)[0].box("raw", BOX) == BoundingBox((-1, 0, 0), (5, 8, 8))


@pytest.mark.parametrize("mode", ["zero", "reflect", "edge"])
def test_pad_equals_numpy_and_keeps_geometry(mode):
    array = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    chunk = Chunk(array, (10, 20, 30), (4, 4, 40))
    out = pad(chunk, BoundingBox((9, 20, 28), (12, 24, 34)), mode)
    numpy_mode = {"zero": "constant"}.get(mode, mode)
    np.testing.assert_array_equal(out.array, np.pad(array, [(1, 0), (0, 1), (2, 0)], numpy_mode))
    assert out.voxel_offset == (9, 20, 28) and out.voxel_size == (4, 4, 40)
    assert out.dtype == np.uint16


def test_reflect_wider_than_the_data_keeps_mirroring():
    chunk = Chunk(np.arange(3, dtype=np.uint8).reshape(1, 1, 3))
    out = pad(chunk, BoundingBox((0, 0, -5), (1, 1, 3)), "reflect")
    assert out.array.ravel().tolist() == [1, 0, 1, 2, 1, 0, 1, 2]


def test_cover_refuses_without_a_mode_naming_box_and_data():
    chunk = Chunk(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ChunkflowError, match=r"chunk 'raw' must cover -1-4_0-8_0-8 .* only 0-4_"):
        cover(chunk, BoundingBox((-1, 0, 0), (4, 8, 8)), None, "raw", "x")
    assert cover(chunk, BoundingBox((1, 1, 1), (2, 2, 2)), None, "raw").shape == (1, 1, 1)


def test_align_crops_to_the_shared_world_region_across_voxel_sizes():
    fine = Chunk(np.zeros((8, 8, 8), np.uint8), (0, 0, 0), (4, 4, 4))  # world 0-32
    coarse = Chunk(np.zeros((4, 4, 4), np.uint8), (1, 1, 1), (8, 8, 8))  # world 8-40
    out = align({"fine": fine, "coarse": coarse})
    assert out["fine"].bbox == BoundingBox((2, 2, 2), (8, 8, 8))
    assert out["coarse"].bbox == BoundingBox((1, 1, 1), (4, 4, 4))
    apart = Chunk(np.zeros((2, 2, 2), np.uint8), (10, 10, 10), (8, 8, 8))
    with pytest.raises(ChunkflowError, match="do not overlap in world coordinates"):
        align({"fine": fine, "apart": apart})


def test_a_task_source_leaves_to_pad_what_pad_fills():
    chain = [
        None,  # a task source
        Context((), ("raw",)),
        Context(("raw",), ("raw",), fills=True),  # pad
        Context(("raw",), ("affs",), grow_by(1, 0)),
    ]
    requests = plan(chain)
    assert requests[1].box("raw", BOX) == BoundingBox((-1, -1, -1), (4, 8, 8))  # reads it
    assert requests[0].reads["raw"](BOX) == BOX  # but need not find it in the data


def test_reads_around_is_the_union_of_what_the_readers_after_read():
    box = BoundingBox((0, 0, 0), (4, 4, 4))
    assert Request().reads_around(box) == box
    request = Request(reads=dict(a=lambda b: b.grow((1, 0, 0)), b=lambda b: b.grow((0, 2, 2))))
    assert request.reads_around(box) == BoundingBox((-1, -2, -2), (5, 6, 6))
