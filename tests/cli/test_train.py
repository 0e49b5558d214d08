"""`train` in a chain: precomputed samples -> train -> inference -> agglomerate -> evaluate."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import GALA, error_line
from tests.training.synthetic import write_tiny_model

WHOLE = "--start 0 0 0 --size 50 100 200"
SAMPLE = f"cutout -v img {WHOLE} -o image cutout -v gt {WHOLE} -o labels"
FAST = "--iterations 6 -b 2 --num-workers 0 --num-threads 1 --patch-size 8 24 24 --device cpu"


@pytest.fixture
def volumes(run_cli, tmp_path):
    run_cli(
        f"read-h5 -f {GALA}/train-image.h5 -o image read-h5 -f {GALA}/train-gt.lzf.h5 "
        "-e uint32 -o labels save -i image -v img save -i labels -v gt"
    )
    write_tiny_model(tmp_path / "tiny.py")
    return tmp_path


def test_tasks_become_samples_and_the_model_runs_in_inference(run_cli, volumes):
    result = run_cli(
        "generate-tasks --roi-start 0 0 0 --roi-stop 50 100 200 -c 25 100 100 "
        "cutout -v img -o image cutout -v gt -o labels "
        f"train -m tiny.py -c ckpt {FAST} --checkpoint-interval 3 --snapshot-interval 6"
    )
    assert "train: 4 samples" in result.err
    checkpoints = sorted(p.name for p in (volumes / "ckpt").glob("*.pt"))
    assert checkpoints == ["model.pt", "model_00000003.pt", "model_00000006.pt"]
    assert (volumes / "ckpt" / "snapshots" / "batch_00000006.h5").exists()
    model = torch.load(volumes / "ckpt" / "model.pt", weights_only=True)
    assert model["iteration"] == 6 and "optimizer" not in model

    run_cli(
        f"read-h5 -f {GALA}/test-image.h5 -t 0 0 0 -s 16 48 48 -o image "
        "inference -i image -o affs --framework pytorch --convnet-model tiny.py "
        "--convnet-weight-path ckpt/model.pt --input-patch-size 8 24 24 "
        "--output-patch-overlap 2 8 8 --num-output-channels 3 --mask-output-chunk "
        "agglomerate -i affs -o seg --threshold 0.5 "
        f"read-h5 -f {GALA}/test-gt.lzf.h5 -t 0 0 0 -s 16 48 48 -e uint32 -o gt "
        "evaluate-segmentation -s seg -g gt -o eval.json"
    )
    scores = json.loads((volumes / "eval.json").read_text())
    assert scores["voi_split"] >= 0 and scores["voi_merge"] >= 0


def test_rerun_resumes_from_the_newest_checkpoint(run_cli, volumes):
    chain = f"{SAMPLE} train -m tiny.py -c ckpt {FAST}"
    chain += " --checkpoint-interval 2"
    run_cli(chain.replace("--iterations 6", "--iterations 4"))
    result = run_cli(chain)
    assert "resumed from" in result.err and "model_00000004.pt" in result.err
    assert (volumes / "ckpt" / "model_00000006.pt").exists()


@pytest.mark.parametrize(
    "chain, message",
    [
        (
            f"cutout -v img {WHOLE} -o image train -m tiny.py -c ckpt",
            "train: no chunk named 'labels' in the task (it holds: image)",
        ),
        (
            f"cutout -v img {WHOLE} -o image read-h5 -f {GALA}/train-gt.lzf.h5 -e uint32 -o labels "
            "-v 0 0 1 train -m tiny.py -c ckpt",
            "chunk 'label' (voxel size (1, 1, 1), box 0-50_0-100_1-201) and chunk 'image' "
            "(voxel size (1, 1, 1), box 0-50_0-100_0-200) do not cover the same voxels",
        ),
        (
            f"{SAMPLE} train -m tiny.py -c ckpt --patch-size 64 64 64",
            "(50, 100, 200) voxels is smaller than the training patch (64, 64, 64)",
        ),
        (
            f"{SAMPLE} train -m tiny.py -c ckpt "
            "--patch-size 8 24 24 --neighborhood '1,0,0;0,1,0;0,0,1;0,0,3'",
            "outputs 3 channels (shape (1, 3, 8, 24, 24)) but the targets have 4 channels",
        ),
        (
            f"{SAMPLE} train -m tiny.py -c tiny.py/ckpt --patch-size 8 24 24",
            "checkpoint folder tiny.py/ckpt: cannot write there",
        ),
    ],
)
def test_bad_input_is_one_line(run_cli, volumes, chain, message):
    line = error_line(run_cli(chain, expect=1))
    assert line.startswith("chunkflow: error: train") and message in line, line


def test_gunpowder_conventions_targets_and_tensorboard(run_cli, volumes):
    """Offsets typed in gunpowder's sign, rotation in radians, two targets from one 4-channel
    output (3 affinities + foreground), the standalone operators' augmentations, TensorBoard."""
    write_tiny_model(volumes / "four.py", out_channels=4)
    result = run_cli(
        f"{SAMPLE} train -m four.py -c ckpt {FAST.replace('--iterations 6', '--iterations 3')} "
        "--target affinities --target foreground:fg --loss balanced-bce "
        "--neighborhood=-1,0,0;0,-1,0;0,0,-1 --neighborhood-sign gunpowder "
        "--rotation-interval 0 1.5708 --rotation-unit radians --sample-weights uniform "
        "--mirror-axes 1,2 --intensity-z-section-wise --noise-mode s&p --noise-amount 0.01 "
        "--prob-missing 0.1 --contrast-scale 0.2 --no-clip"
    )
    assert "affinities -> affinities (balanced-bce), foreground -> fg (balanced-bce)" in result.err
    assert torch.load(volumes / "ckpt" / "model.pt", weights_only=True)["iteration"] == 3
    assert list((volumes / "ckpt" / "tensorboard").glob("events.out.tfevents.*"))
    run_cli(
        f"{SAMPLE} train -m tiny.py -c ckpt2 {FAST.replace('--iterations 6', '--iterations 1')} "
        "--no-tensorboard"
    )
    assert not (volumes / "ckpt2" / "tensorboard").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ("--loss hinge", "unknown loss 'hinge'"),
        ("--target edges", "unknown target 'edges'"),
        ("--sample-weights 1,x", "--sample-weights '1,x': expected numbers separated by commas"),
        ("--sample-weights 1,2", "2 sample weights given for 1 samples"),
        ("--target lsd --loss balanced-mse", "the loss balanced-mse balances binary targets"),
        ("--spatial-dims 2", "a 2D model trains on patches one section thick (z = 1)"),
    ],
)
def test_bad_target_options_are_one_line(run_cli, volumes, options, message):
    line = error_line(run_cli(f"{SAMPLE} train -m tiny.py -c ckpt {FAST} {options}", expect=1))
    assert line.startswith("chunkflow: error: train") and message in line, line


