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
