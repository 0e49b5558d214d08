"""The inference operator through the real entry point: frameworks, options, bad input."""

import os
import pickle

import numpy as np
import pytest
import torch

from chunkflow.io.h5 import read_h5
from tests.conftest import REPO, error_line, read_stack
from tests.inference import models

PATCH = "--input-patch-size 8 32 32 --output-patch-overlap 2 8 8"


@pytest.fixture
def image(run_cli, gala, tmp_path):
    """A 20x64x80 cutout of the real EM image, written to image.h5 at offset 5 10 20."""
    run_cli(
        f"read-h5 -f {gala}/test-image.h5 --cutout-start 5 10 20 --cutout-size 20 64 80 "
        "-x 10 10 10 write-h5 -f image.h5"
    )
    return read_stack(gala / "test-image.h5")[5:25, 10:74, 20:100] / 255.0


def test_identity_with_tutorial_spellings(run_cli, image):
    run_cli(
        "read-h5 -f image.h5 -o image inference -i image -o out --framework identity "
        "--patch-size 8 32 32 --patch-overlap 2 8 8 --num-output-channels 1 --batch-size 3 "
        "--mask-output-chunk write-h5 -i out -f out.h5"
    )
    out = read_h5("out.h5")
    assert out.voxel_offset == (5, 10, 20) and out.voxel_size == (10, 10, 10)
    np.testing.assert_allclose(out.array[0], image, atol=1e-5)


def test_without_mask_the_overlap_is_cropped(run_cli, image):
    run_cli(f"read-h5 -f image.h5 inference -f identity {PATCH} -c 1 write-h5 -f out.h5")
    out = read_h5("out.h5")
    assert out.voxel_offset == (7, 18, 28) and out.shape == (1, 16, 48, 64)
    np.testing.assert_allclose(out.array[0], image[2:-2, 8:-8, 8:-8], atol=1e-5)


def test_pytorch_model_file_with_weights(run_cli, image, tmp_path):
    model = models.write(tmp_path, "net.py", models.PATCH_DEPENDENT, CROP=(1, 4, 4), CHANNELS=3)
    net = {"scale": torch.tensor([0.5])}
    torch.save({"state_dict": net}, tmp_path / "w.pt")
    run_cli(
        f"read-h5 -f image.h5 -o image inference -i image -o affs -f pytorch "
        f"--convnet-model {model} --convnet-weight-path w.pt --input-patch-size 8 32 32 "
        "--output-patch-size 6 24 24 --output-patch-overlap 2 8 8 --batch-size 4 "
        "--mask-output-chunk --num-threads 1 --device cpu write-h5 -i affs -f affs.h5"
    )
    affs = read_h5("affs.h5")
    assert affs.is_affinity_map and affs.shape == (3, 18, 56, 72)
    assert affs.voxel_offset == (6, 14, 24)  # input offset + crop margin 1 4 4
    # the net is core * (1 + mean) * 0.5: between core/2 and core
    core = image[1:-1, 4:-4, 4:-4]
    assert np.all(affs.array[0] >= core * 0.5 - 1e-5) and np.all(affs.array[0] <= core + 1e-5)


def test_torchscript_archive(run_cli, image, tmp_path):
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Identity()))
    scripted.save(str(tmp_path / "model.ts"))
    run_cli(
        f"read-h5 -f image.h5 inference -f pytorch -m model.ts {PATCH} -c 1 "
        "--mask-output-chunk -d float16 write-h5 -f out.h5"
    )
    out = read_h5("out.h5")
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.array[0], image, atol=2e-3)


@pytest.mark.parametrize("framework", ["universal", "general"])
def test_universal_patch_inferencer(run_cli, image, tmp_path, framework):
    models.write(tmp_path, "universal.py", models.UNIVERSAL)
    (tmp_path / "gain.txt").write_text("2.0")
    run_cli(
        f"read-h5 -f image.h5 inference -f {framework} -m universal.py -w gain.txt {PATCH} "
        "-c 1 -b 4 --mask-output-chunk write-h5 -f out.h5"
    )
    np.testing.assert_allclose(read_h5("out.h5").array[0], 2 * image, atol=1e-5)


