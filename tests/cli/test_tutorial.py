"""The tutorial's command lines, run as typed with only paths and sizes adapted.

The tutorial (chunkflow 1.x's docs) fetches its tasks from an SQS queue; here `generate-tasks`
over the output volume makes the same tasks. `cloud-watch` is left out (it needs AWS; see
tests/cli/test_logs.py). Everything else is the tutorial's spelling.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chunkflow.chunk import Chunk
from chunkflow.cli.framework import NAMES, OPERATORS
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.image.normalize import normalize_section_contrast
from chunkflow.io.h5 import write_h5
from chunkflow.io.precomputed import create_info, read_precomputed, write_precomputed
from tests.conftest import error_line
from tests.inference import models

VOXEL = (40, 4, 4)  # mip 0; mip 1 is 40 8 8 (factor 1 2 2 per mip)


def volume(path, array, mip, dtype="uint8", channels=1, layer="image", block=(6, 32, 32), top=1):
    """A precomputed volume of 18 x 192 x 192 voxels at mip 0, holding `array` at `mip`."""
    create_info(path, (18, 192, 192), VOXEL, (0, 0, 0), dtype, channels, layer, block, "raw", top)
    if array is not None:
        write_precomputed(Chunk(array, (0, 0, 0), (40, 4 * 2**mip, 4 * 2**mip)), path, mip)
    return path


@pytest.fixture
def production(tmp_path):
    """The volumes, histograms and model of the tutorial's mask-and-skip production line.

    At mip 1 the volumes are 18 x 96 x 96: 27 tasks of 6 x 32 x 32. The image mask (at mip 3,
    the tutorial's mip 8) covers all of the middle task grown by the expand margin, so that task
    is skipped to `save`; the output mask covers one corner of the output.
    """
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(18, 96, 96), dtype=np.uint8)
    image_mask = np.zeros((18, 24, 24), np.uint8)
    image_mask[4:14, 6:18, 6:18] = 1  # mip 3 = mip 1 / (1 4 4): z 4-14, y and x 24-72 at mip 1
    output_mask = np.zeros((18, 24, 24), np.uint8)
    output_mask[0:6, 0:4, 0:4] = 1
    levels = tmp_path / "levels"
    levels.mkdir()
    for z in range(18):
        histogram = np.bincount(image[z].ravel(), minlength=256)
        (levels / str(z)).write_text(json.dumps({"levels": histogram.tolist()}))
    models.write(tmp_path, "model1000000.py", models.WHOLE_PATCH, CHANNELS=5)
    gains = torch.tensor([0.5, 1.0, 0.25, 2.0, 8.0])
    torch.save({"gain": gains}, tmp_path / "model1000000.chkpt")
    return {
        "image": image,
        "gains": gains.numpy(),
        "IMAGE_LAYER_PATH": volume(f"file://{tmp_path}/image", image, 1),
        "IMAGE_MASK_LAYER_PATH": volume(
            f"file://{tmp_path}/image-mask", image_mask, 3, block=(6, 8, 8), top=3
        ),
        "OUTPUT_MASK_LAYER_PATH": volume(
            f"file://{tmp_path}/output-mask", output_mask, 3, block=(6, 8, 8), top=3
        ),
        "OUTPUT_LAYER_PATH": volume(
            f"file://{tmp_path}/output", None, 1, "float32", 4, "probability_map"
        ),
        "LEVELS": f"file://{levels}",
    }


def production_line(v: dict, save_options: str = "") -> str:
    return (
        f"--verbose --mip 1 generate-tasks -v {v['OUTPUT_LAYER_PATH']} -c 6 32 32 "
        f'cutout --volume-path="{v["IMAGE_LAYER_PATH"]}" --expand-margin-size 2 8 8 --fill-missing '
        "mask --name='check-all-zero-and-skip-to-save' --check-all-zero "
        f"--volume-path=\"{v['IMAGE_MASK_LAYER_PATH']}\" --mip 3 --skip-to='save' --fill-missing "
        f'--inverse normalize-section-contrast -p "{v["LEVELS"]}" -l 0.0023 -u 0.01 '
        'inference --convnet-model="model1000000.py" --convnet-weight-path="model1000000.chkpt" '
        "--input-patch-size 6 24 24 --output-patch-size 4 16 16 --output-patch-overlap 2 8 8 "
        "--output-crop-margin 1 4 4 --num-output-channels 4 --framework='pytorch' "
        "--batch-size 6 --patch-num 3 4 4 "
        f"mask --name='mask-aff' --volume-path=\"{v['OUTPUT_MASK_LAYER_PATH']}\" --mip 3 "
        "--fill-missing --inverse "
        f'save --volume-path="{v["OUTPUT_LAYER_PATH"]}" --upload-log --nproc 0 --create-thumbnail '
        f"{save_options} delete-task-in-queue"
    )


SKIPPED = (slice(6, 12), slice(32, 64), slice(32, 64))  # the middle task, at mip 1
MASKED = (slice(0, 6), slice(0, 16), slice(0, 16))  # the output mask's corner, at mip 1


def test_mask_and_skip_production_line(run_cli, production, tmp_path):
    run_cli(production_line(production))

    out_path = production["OUTPUT_LAYER_PATH"]
    region = BoundingBox((0, 0, 0), (18, 96, 96))
    out = read_precomputed(out_path, region, mip=1).array  # every block written: no fill
    assert out.shape == (4, 18, 96, 96) and out.dtype == np.float32

    # the model returns its whole 6x24x24 input patch in 5 channels: centre 4x16x16, first 4
    normalized = normalize_section_contrast(
        Chunk(production["image"]), 0.0023, 0.01, levels_path=production["LEVELS"]
    ).array
    expected = production["gains"][:4, None, None, None] * (normalized / np.float32(255))
    expected[(slice(None), *SKIPPED)] = 0  # skipped to save: zeros of the output's dtype
    expected[(slice(None), *MASKED)] = 0
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.all(out[(slice(None), *SKIPPED)] == 0)
    assert np.all(normalized[SKIPPED] > 0)  # the zeros come from the skip, not the data

    logs = sorted((tmp_path / "output" / "log").glob("*.json"))
    assert len(logs) == 27
    skipped = json.loads((tmp_path / "output" / "log" / "6-12_32-64_32-64.json").read_text())
    assert skipped["resumed"]["operator"] == "save"
    assert "image-mask covers all of the chunk" in skipped["resumed"]["reason"]
    assert "inference" not in skipped["timer"]
    assert "inference" in json.loads(logs[0].read_text())["timer"]

    # the thumbnail: uint8, the mean of the 4 channels quantized, averaged down to mip 6
    thumb = read_precomputed(f"{out_path}/thumbnail", BoundingBox((0, 0, 0), (18, 3, 3)), mip=6)
    assert thumb.dtype == np.uint8 and thumb.voxel_size == (40, 256, 256)
    quantized = np.rint(np.clip(out.mean(axis=0), 0, 1) * 255)
    blocks = quantized.reshape(18, 3, 32, 3, 32).mean(axis=(2, 4))
    # tinybrain's integer averaging truncates mip by mip: within two grey levels of the mean
    np.testing.assert_allclose(thumb.array, blocks, atol=2)
    assert np.all(thumb.array[6:12, 1, 1] == 0)


def test_skipped_tasks_nothing_leaves_the_task_unwritten(run_cli, production, tmp_path):
    run_cli(production_line(production, "--skipped-tasks nothing"))
    out_path = production["OUTPUT_LAYER_PATH"]
    skipped = BoundingBox((6, 32, 32), (12, 64, 64))
    line = "data missing in 6-12_32-64_32-64"
    with pytest.raises(ChunkflowError, match=line):
        read_precomputed(out_path, skipped, mip=1)
    assert read_precomputed(out_path, BoundingBox((0, 0, 0), (6, 32, 32)), mip=1).array.any()
    assert (tmp_path / "output" / "log" / "6-12_32-64_32-64.json").exists()


def test_a_task_skipped_to_save_writes_zeros_of_the_volume(run_cli, tmp_path):
    """An image chunk skipped to a save into a 3-channel float volume: zeros of the volume's
    dtype and channels over the task's bbox, not the image (chunkflow 1.x's behaviour)."""
    out = volume(f"file://{tmp_path}/affs", None, 0, "float32", 3, "affinity_map", (6, 32, 32))
    run_cli(
        "create-bbox -b 6-12_32-64_32-64 create-chunk -s 10 48 48 --voxel-offset 4 24 24 "
        f"--pattern zero skip-all-zero --skip-to save save -v {out}"
    )
    zeros = read_precomputed(out, BoundingBox((6, 32, 32), (12, 64, 64)))
    assert zeros.shape == (3, 6, 32, 32) and zeros.dtype == np.float32
    assert not zeros.array.any()
    run_cli(
        "create-bbox -b 0-6_0-32_0-32 create-chunk -s 6 32 32 --pattern zero "
        f"skip-all-zero --skip-to save save -v {out} --skipped-tasks nothing"
    )
    with pytest.raises(ChunkflowError, match="data missing in 0-6_0-32_0-32"):
        read_precomputed(out, BoundingBox((0, 0, 0), (6, 32, 32)))
    # without an info there is no dtype to write zeros of: a warning, nothing written
    result = run_cli(
        "create-bbox -b 0-6_0-32_0-32 create-chunk -s 6 32 32 --pattern zero "
        f"skip-all-zero --skip-to save save -v {tmp_path}/none"
    )
    assert "has no info yet" in result.err
    assert not (tmp_path / "none").exists()


def test_only_the_operator_named_by_skip_to_sees_the_skip(run_cli, tmp_path):
    """A task resumed at an earlier operator reaches save as a normal task."""
    run_cli(
        "create-bbox -b 0-4_0-8_0-8 create-chunk -s 4 8 8 --pattern zero skip-all-zero "
        "--skip-to again create-chunk --name again -s 4 8 8 --pattern sin -t float32 "
        f"save -v {tmp_path}/out"
    )
    saved = read_precomputed(f"file://{tmp_path}/out", BoundingBox((0, 0, 0), (4, 8, 8)))
    assert saved.dtype == np.float32 and saved.array.any()


def test_thumbnails_are_a_write(run_cli, tmp_path):
    run_cli(
        "--dry-run create-chunk -s 4 64 64 --pattern sin -t float32 "
        f"save -v {tmp_path}/out --create-thumbnail --upload-log"
    )
    assert not (tmp_path / "out").exists()


def test_thumbnail_of_an_image_and_of_a_segmentation(run_cli, tmp_path):
    run_cli(
        "create-chunk -s 4 64 64 --pattern random --seed 3 -t uint8 -o image "
        f"save -i image -v {tmp_path}/img --create-thumbnail --thumbnail-mip 2"
    )
    image = read_precomputed(f"file://{tmp_path}/img", BoundingBox((0, 0, 0), (4, 64, 64))).array
    thumb = read_precomputed(
        f"file://{tmp_path}/img/thumbnail", BoundingBox((0, 0, 0), (4, 16, 16)), mip=2
    )
    assert thumb.dtype == np.uint8 and thumb.is_image
    blocks = image.astype(np.float64).reshape(4, 16, 4, 16, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(thumb.array, blocks, atol=1)

    labels = np.kron(np.arange(16, dtype=np.uint32).reshape(1, 4, 4), np.ones((4, 16, 16), int))
    write_h5(Chunk(labels.astype(np.uint32), layer_type="segmentation"), str(tmp_path / "seg.h5"))
    run_cli(f"read-h5 -f seg.h5 save -v {tmp_path}/seg --create-thumbnail --thumbnail-mip 4")
    thumb = read_precomputed(
        f"file://{tmp_path}/seg/thumbnail", BoundingBox((0, 0, 0), (4, 4, 4)), mip=4
    )
    assert thumb.is_segmentation and thumb.dtype == np.uint32
    np.testing.assert_array_equal(thumb.array, labels[:, ::16, ::16])


def test_a_thumbnail_the_chunk_cannot_make_is_one_line(run_cli, tmp_path):
    result = run_cli(
        f"create-chunk -s 4 48 48 -t float32 save -v {tmp_path}/out --create-thumbnail "
        "--thumbnail-mip 5",
        expect=1,
    )
    assert error_line(result) == (
        "chunkflow: error: save (task 0-4_0-48_0-48): a thumbnail at mip 5 of chunk "
        "0-4_0-48_0-48 at mip 0 needs its offset and size divisible by 1 32 32 (z y x); choose "
        "another thumbnail mip or chunk size"
    )
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.fixture
def image_volume(tmp_path):
    """A 16 x 64 x 128 uint8 image at mip 2 (the tutorial's inference line runs at mip 2)."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(16, 64, 128), dtype=np.uint8)
    create_info(
        f"file://{tmp_path}/image", (16, 256, 512), VOXEL, (0, 0, 0), "uint8", 1, "image",
        (8, 64, 64), "raw", 2,
    )  # fmt: skip
    write_precomputed(Chunk(image, (0, 0, 0), (40, 16, 16)), f"file://{tmp_path}/image", 2)
    create_info(
        f"file://{tmp_path}/affs", (16, 256, 512), VOXEL, (0, 0, 0), "float32", 3,
        "affinity_map", (8, 64, 64), "raw", 2,
    )  # fmt: skip
    return image


def inference_line(tmp_path, fill_missing: str = "--fill-missing") -> str:
    return (
        f"--verbose --mip 2 generate-tasks -v file://{tmp_path}/affs -c 8 64 64 "
        f'cutout --volume-path="file://{tmp_path}/image" --expand-margin-size 2 16 16 '
        f"{fill_missing} inference --convnet-model=net.py "
        '--convnet-weight-path="weight.pt" --patch-size 4 32 32 --patch-overlap 2 16 16 '
        f"--framework='pytorch' --batch-size=8 save --volume-path=\"file://{tmp_path}/affs\" "
        "--upload-log --nproc 0 --create-thumbnail delete-task-in-queue"
    )


def test_inference_line_reads_past_the_volume_edge_with_fill_missing(
    run_cli, image_volume, tmp_path
):
    models.write(tmp_path, "net.py", models.WHOLE_PATCH, CHANNELS=3)
    torch.save({"gain": torch.tensor([1.0, 0.5, 0.25])}, tmp_path / "weight.pt")
    run_cli(inference_line(tmp_path))  # every task is a border task: 4 of 16 x 64 x 128

    affs = read_precomputed(f"file://{tmp_path}/affs", BoundingBox((0, 0, 0), (16, 64, 128)), 2)
    expected = np.array([1.0, 0.5, 0.25])[:, None, None, None] * (image_volume / 255.0)
    np.testing.assert_allclose(affs.array, expected, atol=1e-5)
    assert len(list((tmp_path / "affs" / "log").glob("*.json"))) == 4
    thumb = read_precomputed(
        f"file://{tmp_path}/affs/thumbnail", BoundingBox((0, 0, 0), (16, 4, 8)), 6
    )
    quantized = np.rint(np.clip((affs.array[1] + affs.array[2]) / 2, 0, 1) * 255)  # y, x mean
    expected = quantized.reshape(16, 4, 16, 8, 16).mean(axis=(2, 4))
    np.testing.assert_allclose(thumb.array, expected, atol=2)


def test_past_the_edge_without_fill_missing_names_the_bounds(run_cli, image_volume, tmp_path):
    models.write(tmp_path, "net.py", models.WHOLE_PATCH, CHANNELS=3)
    torch.save({"gain": torch.ones(3)}, tmp_path / "weight.pt")
    argv = inference_line(tmp_path, fill_missing="").replace("--verbose ", "")  # no traceback
    line = error_line(run_cli(argv, expect=1))
    assert line == (
        "chunkflow: error: cutout (task 0-8_0-64_0-64): "
        f"file://{tmp_path}/image: cutout -2-10_-16-80_-16-80 at mip 2 is outside the volume, "
        "which covers 0-16_0-64_0-128 (use --fill-missing to read zeros past its edge)"
    )


@pytest.fixture
def segmentation(gala, tmp_path):
    """The gala ground truth (50 x 100 x 200) as mip 3 of a volume of 45 x 5 x 5 nm voxels
    (45 x 40 x 40 at mip 3), as in the tutorial's meshing line (`--mip 3`)."""
    from tests.conftest import read_stack

    labels = read_stack(gala / "test-gt.lzf.h5").astype(np.uint32)
    path = f"file://{tmp_path}/seg"
    create_info(
        path, (50, 800, 1600), (45, 5, 5), (0, 0, 0), "uint32", 1, "segmentation",
        (25, 50, 100), "raw", 3,
    )  # fmt: skip
    write_precomputed(Chunk(labels, (0, 0, 0), (45, 40, 40), "segmentation"), path, 3)
    return path, labels


def test_meshing_line(run_cli, segmentation):
    """`cutout` writes `chunk` and `mesh` reads `chunk`: the tutorial's line needs no -i/-o."""
    from cloudvolume import CloudVolume

    path, labels = segmentation
    run_cli(
        f"--mip 3 generate-tasks -v {path} -c 26 51 101 --stride 25 50 100 --respect-stop "
        f"cutout -v {path} --fill-missing mesh --voxel-size 45 5 5 -o {path} "
        "--dust-threshold 100 delete-task-in-queue"
    )
    run_cli(f"mesh-manifest --volume-path {path} --prefix 7")
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    sevens = [int(i) for i, n in zip(ids, counts) if str(i).startswith("7") and n > 100]
    assert sevens
    vol = CloudVolume(path)
    for label in sevens:
        mesh = vol.mesh.get(label)
        mesh = mesh[label] if isinstance(mesh, dict) else mesh
        z, y, x = np.nonzero(labels == label)
        voxel = np.array([5, 5, 45])  # --voxel-size, x y z
        low = np.array([x.min(), y.min(), z.min()]) * voxel - voxel
        high = np.array([x.max() + 1, y.max() + 1, z.max() + 1]) * voxel + voxel
        assert len(mesh.faces) > 0, label
        assert np.all(mesh.vertices >= low) and np.all(mesh.vertices <= high), label


def test_skeletonize_after_cutout_needs_no_names(run_cli, segmentation):
    from cloudvolume import CloudVolume

    path, labels = segmentation
    run_cli(
        f"--mip 3 generate-tasks -v {path} -c 26 100 200 --stride 25 100 200 --respect-stop "
        f"cutout -v {path} --fill-missing skeletonize --voxel-size 45 5 5 -o {path} "
        "--dust-threshold 1000"
    )
    run_cli(f"skeleton-merge -v {path}")
    largest = int(np.bincount(labels.ravel())[1:].argmax()) + 1
    skeleton = CloudVolume(path).skeleton.get(largest)
    assert len(skeleton.vertices) > 10 and len(skeleton.components()) == 1


def test_single_input_operators_read_and_write_chunk_by_default():
    """A decision: an operator with one input chunk reads `chunk` and writes `chunk` unless
    told otherwise, so `cutout OP save` chains need no names (as in chunkflow 1.x)."""
    wrong = []
    for name, command in OPERATORS.items():
        for param in command.params:
            if param.name in ("input_chunk_name", "output_chunk_name"):
                single = param.type is not NAMES and isinstance(param.default, str)
                if single and param.default != "chunk":
                    wrong.append(f"{name} {param.opts[0]} {param.default}")
    assert not wrong


def test_setup_env_without_an_input_volume_names_the_option(run_cli):
    result = run_cli(
        'setup-env -l "file:///tmp/my/output/layer/path" -r 14 -z 20 256 256 -c 3 -m 1 '
        "--thumbnail -e raw -v 40 4 4 --max-mip 6 -q my-sqs-queue-name",
        expect=1,
    )
    assert "give -i/--input-layer-path" in error_line(result)
