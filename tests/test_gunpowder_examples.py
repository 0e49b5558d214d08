"""The two gunpowder tutorials as chunkflow command lines (examples/gunpowder/), run briefly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from chunkflow.geometry import BoundingBox
from chunkflow.io.h5 import read_h5
from chunkflow.io.zarr import read_zarr
from tests.conftest import GALA, REPO, read_stack

EXAMPLES = REPO / "examples" / "gunpowder"


def run(script: str, out: Path, **env) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env)
    proc = subprocess.run(
        ["bash", str(EXAMPLES / script), str(out)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Results in {out}" in proc.stdout
    return proc


def test_simple_pipeline(tmp_path):
    out = tmp_path / "simple"
    run("simple_pipeline.sh", out, BATCHES="2")
    section = read_stack(GALA / "train-image.h5")[25]
    gt = read_stack(GALA / "train-gt.lzf.h5")[25]
    image = BoundingBox((25, 0, 0), (26, 100, 200))

    fixed = read_h5(str(out / "fixed" / "25-26_50-98_150-198.h5"))
    np.testing.assert_array_equal(fixed.array[0], section[50:98, 150:198])

    for path in sorted((out / "random").iterdir()):  # mirrored and transposed real data
        batch, box = read_h5(str(path)).array[0], BoundingBox.from_string(path.name)
        crop = section[box.to_slices()[1:]]
        variants = [np.flip(c, axes) for c in (crop, crop.T) for axes in ([], [0], [1], [0, 1])]
        assert any(np.array_equal(batch, v) for v in variants), path.name

    augmented = sorted((out / "augmented").iterdir())
    assert len(augmented) == 2
    for path in augmented:
        batch = read_h5(str(path))
        assert image.contains(batch.bbox) and batch.shape == (1, 48, 48)
        assert batch.dtype == np.float32 and 0 <= batch.array.min() < batch.array.max() <= 1

    inside_gt = BoundingBox((25, 8, 16), (26, 92, 184))
    for path in sorted((out / "with-gt").iterdir()):
        with h5py.File(path) as f:
            raw, labels = f["raw"][()], f["gt"][()]
        assert raw.shape == labels.shape == (1, 48, 48)
        assert inside_gt.contains(BoundingBox.from_string(path.name))
        assert set(np.unique(labels)) <= set(np.unique(gt))

    prediction = read_zarr(str(out / "sample.zarr"), "prediction")
    assert prediction.bbox == image and prediction.shape == (1, 1, 100, 200)
    assert 0 < prediction.array.min() <= prediction.array.max() < 1


def test_boundary_prediction(tmp_path):
    out = tmp_path / "boundary"
    proc = run(
        "boundary_prediction.sh",
        out,
        ITERATIONS="1",
        PATCH_SIZE="8 32 32",
        REGION_SIZE="8 64 96",
        BLOCK_SIZE="8 64 48",
    )
    assert (out / "train" / "model.pt").is_file() and any((out / "train" / "snapshots").iterdir())
    affs = read_zarr(str(out / "prediction.zarr"), "affs")
    assert affs.shape == (3, 8, 64, 96) and affs.is_affinity_map
    assert 0 <= affs.array.min() and affs.array.max() <= 1
    for block in (np.s_[..., :48], np.s_[..., 48:]):  # both blocks were predicted
        assert affs.array[block].min() > 0
    metrics = json.loads((out / "evaluation.json").read_text())
    assert f"VOI split: {metrics['voi_split']:.6f}" in proc.stdout
    seg = read_zarr(str(out / "prediction.zarr"), "seg")
    assert seg.is_segmentation and seg.bbox == BoundingBox((0, 0, 0), (8, 64, 96))
