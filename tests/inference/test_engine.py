import numpy as np
import pytest
import torch

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.inference.backends import IdentityBackend, PytorchBackend
from chunkflow.inference.engine import Inferencer
from chunkflow.inference.grid import PatchGrid
from tests.inference import models
from tests.inference.reference import blend, crop_center

CPU = torch.device("cpu")


def identity(p_in, p_out=None, overlap=None, crop=None, mask=True, batch=1, channels=1, **kw):
    grid = PatchGrid.create(p_in, p_out, overlap, crop, mask)
    backend = IdentityBackend(grid.patch_crop_margin, 1, channels)
    kw.setdefault("output_layer_type", "image")
    return Inferencer(backend, grid, CPU, 1, channels, batch, **kw)


def random_chunk(shape, offset=(0, 0, 0), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return Chunk(rng.random(shape).astype(dtype), offset, (40, 4, 4))
    return Chunk(rng.integers(1, np.iinfo(dtype).max, shape, dtype=dtype), offset, (40, 4, 4))


CASES = [
    # chunk size, input patch, output patch, overlap, batch
    ((16, 64, 64), (8, 32, 32), None, (4, 16, 16), 4),  # aligned, batch divides 27
    ((17, 70, 61), (8, 32, 32), None, (4, 16, 16), 4),  # not aligned, last patches shifted
    ((16, 64, 64), (8, 32, 32), None, (0, 0, 0), 3),  # no overlap
    ((20, 70, 70), (8, 32, 32), None, (6, 24, 24), 5),  # heavy overlap: up to 64 patches a voxel
    ((18, 66, 70), (10, 40, 40), (6, 24, 24), (2, 8, 8), 7),  # crop margin 2 8 8
    ((8, 32, 32), (8, 32, 32), None, (2, 8, 8), 2),  # one patch
]


@pytest.mark.parametrize("size, p_in, p_out, overlap, batch", CASES)
@pytest.mark.parametrize("mask", [True, False])
def test_identity_output_equals_input(size, p_in, p_out, overlap, batch, mask):
    chunk = random_chunk(size, offset=(3, -5, 100))
    inferencer = identity(p_in, p_out, overlap, mask=mask, batch=batch)
    out = inferencer(chunk)
    margin = inferencer.grid.patch_crop_margin + inferencer.grid.output_crop_margin
    assert out.voxel_offset == chunk.voxel_offset + margin
    assert out.voxel_size == chunk.voxel_size
    assert out.layer_type is LayerType.IMAGE
    expected = chunk.crop(out.bbox).array
    assert out.shape == (1, *expected.shape)
    np.testing.assert_allclose(out.array[0], expected, atol=1e-5)
    if mask:
        assert out.bbox == chunk.bbox.grow(-inferencer.grid.patch_crop_margin)


@pytest.mark.parametrize("size, p_in, p_out, overlap, batch", CASES)
@pytest.mark.parametrize("kind", ["wu", "zung"])
def test_matches_slow_reference_with_a_patch_dependent_model(
    tmp_path, size, p_in, p_out, overlap, batch, kind
):
    p_out = p_out or p_in
    crop = tuple((i - o) // 2 for i, o in zip(p_in, p_out))
    model = models.write(tmp_path, "net.py", models.PATCH_DEPENDENT, CROP=crop, CHANNELS=2)
    grid = PatchGrid.create(p_in, p_out, overlap, None, True)
    backend = PytorchBackend(str(model), None, CPU)
    chunk = random_chunk(size, seed=1)
    out = Inferencer(backend, grid, CPU, 1, 2, batch, bump=kind)(chunk)

    def slow_model(patch):
        core = crop_center(patch, p_out)
        return np.repeat(core * (1 + patch.mean()), 2, axis=0)

    expected = blend(
        chunk.array[np.newaxis].astype(np.float64), slow_model, p_in, p_out, overlap, kind=kind
    )
    np.testing.assert_allclose(out.array, expected, atol=1e-5)
    assert out.layer_type is LayerType.PROBABILITY_MAP


@pytest.mark.parametrize("size, p_in, p_out, overlap, batch", CASES[:3])
def test_weights_sum_to_one_everywhere(size, p_in, p_out, overlap, batch):
    inferencer = identity(p_in, p_out, overlap)
    plan = inferencer.grid.plan(BoundingBox((0, 0, 0), size))
    weight_sum = inferencer.weight_sum(plan)
    total = torch.zeros_like(weight_sum)
    for _, out_bbox in plan.patches:
        local = tuple(
            slice(a - r, b - r) for a, b, r in zip(out_bbox.start, out_bbox.stop, plan.region.start)
        )
        total[local] += inferencer.bump / weight_sum[local]
    np.testing.assert_allclose(total.numpy(), 1.0, atol=1e-6)


def test_integer_input_is_scaled_by_dtype_range():
    chunk = random_chunk((8, 40, 40), dtype=np.uint16)
    out = identity((8, 32, 32), overlap=(0, 8, 8))(chunk)
    np.testing.assert_allclose(out.array[0], chunk.array / 65535.0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint32, np.bool_])
def test_input_units_follow_the_one_rule_of_normalize(dtype):
    """Inference sees exactly what `normalize` and `normalize-intensity` give (signed integers
    span [0, 1] too, not [-1, 1])."""
    from chunkflow.chunk import to_unit
    from chunkflow.image.normalize import normalize_intensity

    rng = np.random.default_rng(1)
    if dtype is np.bool_:
        array = rng.integers(0, 2, (8, 40, 40)).astype(bool)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, (8, 40, 40), dtype=dtype, endpoint=True)
    chunk = Chunk(array, (0, 0, 0), (40, 4, 4), "image")
    out = identity((8, 40, 40), overlap=(0, 0, 0), mask=False)(chunk)
    unit = to_unit(array)
    assert unit.min() >= 0 and unit.max() <= 1
    np.testing.assert_array_equal(out.array[0], unit)
    if dtype is not np.bool_:
        np.testing.assert_array_equal(normalize_intensity(chunk).array, unit)


