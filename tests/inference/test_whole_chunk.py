"""Whole-chunk inference, autocast and host-staged batches against the patch-blending engine."""

import numpy as np
import pytest
import torch

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.inference.backends import IdentityBackend
from chunkflow.inference.engine import Inferencer
from chunkflow.inference.grid import PatchGrid
from tests.conftest import error_line
from tests.inference import models

CPU = torch.device("cpu")

# two 3x3x3 convolutions, padding 1: an output voxel sees 2 voxels of context on each side
CONV = """
import torch

torch.manual_seed(0)
InstantiatedModel = torch.nn.Sequential(
    torch.nn.Conv3d(1, 4, 3, padding=1),
    torch.nn.ReLU(),
    torch.nn.Conv3d(4, 3, 3, padding=1),
    torch.nn.Sigmoid(),
)
"""

# a U-Net-like model: pooling by 2 and back, so every dimension must be even
POOLING = """
import torch

class Net(torch.nn.Module):
    def forward(self, x):
        y = torch.nn.functional.max_pool3d(x, 2)
        return torch.cat([x, torch.nn.functional.interpolate(y, scale_factor=2)], dim=1)

InstantiatedModel = Net()
"""

# not fully convolutional: a linear layer over a flattened 8x32x32 patch
DENSE = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(8 * 32 * 32, 8 * 32 * 32)

    def forward(self, x):
        return self.dense(x.flatten(1)).view(x.shape)