def test_rotation_interval_unit():
    from chunkflow.cli.augment import elastic_kwargs

    def interval(unit, low, high):
        options = dict(
            control_point_spacing=(4, 40, 40),
            jitter_sigma=(0, 2, 2),
            rotation_interval=(low, high),
            rotation_unit=unit,
            prob_slip=0,
            prob_shift=0,
            max_misalign=0,
        )
        return elastic_kwargs(options)["rotation_interval"]

    assert interval("degrees", 0, 90) == pytest.approx((0, 1.5707963))
    assert interval("radians", 0, 1.5) == (0, 1.5)  # gunpowder's ElasticAugment unit


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_resumes_on_the_cpu(run_cli, tmp_path):
    """A checkpoint written on a GPU holds host tensors: the CPU reads it without a GPU."""
    write_tiny_model(tmp_path / "tiny.py")
    chain = (
        f"read-h5 -f {GALA}/train-image.h5 -o image read-h5 -f {GALA}/train-gt.lzf.h5 -e uint32 "
        "-o labels train -m tiny.py -c ckpt -b 2 --num-workers 0 --patch-size 8 24 24 "
        "--checkpoint-interval 2 --seed 0"
    )
    run_cli(f"--log-file cuda.log {chain} --iterations 4 --device cuda")
    assert "cuda:0" in (tmp_path / "cuda.log").read_text()
    state = torch.load(tmp_path / "ckpt" / "model_00000004.pt", weights_only=True)
    assert state["iteration"] == 4 and state["optimizer"]["state"]
    tensors = [*state["state_dict"].values()]
    tensors += [t for s in state["optimizer"]["state"].values() for t in s.values()]
    assert all(t.device.type == "cpu" for t in tensors)
    result = run_cli(f"{chain} --iterations 6 --device cpu")
    assert "resumed from" in result.err and "model_00000004.pt" in result.err
    assert torch.load(tmp_path / "ckpt" / "model.pt", weights_only=True)["iteration"] == 6
