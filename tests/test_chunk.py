import numpy as np
import pytest

from chunkflow.chunk import Chunk, Grid, LayerType, check_same_grid
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox


def make(shape=(4, 6, 8), offset=(10, 20, 30), dtype="uint8"):
    return Chunk(np.arange(np.prod(shape)).reshape(shape).astype(dtype), offset, (40, 4, 4))


class TestGeometry:
    def test_bbox_and_shapes(self):
        chunk = make()
        assert chunk.bbox == BoundingBox((10, 20, 30), (14, 26, 38))
        assert chunk.spatial_shape == (4, 6, 8)
        assert chunk.voxel_stop == (14, 26, 38)
        assert chunk.num_channels == 1
        four = Chunk(np.zeros((3, 4, 6, 8), "float32"), (1, 2, 3))
        assert four.num_channels == 3
        assert four.bbox == BoundingBox((1, 2, 3), (5, 8, 11))

    def test_rejects_2d_and_5d(self):
        with pytest.raises(ChunkflowError, match="3D"):
            Chunk(np.zeros((4, 4)))
        with pytest.raises(ChunkflowError):
            Chunk(np.zeros((1, 1, 4, 4, 4)))

    def test_crop_by_global_bbox_is_a_view(self):
        chunk = make()
        part = chunk.crop(BoundingBox((11, 21, 31), (13, 25, 37)))
        assert part.voxel_offset == (11, 21, 31)
        assert part.voxel_size == chunk.voxel_size
        np.testing.assert_array_equal(part.array, chunk.array[1:3, 1:5, 1:7])
        part.array[0, 0, 0] = 255
        assert chunk.array[1, 1, 1] == 255
        assert chunk[BoundingBox((11, 21, 31), (12, 22, 32))].array.item() == 255

    def test_crop_outside_names_both_boxes(self):
        with pytest.raises(ChunkflowError, match="0-20_20-26_30-38.*10-14_20-26_30-38"):
            make().crop(BoundingBox((0, 20, 30), (20, 26, 38)))

    def test_crop_margin_and_channels(self):
        four = Chunk(np.random.default_rng(0).random((2, 6, 6, 6)), (0, 0, 0))
        inner = four.crop_margin((1, 2, 2))
        assert inner.shape == (2, 4, 2, 2)
        assert inner.voxel_offset == (1, 2, 2)
        np.testing.assert_array_equal(inner.array, four.array[:, 1:5, 2:4, 2:4])

    def test_setitem_and_blit(self):
        big = Chunk(np.zeros((10, 10, 10), "uint8"))
        small = Chunk(np.full((4, 4, 4), 7, "uint8"), (8, 8, 8))
        big.blit(small)  # only the overlapping 2x2x2 corner is written
        assert big.array.sum() == 7 * 8
        assert big.array[8:, 8:, 8:].min() == 7
        big[BoundingBox((0, 0, 0), (1, 1, 1))] = 3
        assert big.array[0, 0, 0] == 3

    def test_blit_refuses_other_voxel_sizes_and_disjoint_boxes(self):
        big = Chunk(np.zeros((10, 10, 10), "uint8"), voxel_size=(40, 4, 4))
        coarse = Chunk(np.full((4, 4, 4), 7, "uint8"), (0, 0, 0), (40, 8, 8))
        with pytest.raises(ChunkflowError) as error:
            big.blit(coarse)
        assert str(error.value) == (
            "blit: chunk 'source' (voxel size (40, 8, 8), box 0-4_0-4_0-4) and chunk 'target' "
            "(voxel size (40, 4, 4), box 0-10_0-10_0-10) have different voxel sizes"
        )
        far = Chunk(np.full((4, 4, 4), 7, "uint8"), (20, 0, 0), (40, 4, 4))
        with pytest.raises(ChunkflowError, match="blit: .* do not overlap"):
            big.blit(far)
        assert not big.array.any()