InstantiatedModel = Net()
"""


def conv_backend(tmp_path):
    from chunkflow.inference.backends import PytorchBackend

    return PytorchBackend(str(models.write(tmp_path, "conv.py", CONV)), None, CPU)


def chunk(shape=(16, 64, 72), offset=(3, -5, 100)):
    array = np.random.default_rng(0).random(shape, dtype=np.float32)
    return Chunk(array, offset, (40, 4, 4))


def inferencer(backend, p_in, p_out=None, overlap=None, crop=None, **kw):
    grid = PatchGrid.create(p_in, p_out, overlap, crop, mask_output_chunk=True)
    channels = kw.pop("channels", 3)
    return Inferencer(backend, grid, CPU, 1, channels, kw.pop("batch", 4), **kw)


def test_whole_chunk_equals_patches_where_patches_have_full_context(tmp_path):
    # the patch crop margin 2 4 4 covers the net's context of 2: every output voxel of every
    # patch sees all its context, so the blend of patches is the whole-chunk output everywhere
    backend = conv_backend(tmp_path)
    sizes = dict(p_in=(8, 32, 32), p_out=(4, 24, 24), overlap=(2, 8, 8))
    image = chunk()
    patches = inferencer(backend, **sizes)(image)
    whole = inferencer(backend, **sizes, whole_chunk=True)(image)
    assert whole.bbox == patches.bbox == image.bbox.grow(-np.array((2, 4, 4)))
    assert whole.layer_type is patches.layer_type and whole.array.dtype == np.float32
    np.testing.assert_allclose(whole.array, patches.array, atol=1e-5)


def test_whole_chunk_is_one_forward_pass_cropped_by_the_output_crop_margin(tmp_path):
    backend = conv_backend(tmp_path)
    image = chunk((16, 64, 64))
    with torch.inference_mode():
        direct = backend.model(torch.from_numpy(image.array)[None, None])[0].numpy()
    whole = inferencer(backend, (8, 32, 32), whole_chunk=True)(image)
    assert whole.bbox == image.bbox  # same input and output patch, no crop margin: all of it
    np.testing.assert_allclose(whole.array, direct, atol=1e-6)
    cropped = inferencer(backend, (8, 32, 32), crop=(2, 3, 4), whole_chunk=True)(image)
    assert cropped.bbox == image.bbox.grow(-np.array((2, 3, 4)))
    np.testing.assert_allclose(cropped.array, direct[:, 2:-2, 3:-3, 4:-4], atol=1e-6)


def test_whole_chunk_identity_crops_the_margins():
    image = chunk()
    grid = PatchGrid.create((8, 32, 32), (6, 24, 24), (2, 8, 8), (1, 2, 3), True)
    backend = IdentityBackend(grid.patch_crop_margin, 1, 1)
    out = Inferencer(backend, grid, CPU, 1, 1, 1, output_layer_type="image", whole_chunk=True)(
        image
    )
    assert out.bbox == image.bbox.grow(-np.array((2, 6, 7)))
    np.testing.assert_array_equal(out.array[0], image.crop(out.bbox).array)
    assert not np.shares_memory(out.array, image.array)


def test_whole_chunk_refuses_a_shape_the_model_cannot_take(tmp_path):
    from chunkflow.inference.backends import PytorchBackend

    backend = PytorchBackend(str(models.write(tmp_path, "pool.py", POOLING)), None, CPU)
    run = inferencer(backend, (8, 32, 32), channels=2, whole_chunk=True)
    assert run(chunk((16, 64, 72))).shape == (2, 16, 64, 72)  # even sizes go through
    with pytest.raises(ChunkflowError, match=r"cannot take the chunk 15 64 72 \(") as err:
        run(chunk((15, 64, 72)))
    assert "fully convolutional" in str(err.value) and "\n" not in str(err.value)


def test_whole_chunk_refuses_a_model_that_is_not_fully_convolutional(run_cli, tmp_path):
    models.write(tmp_path, "dense.py", DENSE)
    image = np.random.default_rng(0).random((16, 40, 40), dtype=np.float32)
    np.save(tmp_path / "image.npy", image)
    run_cli("read-npy -f image.npy inference -f pytorch -m dense.py -s 8 32 32 -c 1 --device cpu")
    result = run_cli(
        "read-npy -f image.npy inference -f pytorch -m dense.py -s 8 32 32 -c 1 --device cpu "
        "--whole-chunk",
        expect=None,
    )
    assert result.code != 0
    line = error_line(result)
    assert "--whole-chunk: the model cannot take the chunk 16 40 40" in line


def test_whole_chunk_out_of_memory_is_one_line_that_says_so():
    class Hungry:
        premasked = False

        def __call__(self, batch):
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                "allocate memory: you tried to allocate 99999999999 bytes."
            )

    run = inferencer(Hungry(), (8, 32, 32), channels=1, whole_chunk=True)
    with pytest.raises(ChunkflowError, match=r"ran out of memory on cpu for the chunk 16 64 72 "):
        run(chunk())


def test_whole_chunk_refuses_patch_options():
    grid = PatchGrid.create((8, 32, 32), patch_num=(2, 2, 2))
    with pytest.raises(ChunkflowError, match="drop `patch_num`"):
        Inferencer(IdentityBackend((0, 0, 0), 1, 1), grid, CPU, 1, 1, whole_chunk=True)
    premasked = IdentityBackend((0, 0, 0), 1, 1)
    premasked.premasked = True  # as the universal framework
    with pytest.raises(ChunkflowError, match="universal framework"):
        Inferencer(premasked, PatchGrid.create((8, 32, 32)), CPU, 1, 1, whole_chunk=True)


def test_autocast_bfloat16_is_close_to_float32(tmp_path):
    backend = conv_backend(tmp_path)
    sizes = dict(p_in=(8, 32, 32), p_out=(4, 24, 24), overlap=(2, 8, 8))
    image = chunk()
    exact = inferencer(backend, **sizes)(image)
    cast = inferencer(backend, **sizes, autocast="bfloat16")(image)
    assert cast.array.dtype == np.float32 and cast.bbox == exact.bbox
    difference = np.abs(cast.array - exact.array)
    assert 0 < difference.max() < 2e-2  # computed in bfloat16 (not exact), yet close
    with pytest.raises(ChunkflowError, match="`autocast` 'int8'"):
        inferencer(backend, **sizes, autocast="int8")


@pytest.mark.parametrize("batch", [1, 3, 4])
def test_host_staged_batches_equal_the_device_path(tmp_path, batch):
    backend = conv_backend(tmp_path)
    sizes = dict(p_in=(8, 32, 32), p_out=(4, 24, 24), overlap=(2, 8, 8), batch=batch)
    image = chunk((17, 70, 61))  # not aligned: the last patches are shifted
    staged = inferencer(backend, **sizes, host_staging=True)
    np.testing.assert_array_equal(staged(image).array, inferencer(backend, **sizes)(image).array)


def test_pin_memory_needs_cuda():
    with pytest.raises(ChunkflowError, match="`pin_memory` .* not a CUDA device"):
        inferencer(IdentityBackend((0, 0, 0), 1, 1), (8, 32, 32), channels=1, pin_memory=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_streamed_batches_on_cuda_equal_the_cpu_result(tmp_path):
    from chunkflow.inference.backends import PytorchBackend

    sizes = dict(p_in=(8, 32, 32), p_out=(4, 24, 24), overlap=(2, 8, 8), batch=3)
    image = chunk((17, 70, 61))
    expected = inferencer(conv_backend(tmp_path), **sizes)(image)
    cuda = torch.device("cuda")
    backend = PytorchBackend(str(tmp_path / "conv.py"), None, cuda)
    grid = PatchGrid.create(sizes["p_in"], sizes["p_out"], sizes["overlap"], None, True)
    out = Inferencer(backend, grid, cuda, 1, 3, 3, pin_memory=True)(image)
    np.testing.assert_allclose(out.array, expected.array, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("slab_bytes", [64, 1000, 1 << 24])
def test_outputs_come_back_through_pinned_slabs_intact(dtype, slab_bytes):
    from chunkflow.inference.engine import _host_array

    tensor = torch.rand((3, 9, 31, 17), device="cuda").to(dtype)[:, 1:, 2:, :-1]  # a view
    array = _host_array(tensor, slab_bytes)
    expected = tensor.cpu().numpy()
    assert array.dtype == expected.dtype and array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)