def test_float16_output_halves_the_buffer():
    chunk = random_chunk((16, 64, 64))
    full = identity((8, 32, 32), overlap=(4, 16, 16))(chunk)
    half = identity((8, 32, 32), overlap=(4, 16, 16), dtype="float16")(chunk)
    assert half.dtype == np.float16 and half.nbytes * 2 == full.nbytes
    np.testing.assert_allclose(half.array, full.array, atol=2e-3)


def test_all_zero_input_skips_the_network():
    class Exploding:
        premasked = False

        def __call__(self, batch):
            raise AssertionError("the network ran on an all-zero chunk")

    grid = PatchGrid.create((8, 32, 32), None, (2, 8, 8), None, True)
    out = Inferencer(Exploding(), grid, CPU, 1, 3, 2)(Chunk(np.zeros((8, 40, 40), "uint8")))
    assert out.shape == (3, 8, 40, 40) and not out.array.any()
    assert out.layer_type is LayerType.AFFINITY_MAP


def test_multichannel_identity_and_myelin_mask():
    chunk = random_chunk((8, 32, 32))
    out = identity((8, 32, 32), overlap=(2, 8, 8), channels=4, mask_myelin_threshold=0.5)(chunk)
    assert out.shape == (3, 8, 32, 32)
    expected = chunk.array * (chunk.array <= 0.5)
    for channel in out.array:
        np.testing.assert_allclose(channel, expected, atol=1e-5)


@pytest.mark.parametrize("p_in", [(8, 32, 32), (8, 24, 32)])
def test_augmentation_undoes_itself(p_in):
    chunk = random_chunk((12, 50, 50))
    plain = identity(p_in, overlap=(2, 8, 8))(chunk)
    augmented = identity(p_in, overlap=(2, 8, 8), augment=True)(chunk)
    np.testing.assert_allclose(augmented.array, plain.array, atol=1e-5)


def affinities(labels):
    """Exact affinities (batch, 3, z, y, x) of labels (batch, 1, z, y, x); first slices 0."""
    out = torch.zeros((labels.shape[0], 3, *labels.shape[2:]))
    out[:, 0, 1:] = (labels[:, 0, 1:] == labels[:, 0, :-1]).float()
    out[:, 1, :, 1:] = (labels[:, 0, :, 1:] == labels[:, 0, :, :-1]).float()
    out[:, 2, :, :, 1:] = (labels[:, 0, :, :, 1:] == labels[:, 0, :, :, :-1]).float()
    return out