class TestCheckSameGrid:
    """The one check every operator combining chunks, or a chunk and a volume, makes."""

    a = Chunk(np.zeros((2, 3, 4), "uint8"), (0, 0, 0), (40, 4, 4))

    def test_equal_voxel_sizes_and_boxes_pass(self):
        check_same_grid(("a", self.a), ("b", Chunk(np.ones((3, 2, 3, 4)), (0, 0, 0), (40, 4, 4))))
        volume = Grid((40.0, 4.0, 4.0), BoundingBox((0, 0, 0), (8, 8, 8)))
        check_same_grid(("a", self.a), ("the volume v", volume), boxes="inside")
        check_same_grid(("a", self.a), ("v", Grid((40, 4, 4))), boxes="same")  # no box known

    @pytest.mark.parametrize(
        "other, boxes, problem",
        [
            (Grid((40, 8, 8), BoundingBox((0, 0, 0), (2, 3, 4))), "same", "have different voxel"),
            (Grid((np.nan, 4, 4)), None, "have different voxel sizes"),
            (Grid((40, 4, 4), BoundingBox((0, 0, 1), (2, 3, 5))), "same", "do not cover the same"),
            (Grid((40, 4, 4), BoundingBox((2, 0, 0), (4, 3, 4))), "overlap", "do not overlap"),
            (Grid((40, 4, 4), BoundingBox((0, 0, 0), (2, 3, 3))), "inside", "is outside"),
        ],
    )
    def test_mismatches_name_both_in_one_line(self, other, boxes, problem):
        with pytest.raises(ChunkflowError) as error:
            check_same_grid(("a", self.a), ("the volume v", other), boxes=boxes)
        message = str(error.value)
        assert "\n" not in message and problem in message
        assert message.startswith("chunk 'a' (voxel size (40, 4, 4), box 0-2_0-3_0-4) ")
        assert "the volume v (voxel size (" in message

    def test_other_box_rules_are_a_programming_error(self):
        with pytest.raises(ValueError, match="boxes must be"):
            check_same_grid(("a", self.a), ("b", self.a), boxes="near")


class TestNumpyInterop:
    def test_ufuncs_keep_geometry_and_type(self):
        chunk = make(dtype="float32")
        doubled = chunk * 2
        assert isinstance(doubled, Chunk)
        assert doubled.voxel_offset == chunk.voxel_offset
        assert doubled.voxel_size == chunk.voxel_size
        assert doubled.layer_type is LayerType.IMAGE
        np.testing.assert_array_equal(np.sqrt(chunk).array, np.sqrt(chunk.array))

    def test_comparison_gives_a_mask_chunk(self):
        mask = make() > 10
        assert isinstance(mask, Chunk) and mask.dtype == bool
        assert mask.voxel_offset == (10, 20, 30)

    def test_reductions_and_asarray_are_plain(self):
        chunk = make()
        assert np.asarray(chunk) is chunk.array
        assert isinstance(np.sum(chunk.array), np.integer)
        assert chunk.array.max() == np.asarray(chunk).max()
        assert isinstance(chunk[0], np.ndarray)

    def test_astype_and_with_array(self):
        chunk = make()
        as_float = chunk.astype("float32")
        assert as_float.dtype == np.float32 and as_float.voxel_offset == chunk.voxel_offset
        with pytest.raises(ValueError):
            chunk.with_array(np.zeros((1, 2, 3)))


