import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian, grid_bboxes


class TestCartesian:
    def test_elementwise_arithmetic_with_vectors_tuples_and_scalars(self):
        a = Cartesian(1, 2, 3)
        assert a + Cartesian(1, 1, 1) == (2, 3, 4)
        assert a + (10, 20, 30) == (11, 22, 33)  # element-wise, never tuple concatenation
        assert (10, 20, 30) - a == (9, 18, 27)
        assert a * 2 == (2, 4, 6)
        assert Cartesian(7, 8, 9) // 2 == (3, 4, 4)
        assert Cartesian(7, 8, 9).ceildiv(2) == (4, 4, 5)
        assert -a == (-1, -2, -3)
        assert isinstance(a + 1, Cartesian)

    def test_exact_division_raises_when_not_divisible(self):
        assert Cartesian(4, 8, 8) / (2, 4, 4) == (2, 2, 2)
        with pytest.raises(ValueError):
            Cartesian(5, 8, 8) / 2

    def test_named_axes_and_xyz_boundary(self):
        a = Cartesian(1, 2, 3)
        assert (a.z, a.y, a.x) == (1, 2, 3)
        assert a.xyz == (3, 2, 1)
        assert Cartesian.from_xyz((3, 2, 1)) == a

    def test_rejects_wrong_length_and_non_integers(self):
        with pytest.raises(ValueError):
            Cartesian(1, 2)
        with pytest.raises(ValueError):
            Cartesian(1.5, 2, 3)
        assert Cartesian(2.0, 3, 4) == (2, 3, 4)

    def test_prod_min_max(self):
        assert Cartesian(2, 3, 4).prod == 24
        assert Cartesian(1, 5, 3).maximum((2, 2, 2)) == (2, 5, 3)
        assert Cartesian(1, 5, 3).minimum(2) == (1, 2, 2)


class TestBoundingBox:
    def test_string_round_trip(self):
        bbox = BoundingBox((0, 100, 200), (64, 612, 712))
        assert str(bbox) == "0-64_100-612_200-712"
        assert BoundingBox.from_string(str(bbox)) == bbox

    def test_string_with_negative_coordinates(self):
        bbox = BoundingBox((-5, -10, 0), (-2, 10, 4))
        assert bbox.string == "-5--2_-10-10_0-4"
        assert BoundingBox.from_string(bbox.string) == bbox

    def test_string_from_file_names(self):
        expected = BoundingBox((0, 1, 2), (3, 4, 5))
        assert BoundingBox.from_string("out/0-3_1-4_2-5.h5") == expected
        assert BoundingBox.from_string("gs://bucket/dir/0-3_1-4_2-5") == expected

    @pytest.mark.parametrize(
        "text", ["", "0-1_2-3", "a-b_c-d_e-f", "0:1_2:3_4:5", "0-1_2-3_4-5_6-7"]
    )
    def test_bad_strings_name_the_format(self, text):
        with pytest.raises(ChunkflowError, match="z0-z1_y0-y1_x0-x1"):
            BoundingBox.from_string(text)

    def test_immutable_and_hashable(self):
        bbox = BoundingBox((0, 0, 0), (1, 2, 3))
        with pytest.raises(AttributeError):
            bbox.start = (1, 1, 1)
        assert {bbox: 1}[BoundingBox((0, 0, 0), (1, 2, 3))] == 1

    def test_shape_and_emptiness(self):
        bbox = BoundingBox.from_delta((1, 2, 3), (4, 5, 6))
        assert bbox.stop == (5, 7, 9)
        assert bbox.shape == (4, 5, 6)
        assert bbox.voxel_count == 120
        assert BoundingBox((0, 0, 0), (0, 5, 5)).is_empty
        assert BoundingBox((0, 0, 0), (0, 5, 5)).voxel_count == 0

    def test_verbs(self):
        a = BoundingBox((0, 0, 0), (10, 10, 10))
        b = BoundingBox((5, 5, 5), (15, 15, 15))
        assert a.intersect(b) == BoundingBox((5, 5, 5), (10, 10, 10))
        assert a.union(b) == BoundingBox((0, 0, 0), (15, 15, 15))
        assert a.grow((1, 2, 3)) == BoundingBox((-1, -2, -3), (11, 12, 13))
        assert a.grow(-2) == BoundingBox((2, 2, 2), (8, 8, 8))
        assert a.shift((1, 1, 1)) == BoundingBox((1, 1, 1), (11, 11, 11))
        assert a.contains((9, 0, 0)) and not a.contains((10, 0, 0))
        assert a.contains(BoundingBox((2, 2, 2), (10, 10, 10)))
        assert not a.contains(b)
        assert a.intersect(BoundingBox((20, 20, 20), (30, 30, 30))).is_empty
        assert a.to_slices() == (slice(0, 10),) * 3
        assert BoundingBox.from_slices(a.to_slices()) == a

    def test_snap_to_grid(self):
        box = BoundingBox((3, 5, 70), (13, 60, 130))
        assert box.snap_to_grid((4, 16, 64)) == BoundingBox((0, 0, 64), (16, 64, 192))
        assert box.snap_to_grid((4, 16, 64), "shrink") == BoundingBox((4, 16, 128), (12, 48, 128))
        assert box.snap_to_grid((4, 16, 64)).is_aligned((4, 16, 64))
        assert not box.is_aligned((4, 16, 64))