def test_augmentation_keeps_affinity_conventions(gala):
    from chunkflow.inference import augment
    from tests.conftest import read_stack

    labels = torch.from_numpy(read_stack(gala / "test-gt.lzf.h5")[:6, :20, :20].astype("float32"))
    labels = labels[None, None]
    truth = affinities(labels)
    for transform in augment.transforms(square_yx=True):
        back = transform.inverse(affinities(transform.forward(labels)), affinity=True)
        # exact everywhere but the first slice of each channel's own axis
        np.testing.assert_array_equal(back[:, 0, 1:], truth[:, 0, 1:])
        np.testing.assert_array_equal(back[:, 1, :, 1:], truth[:, 1, :, 1:])
        np.testing.assert_array_equal(back[:, 2, :, :, 1:], truth[:, 2, :, :, 1:])
    assert len(augment.transforms(square_yx=True)) == 16
    assert len(augment.transforms(square_yx=False)) == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(p_in=(8, 32, 32), p_out=(8, 31, 32)), "must be even"),
        (dict(p_in=(8, 32, 32), overlap=(8, 0, 0)), "smaller than the output patch"),
        (dict(p_in=(8, 32, 32), p_out=(8, 40, 32)), "larger than `input_patch_size`"),
    ],
)
def test_bad_grids(kwargs, message):
    with pytest.raises(ChunkflowError, match=message):
        identity(**kwargs)


def test_patch_larger_than_chunk_and_patch_num():
    with pytest.raises(ChunkflowError, match="larger than the chunk 4 64 64"):
        identity((8, 32, 32))(random_chunk((4, 64, 64)))
    grid = PatchGrid.create((8, 32, 32), None, (4, 16, 16), None, True, patch_num=(2, 2, 2))
    assert grid.chunk_size_for((2, 2, 2)) == (12, 48, 48)
    assert len(grid.plan(BoundingBox((0, 0, 0), (12, 48, 48))).patches) == 8
    with pytest.raises(ChunkflowError, match="a chunk of 12 48 48 holds 2 2 2"):
        grid.plan(BoundingBox((0, 0, 0), (12, 48, 50)))


def test_non_finite_output_is_refused_with_its_voxel_count(tmp_path):
    """A model that returns NaN (here: the first voxel of every patch) fails the chunk; an
    all-NaN map must never pass for a result."""
    model = models.write(tmp_path, "nan.py", models.NAN_CORNER)
    grid = PatchGrid.create((8, 32, 32), None, (0, 0, 0), None, True)
    inferencer = Inferencer(PytorchBackend(str(model), None, CPU), grid, CPU, 1, 1, 2)
    # 2 x 2 patches without overlap: 4 NaN voxels (in the only channel)
    with pytest.raises(ChunkflowError, match="has 4 of 32,768 voxels that are NaN or inf"):
        inferencer(random_chunk((8, 64, 64)))
    # a NaN in the input is named as the likely cause
    identity_net = identity((8, 32, 32), overlap=(0, 0, 0))
    chunk = random_chunk((8, 32, 32))
    chunk.array[1, 2, 3] = np.nan
    with pytest.raises(ChunkflowError, match="1 of 8,192 .*the input has 1 non-finite voxels"):
        identity_net(chunk)


def test_a_batch_larger_than_the_patch_count_needs_no_room_for_missing_patches():
    chunk = random_chunk((16, 64, 64))
    one = identity((8, 32, 32), overlap=(4, 16, 16), batch=1)(chunk)
    # 27 patches: a batch of 10^12 would ask for 4 PB of patches before the fix
    huge = identity((8, 32, 32), overlap=(4, 16, 16), batch=10**12)(chunk)
    np.testing.assert_allclose(huge.array, one.array, atol=1e-6)


def test_a_chunk_whose_buffers_do_not_fit_is_refused_before_any_is_made(monkeypatch):
    import chunkflow.memory

    chunk = random_chunk((16, 64, 64))
    inferencer = identity((8, 32, 32), overlap=(4, 16, 16), batch=4)
    monkeypatch.setattr(chunkflow.memory, "available_memory", lambda: 2**19)
    with pytest.raises(ChunkflowError) as err:
        inferencer(chunk)
    # input, output and weight sums 256 KiB each, a batch of 4 input and 4 output patches 256 KiB
    assert str(err.value) == (
        "inference of a 16 64 64 chunk (27 patches of 8 32 32, batches of 4) needs 1.0 MiB of "
        "memory, more than the 512.0 KiB available"
    )
    monkeypatch.setattr(chunkflow.memory, "available_memory", lambda: 2**30)
    assert inferencer(chunk).shape == (1, 16, 64, 64)