class TestLayerType:
    def test_explicit_type_is_kept(self):
        labels = Chunk(np.zeros((2, 2, 2), "uint8"), layer_type="segmentation")
        assert labels.is_segmentation
        affs = Chunk(np.zeros((3, 2, 2, 2), "float32"), layer_type=LayerType.PROBABILITY_MAP)
        assert affs.is_probability_map

    @pytest.mark.parametrize(
        "dtype, shape, expected",
        [
            ("uint8", (2, 2, 2), LayerType.IMAGE),
            ("uint8", (2, 2, 2, 2), LayerType.IMAGE),
            ("float32", (2, 2, 2), LayerType.IMAGE),
            ("float64", (2, 2, 2), LayerType.IMAGE),
            # every integer but uint8 is labels (gunpowder's rule): uint16 and int16 label
            # volumes are common, and taking one for an image interpolates new ids into it
            ("uint16", (2, 2, 2), LayerType.SEGMENTATION),
            ("int16", (2, 2, 2), LayerType.SEGMENTATION),
            ("int8", (2, 2, 2), LayerType.SEGMENTATION),
            ("int32", (2, 2, 2), LayerType.SEGMENTATION),
            ("int64", (2, 2, 2), LayerType.SEGMENTATION),
            ("uint32", (2, 2, 2), LayerType.SEGMENTATION),
            ("uint64", (2, 2, 2), LayerType.SEGMENTATION),
            ("bool", (2, 2, 2), LayerType.SEGMENTATION),
            ("float32", (3, 2, 2, 2), LayerType.AFFINITY_MAP),
            ("float32", (1, 2, 2, 2), LayerType.PROBABILITY_MAP),
        ],
    )
    def test_default_depends_on_dtype_and_shape_only(self, dtype, shape, expected):
        assert Chunk(np.zeros(shape, dtype)).layer_type is expected
        # values never change the decision
        assert Chunk(np.ones(shape, dtype)).layer_type is expected

    def test_no_data_scan_on_construction(self):
        # 10^11 virtual voxels: any scan of the values would take minutes.
        import time

        huge = np.broadcast_to(np.uint32(0), (1000, 10000, 10000))
        start = time.perf_counter()
        chunk = Chunk(huge, (0, 0, 0), (40, 4, 4))
        assert chunk.layer_type is LayerType.SEGMENTATION
        assert chunk.bbox.voxel_count == 10**11
        assert time.perf_counter() - start < 10.0  # a scan would take minutes, not a speed target

    def test_cli_choices_match_the_enum(self):
        from chunkflow.cli.framework import LAYER_TYPE_NAMES

        assert LAYER_TYPE_NAMES == tuple(t.value for t in LayerType)

    def test_parse_names_and_errors(self):
        assert LayerType.parse("affinity-map") is LayerType.AFFINITY_MAP
        assert LayerType.parse("seg") is LayerType.SEGMENTATION
        with pytest.raises(ChunkflowError, match="unknown layer type"):
            LayerType.parse("mesh")


class TestCreate:
    def test_patterns(self):
        sin = Chunk.create((8, 16, 16), "uint8", "sin", voxel_offset=(1, 2, 3))
        assert sin.shape == (8, 16, 16) and sin.voxel_offset == (1, 2, 3)
        assert 0 <= sin.array.min() < sin.array.max() <= 255
        assert not Chunk.create((4, 4, 4), "uint16", "zero").array.any()
        a = Chunk.create((4, 4, 4), "float32", "random", seed=3)
        b = Chunk.create((4, 4, 4), "float32", "random", seed=3)
        np.testing.assert_array_equal(a.array, b.array)
        assert 0 <= a.array.min() and a.array.max() <= 1

    def test_channels_and_bad_input(self):
        assert Chunk.create((4, 4, 4), "float32", num_channels=3).is_affinity_map
        with pytest.raises(ChunkflowError):
            Chunk.create((0, 4, 4))
        with pytest.raises(ChunkflowError, match="pattern"):
            Chunk.create((4, 4, 4), pattern="noise")