@pytest.mark.parametrize("augment", ["", "--augment"])
def test_a_model_returning_its_input_patch_is_cropped_to_the_output_patch(
    run_cli, image, tmp_path, augment
):
    """As in chunkflow 1.x: a larger model output is cropped to the output patch at its
    centre, and only the first --num-output-channels channels are kept."""
    model = models.write(tmp_path, "net.py", models.WHOLE_PATCH, CHANNELS=4)
    torch.save({"gain": torch.tensor([1.0, 0.5, 2.0, 100.0])}, tmp_path / "w.pt")
    run_cli(
        f"read-h5 -f image.h5 inference -f pytorch -m {model} -w w.pt --input-patch-size 8 32 32 "
        f"--output-patch-size 6 24 24 --output-patch-overlap 2 8 8 -c 2 {augment} "
        "--mask-output-chunk write-h5 -f out.h5"
    )
    out = read_h5("out.h5")
    assert out.shape == (2, 18, 56, 72) and out.voxel_offset == (6, 14, 24)
    core = image[1:-1, 4:-4, 4:-4]  # off-centre crops would shift the image
    for channel, gain in enumerate((1.0, 0.5)):
        np.testing.assert_allclose(out.array[channel], gain * core, atol=1e-5)


def test_extra_channels_are_dropped_before_affinity_augmentation(run_cli, image, tmp_path):
    """Test-time augmentation moves affinity channels: a model with a fourth channel gives
    what the same model without it gives."""
    patch = "--input-patch-size 8 32 32 --output-patch-size 6 24 24 --output-patch-overlap 2 8 8"
    for channels in (3, 4):
        model = models.write(tmp_path, f"net{channels}.py", models.WHOLE_PATCH, CHANNELS=channels)
        torch.save({"gain": torch.tensor([1.0, 0.5, 2.0, 7.0][:channels])}, tmp_path / "w.pt")
        run_cli(
            f"read-h5 -f image.h5 inference -f pytorch -m {model} -w w.pt {patch} -c 3 --augment "
            f"--mask-output-chunk write-h5 -f out{channels}.h5"
        )
    three, four = read_h5("out3.h5"), read_h5("out4.h5")
    assert four.is_affinity_map and four.shape == (3, 18, 56, 72)
    np.testing.assert_array_equal(four.array, three.array)
    assert four.array.min() >= 0 and 0.2 < four.array.mean() < 1  # not the 7x channel


def test_augment_and_bump_options(run_cli, image):
    run_cli(
        f"read-h5 -f image.h5 inference -f identity {PATCH} -c 1 --augment --bump zung "
        "--mask-output-chunk write-h5 -f out.h5"
    )
    np.testing.assert_allclose(read_h5("out.h5").array[0], image, atol=1e-5)


def test_device_is_reported(run_cli, image):
    result = run_cli(f"--log-file run.log read-h5 -f image.h5 inference -f identity {PATCH} -c 1")
    assert "inference on cpu" in result.err or "inference on cuda" in result.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda(run_cli, image):
    line = error_line(
        run_cli(f"read-h5 -f image.h5 inference -f identity {PATCH} -c 1 --device cuda", expect=1)
    )
    assert "--device cuda: CUDA is not available" in line


UNET = "-f pytorch -m {0}/unet.py -w {0}/unet.pt -c 3 --mask-output-chunk".format(
    REPO / "examples" / "inference"
)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "options, atol",
    [
        ("", 1e-4),  # IEEE float32, not TensorFloat-32
        ("--pin-memory", 1e-4),
        ("--autocast float16", 2e-2),
        ("--autocast bfloat16", 1e-1),
        ("--whole-chunk", 1e-4),
    ],
)
def test_the_unet_on_cuda_gives_the_cpu_result(run_cli, image, options, atol):
    mode = "" if "whole" in options else "--patch-overlap 2 8 8"
    chain = f"read-h5 -f image.h5 inference {UNET} --patch-size 8 32 32 {mode}"
    cpu = options if "whole" in options else ""  # the reference: float32 on the CPU
    run_cli(f"{chain} {cpu} --device cpu write-h5 -f cpu.h5")
    result = run_cli(f"--log-file run.log {chain} {options} --device cuda write-h5 -f cuda.h5")
    assert "inference on cuda:0" in result.err
    cpu, cuda = read_h5("cpu.h5"), read_h5("cuda.h5")
    assert cuda.bbox == cpu.bbox and cuda.array.dtype == np.float32
    np.testing.assert_allclose(cuda.array, cpu.array, atol=atol)
    assert np.abs(cuda.array - cpu.array).mean() < atol / 4