class TestGrid:
    def test_tiles_cover_roi_exactly_once(self):
        roi = BoundingBox((0, 0, 0), (8, 12, 12))
        boxes = grid_bboxes(roi, (4, 6, 6))
        assert len(boxes) == 2 * 2 * 2
        covered = {}
        for box in boxes:
            for z in range(box.start.z, box.stop.z):
                for y in range(box.start.y, box.stop.y):
                    for x in range(box.start.x, box.stop.x):
                        covered[(z, y, x)] = covered.get((z, y, x), 0) + 1
        assert set(covered.values()) == {1}
        assert len(covered) == roi.voxel_count

    def test_overhang_versus_respect_stop(self):
        roi = BoundingBox((0, 0, 0), (10, 10, 10))
        overhang = grid_bboxes(roi, (4, 10, 10))
        assert [b.start.z for b in overhang] == [0, 4, 8]
        assert overhang[-1].stop.z == 12  # passes the stop
        clipped = grid_bboxes(roi, (4, 10, 10), respect_stop=True)
        assert clipped[-1] == BoundingBox((8, 0, 0), (10, 10, 10))

    def test_overlapping_chunks_with_stride(self):
        roi = BoundingBox((0, 0, 0), (1, 1, 110))
        boxes = grid_bboxes(roi, (1, 1, 60), stride=(1, 1, 50))
        assert [(b.start.x, b.stop.x) for b in boxes] == [(0, 60), (50, 110)]

    def test_grid_size_and_raster_order(self):
        boxes = grid_bboxes(BoundingBox((0, 0, 0), (1, 1, 1)), (2, 2, 2), grid_size=(1, 2, 2))
        assert [b.start for b in boxes] == [(0, 0, 0), (0, 0, 2), (0, 2, 0), (0, 2, 2)]

    def test_bad_sizes(self):
        with pytest.raises(ChunkflowError):
            grid_bboxes(BoundingBox((0, 0, 0), (4, 4, 4)), (0, 2, 2))
        with pytest.raises(ChunkflowError):
            grid_bboxes(BoundingBox((0, 0, 0), (0, 4, 4)), (2, 2, 2))

    def test_lazy_grid_equals_brute_force(self):
        """The grid computed from indices is the nested loop over the grid, box for box, for
        overhanging, clipped, overlapping, sparse (stride > chunk) and explicit grids, and any
        slice of it is the same slice of the loop's list."""

        def brute_force(roi, chunk_size, stride, grid_size, respect_stop):
            if grid_size is None:
                grid_size = [
                    -(-max(0, n - c) // s) + 1 for n, c, s in zip(roi.shape, chunk_size, stride)
                ]
            boxes = []
            for iz in range(grid_size[0]):
                for iy in range(grid_size[1]):
                    for ix in range(grid_size[2]):
                        start = [o + i * s for o, i, s in zip(roi.start, (iz, iy, ix), stride)]
                        box = BoundingBox.from_delta(start, chunk_size)
                        if respect_stop:
                            box = box.intersect(roi)
                            if box.is_empty:
                                continue
                        boxes.append(box)
            return boxes

        roi = BoundingBox((-3, 5, 7), (10, 27, 40))
        cases = [
            ((4, 6, 8), None, None),
            ((4, 6, 8), (3, 5, 8), None),  # overlapping
            ((2, 3, 4), (5, 7, 9), None),  # gaps: some clipped boxes would be empty
            ((1, 1, 1), (10, 15, 20), (3, 2, 3)),  # explicit grid, partly past the stop
            ((5, 5, 5), (5, 5, 5), (4, 1, 9)),
        ]
        slices = [
            slice(None),
            slice(3, 17),
            slice(-5, None),
            slice(2, 40, 7),
            slice(None, None, -3),
        ]
        for chunk_size, stride, grid_size in cases:
            for respect_stop in (False, True):
                grid = grid_bboxes(roi, chunk_size, stride, grid_size, respect_stop)
                expected = brute_force(
                    roi, chunk_size, stride or chunk_size, grid_size, respect_stop
                )
                assert len(expected) > 1
                assert list(grid) == expected and grid == expected
                assert [grid[k] for k in range(-len(grid), len(grid))] == expected * 2
                for s in slices:
                    assert list(grid[s]) == expected[s]
                    assert list(grid[3:][s]) == expected[3:][s]

    def test_lazy_grid_of_a_trillion_boxes(self):
        """A grid of 10^12 boxes is only its description: length, any box and any slice come
        from index arithmetic."""
        roi = BoundingBox((0, 0, 0), (640_000, 640_000, 640_000 - 10))
        grid = grid_bboxes(roi, (64, 64, 64), respect_stop=True)
        assert len(grid) == 10**12 and tuple(grid.shape) == (10**4,) * 3
        k = 123_456_789_012  # box (1234, 5678, 9012)
        assert grid[k] == BoundingBox((78976, 363392, 576768), (79040, 363456, 576832))
        part = grid[k : k + 3]
        assert len(part) == 3 and part.indices == range(k, k + 3)
        assert [b.start.x for b in part] == [576768, 576832, 576896]
        assert grid[-1] == BoundingBox((639936,) * 2 + (639936,), (640_000,) * 2 + (639_990,))

    def test_grid_index_errors(self):
        grid = grid_bboxes(BoundingBox((0, 0, 0), (4, 4, 4)), (2, 2, 2))
        with pytest.raises(IndexError):
            grid[8]
        with pytest.raises(IndexError):
            grid[-9]
        assert len(grid[8:]) == 0 and list(grid[5:2]) == []