class TestCast:
    """`Chunk.cast`, behind every --dtype option: values are kept, rescaled on request, or the
    cast fails and counts the values it would change."""

    def test_lossless_casts_keep_values_geometry_and_layer_type(self):
        labels = Chunk(np.array([[[0, 7, 65535]]], np.int32), (1, 2, 3), (4, 5, 6))
        as_uint16 = labels.cast("uint16")
        assert as_uint16.dtype == np.uint16 and as_uint16.array.tolist() == [[[0, 7, 65535]]]
        assert as_uint16.voxel_offset == (1, 2, 3) and as_uint16.voxel_size == (4, 5, 6)
        assert as_uint16.is_segmentation
        image = Chunk(np.array([[[0, 128, 255]]], np.uint8))
        as_float = image.cast("float32")
        assert as_float.is_image and as_float.array.tolist() == [[[0.0, 128.0, 255.0]]]
        whole = Chunk(np.array([[[0.0, 3.0, 255.0]]], np.float32)).cast("uint8")
        assert whole.array.tolist() == [[[0, 3, 255]]]
        # a cast keeps what the data means: a uint8 affinity map is still an affinity map
        affs = Chunk(np.zeros((3, 1, 1, 2), np.float32)).cast("uint8")
        assert affs.is_affinity_map
        assert Chunk(np.array([[[True, False]]])).cast("float32").array.tolist() == [[[1.0, 0.0]]]

    @pytest.mark.parametrize(
        "values, dtype, message",
        [
            # a probability map cast to uint8 would be all zeros (and ones)
            ([0.0, 0.25, 0.5, 1.0], "uint8", "change 2 of 4 values: 2 not whole numbers"),
            ([0.0, 256.0, -1.0, 3.0], "uint8", r"change 2 of 4 values: 2 outside \[0, 255\]"),
            ([np.nan, 1.0, np.inf, 2.0], "uint16", "change 2 of 4 values: 2 not finite"),
            ([0, 70000, 65536, 3], "uint16", "int64 to uint16 would change 2 of 4 values"),
            ([-1, 0, 1, 2], "uint32", r"1 outside \[0, 4294967295\]"),
            ([0, 1, 2, 3], "bool", r"2 outside \[0, 1\]"),
            ([2**24 + 1, 0, 1, 2], "float32", "1 integers beyond float32's exact range"),
            ([1e300, 0.0, 1.0, 2.0], "float32", "1 beyond float32's largest value"),
        ],
    )
    def test_casts_that_change_values_are_refused_with_a_count(self, values, dtype, message):
        chunk = Chunk(np.array(values).reshape(1, 1, 4))
        with pytest.raises(ChunkflowError, match=message):
            chunk.cast(dtype)

    def test_rescale_maps_unit_floats_onto_the_integer_range(self):
        probabilities = Chunk(np.array([[[0.0, 0.25, 0.5, 1.0]]], np.float32))
        assert probabilities.cast("uint8", rescale=True).array.tolist() == [[[0, 64, 128, 255]]]
        assert probabilities.cast("uint16", rescale=True).array.max() == 65535
        with pytest.raises(ChunkflowError, match=r"2 of 4 values are outside \[0, 1\]"):
            Chunk(np.array([[[0.0, 1.5, np.nan, 1.0]]])).cast("uint8", rescale=True)
        with pytest.raises(ChunkflowError, match="not uint16 onto float32"):
            Chunk(np.zeros((1, 1, 2), np.uint16)).cast("float32", rescale=True)


def test_create_refuses_what_cannot_fit_in_memory_and_says_how_much(monkeypatch):
    import chunkflow.memory

    with pytest.raises(ChunkflowError, match="needs 22.7 TiB of memory, more than the"):
        Chunk.create((10000, 10000, 10000))  # a TB of voxels, 24 B each of float64 work
    monkeypatch.setattr(chunkflow.memory, "available_memory", lambda: 2**20)
    assert Chunk.create((64, 64, 64), pattern="zero").array.nbytes == 2**18  # fits
    with pytest.raises(ChunkflowError) as err:
        Chunk.create((64, 64, 64), "float32", "random", num_channels=2)
    assert str(err.value) == (
        "a random chunk of shape (2, 64, 64, 64) and dtype float32 needs 6.0 MiB of memory, "
        "more than the 1.0 MiB available"
    )