def test_weights_are_never_unpickled(run_cli, image, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": Evil()}))
    model = models.write(tmp_path, "net.py", models.PATCH_DEPENDENT, CROP=(0, 0, 0), CHANNELS=1)
    line = error_line(
        run_cli(
            f"read-h5 -f image.h5 inference -f pytorch -m {model} -w evil.pt {PATCH} -c 1", expect=1
        )
    )
    assert "not a loadable PyTorch state dict" in line
    assert not marker.exists()


BAD = [
    ("-f pytorch -m missing.py {patch} -c 1", "model file missing.py: no such file"),
    ("-f pytorch -m net.py -w missing.pt {patch} -c 1", "weight file missing.pt: no such file"),
    ("-f pytorch -m empty.py {patch} -c 1", "defines neither InstantiatedModel nor load_model"),
    ("-f universal -m empty.py {patch} -c 1", "defines no class PatchInferencer"),
    ("-f pytorch -m net.py -w wrong.pt {patch} -c 1", "do not fit the model"),
    ("-f pytorch -m net.py {patch} -c 3", "returned 1 output channels but --num-output-channels"),
    ("-f identity -s 8 128 128 -c 1", "is larger than the chunk"),
    ("-f identity -s 8 32 32 -v 8 8 8 -c 1", "smaller than the output patch"),
    ("-f identity -s 8 32 32 -z 8 31 31 -c 1", "must be even"),
    ("-f identity {patch} -c 1 --patch-num 2 2 2", "--patch-num 2 2 2 does not fit"),
    (
        "-f pytorch -m net.py -s 8 32 32 -z 8 32 32 -c 1 --mask-output-chunk",
        "the model returned patches of 6 24 24, smaller than the output patch 8 32 32",
    ),
    (
        "-f pytorch -m odd.py -s 8 32 32 -z 6 24 24 -c 1 --mask-output-chunk",
        "the model returned patches of 7 32 32, which have no centre of the output patch size",
    ),
    ("-f pytorch {patch} -c 1", "needs --convnet-model"),
    ("-f identity -s 20 64 80 -c 1", "crop margin 10 32 40 leaves nothing"),
]


@pytest.mark.parametrize("options, message", BAD)
def test_bad_input(run_cli, image, tmp_path, options, message):
    models.write(
        tmp_path, "net.py", models.PATCH_DEPENDENT.replace("CHANNELS", "1"), CROP=(0, 0, 0)
    )
    if "smaller than the output patch" in message:  # a model that crops 1 4 4 itself
        models.write(tmp_path, "net.py", models.PATCH_DEPENDENT, CROP=(1, 4, 4), CHANNELS=1)
    models.write(tmp_path, "odd.py", models.PATCH_DEPENDENT, CROP=(0, 0, 0), CHANNELS=1)
    (tmp_path / "odd.py").write_text(
        (tmp_path / "odd.py").read_text() + "\nforward = Net.forward\n"
        "Net.forward = lambda self, x: forward(self, x)[:, :, 1:]\n"
    )
    (tmp_path / "empty.py").write_text("x = 1\n")
    torch.save({"other": torch.zeros(2)}, tmp_path / "wrong.pt")
    result = run_cli(
        f"read-h5 -f image.h5 -o image inference -i image -o out "
        f"{options.format(patch=PATCH)} write-h5 -i out -f out.h5",
        expect=1,
    )
    assert message in error_line(result)
    assert not (tmp_path / "out.h5").exists()


def test_a_model_returning_nan_fails_the_task_in_one_line(run_cli, image, tmp_path):
    model = models.write(tmp_path, "nan.py", models.NAN_CORNER)
    result = run_cli(
        f"create-bbox --start 5 10 20 --size 20 64 80 read-h5 -f image.h5 "
        f"inference -f pytorch --convnet-model {model} --input-patch-size 10 32 40 "
        "--output-patch-overlap 0 0 0 -c 1 --mask-output-chunk write-h5 -f out.h5",
        expect=1,
    )
    line = error_line(result)
    assert line.startswith("chunkflow: error: inference (task 5-25_10-74_20-100): ")
    assert "has 8 of 102,400 voxels that are NaN or inf" in line  # one NaN in each of 8 patches
    assert not (tmp_path / "out.h5").exists()
