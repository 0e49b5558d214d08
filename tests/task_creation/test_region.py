"""Regions and task grids: start/stop/size, a bbox or bounds → one BoundingBox."""

import pytest

from chunkflow.errors import ParameterError
from chunkflow.geometry import BoundingBox, Cartesian, grid_bboxes
from chunkflow.task_creation.region import (
    InputInfo,
    box_from,
    box_or,
    grid_region,
    inference_region,
    region_at_mip,
    task_grid,
)


def test_box_from_start_with_stop_or_size():
    box = BoundingBox((1, 2, 3), (4, 6, 8))
    assert box_from((1, 2, 3), stop=(4, 6, 8)) == box
    assert box_from((1, 2, 3), size=(3, 4, 5)) == box
    other = BoundingBox((0, 0, 0), (1, 1, 1))
    assert box_from(None, bbox=other) == other  # a bbox stands for start/stop/size


@pytest.mark.parametrize(
    "start, stop, size, message",
    [
        (
            None,
            (1, 1, 1),
            None,
            "the box needs `start` with exactly one of `stop` or `size`, or a volume",
        ),
        ((0, 0, 0), (1, 1, 1), (1, 1, 1), "needs `start` with exactly one of `stop` or `size`"),
        ((0, 0, 0), None, None, "needs `start` with exactly one of `stop` or `size`"),
        ((2, 2, 2), (1, 4, 4), None, "the box 2-1_2-4_2-4 is empty"),
    ],
)
def test_box_from_names_the_parameters(start, stop, size, message):
    with pytest.raises(ParameterError, match=message):
        box_from(start, stop, size, what="the box", alternative="a volume")


def test_region_in_mip0_voxels():
    assert region_at_mip((0, 8, 8), (10, 24, 40), mip=2) == BoundingBox((0, 2, 2), (10, 6, 10))
    with pytest.raises(ParameterError, match="`start` 0 2 0 .* not divisible by 1 4 4"):
        region_at_mip((0, 2, 0), size=(10, 16, 16), mip=2)
    with pytest.raises(ParameterError, match="stop 10 18 16 .* not divisible by 1 4 4"):
        region_at_mip((0, 0, 0), size=(10, 18, 16), mip=2)
    with pytest.raises(ParameterError, match="`stop` or `size`"):
        region_at_mip((0, 0, 0))


def test_grid_region_sources():
    chunk = Cartesian(2, 4, 4)
    bounds = BoundingBox((0, 0, 0), (10, 20, 20))
    assert grid_region(chunk, bounds=bounds) == bounds
    assert grid_region(chunk, bounds=bounds, start=(1, 1, 1)) == BoundingBox((1, 1, 1), bounds.stop)
    assert grid_region(chunk, bounds=bounds, start=(1, 1, 1), size=(2, 2, 2)).shape == (2, 2, 2)
    box = BoundingBox((5, 5, 5), (6, 6, 6))
    assert grid_region(chunk, bbox=box) == box
    # grid tasks per axis, from start (or 0), stride apart
    assert grid_region(chunk, grid=(2, 1, 3)) == BoundingBox((0, 0, 0), (4, 4, 12))
    assert grid_region(chunk, start=(1, 0, 0), grid=(2, 1, 1), stride=(1, 4, 4)).shape == (3, 4, 4)
    with pytest.raises(ParameterError, match="the region of interest needs `start`"):
        grid_region(chunk, start=(0, 0, 0))


def test_task_grid_index_range_and_block_alignment():
    chunk = Cartesian(4, 4, 4)
    grid = task_grid(chunk, start=(0, 0, 0), stop=(4, 8, 8), index_start=1, index_stop=3)
    assert [b.string for b in grid.tasks] == ["0-4_0-4_4-8", "0-4_4-8_0-4"]
    grown = task_grid(chunk, start=(1, 1, 1), stop=(4, 7, 7), block_size=(4, 4, 4))
    assert grown.region == BoundingBox((0, 0, 0), (4, 8, 8))
    assert list(grown.tasks) == list(grid_bboxes(grown.region, chunk))
    with pytest.raises(ParameterError, match=r"`align_to_shards` needs .* \(`volume_path`\)"):
        task_grid(chunk, start=(0, 0, 0), stop=(4, 8, 8), align_to_shards=True)


def test_inference_region_shrinks_the_input_by_the_margin():
    bounds = BoundingBox((0, 0, 0), (20, 100, 100))
    source = InputInfo(bounds, Cartesian(40, 4, 4), Cartesian(40, 4, 4), 1, 1)
    margin = Cartesian(2, 10, 10)
    assert inference_region(margin, source=source) == bounds.grow(-margin)
    inside = inference_region(margin, source=source, start=(0, 0, 0), size=(10, 50, 50))
    assert inside == BoundingBox((2, 10, 10), (10, 50, 50))
    with pytest.raises(ParameterError, match="does not overlap"):
        inference_region(margin, source=source, start=(30, 0, 0), size=(2, 4, 4))
    with pytest.raises(ParameterError, match="the patch is larger than the region"):
        inference_region(Cartesian(10, 10, 10), source=source, input_path="in")
    with pytest.raises(ParameterError, match="missing input volume: give `input_path`"):
        inference_region(margin)
    assert inference_region(margin, start=(0, 0, 0), stop=(1, 2, 2)).shape == (1, 2, 2)


def test_box_or_falls_back_to_a_default():
    task_box = BoundingBox((0, 0, 0), (2, 2, 2))
    assert box_or(task_box) == task_box and box_or(None) is None
    assert box_or(task_box, (1, 1, 1), size=(1, 1, 1)) == BoundingBox((1, 1, 1), (2, 2, 2))
    with pytest.raises(ParameterError, match="cutout needs `start`"):
        box_or(task_box, stop=(4, 4, 4), what="cutout")  # a stop alone is not ignored
    with pytest.raises(ParameterError, match="cutout 2-2_0-2_0-2 is empty"):
        box_or(BoundingBox((2, 0, 0), (2, 2, 2)), what="cutout")


def test_box_or_grows_by_a_margin():
    task_box = BoundingBox((4, 4, 4), (8, 8, 8))
    assert box_or(task_box, margin=(1, 2, 3)) == BoundingBox((3, 2, 1), (9, 10, 11))
    assert box_or(None, margin=(1, 1, 1)) is None
    grown = box_or(task_box, (0, 0, 0), size=(2, 2, 2), margin=(1, 1, 1))
    assert grown == BoundingBox((-1, -1, -1), (3, 3, 3))
