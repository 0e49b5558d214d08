"""chunkflow.pipeline: the chain engine from Python, with the command line's rules."""

import subprocess
import sys

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.h5 import read_h5, write_h5
from chunkflow.operators import op
from chunkflow.pipeline import Operator, OperatorError, Pipeline, RunConfig
from chunkflow.segmentation.labels import connected_components, threshold
from chunkflow.task import Task


def test_importing_the_engine_imports_no_cli_and_nothing_heavy():
    code = (
        "import sys, chunkflow.pipeline; print([m for m in ('click', 'torch', 'cloudvolume', "
        "'neuroglancer', 'h5py') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def blobs() -> np.ndarray:
    image = np.zeros((4, 16, 16), np.float32)
    image[:, 2:6, 2:6] = 0.9
    image[:, 10:14, 9:15] = 0.8
    return image


def test_library_functions_chained_on_an_array_with_explicit_geometry(tmp_path):
    pipeline = Pipeline(
        [
            op(threshold, "image", "mask", value=0.5),
            op(connected_components, "mask", "seg"),
            op(write_h5, "seg", (), effects=("writes",), path=str(tmp_path / "seg.h5")),
        ]
    )
    [task] = pipeline.process(image=blobs(), voxel_offset=(10, 20, 30), voxel_size=(40, 4, 4))
    seg = task["seg"]
    assert seg.voxel_offset == (10, 20, 30) and seg.voxel_size == (40, 4, 4)
    assert sorted(np.unique(seg.array)) == [0, 1, 2]
    direct = connected_components(threshold(Chunk(blobs(), (10, 20, 30), (40, 4, 4)), 0.5))
    np.testing.assert_array_equal(seg.array, direct.array)
    written = read_h5(str(tmp_path / "seg.h5"))
    np.testing.assert_array_equal(written.array, seg.array)
    assert written.voxel_offset == (10, 20, 30)


def test_one_operator_on_chunks_or_arrays():
    mask = op(threshold, "image", "mask", value=0.5)
    from_array = mask.process(blobs(), voxel_size=(40, 4, 4))
    assert from_array.voxel_size == (40, 4, 4) and from_array.array.sum() == 4 * (16 + 24)
    chunk = Chunk(blobs(), (1, 2, 3))
    assert mask.process(chunk).voxel_offset == (1, 2, 3)
    with pytest.raises(ChunkflowError, match="voxel_offset .* differs from the chunk's own"):
        mask.process(chunk, voxel_offset=(0, 0, 0))
    with pytest.raises(ChunkflowError, match=r"threshold reads 1 chunk\(s\) \(image\), got 2"):
        mask.process(chunk, chunk)


def recorder(log: list, tag: str):
    def record(chunk):
        log.append(tag)

    return record


def test_dry_run_holds_back_every_kind_with_effects(tmp_path):
    log = []
    stream_ran = []

    def sink(stream):
        for task in stream:
            stream_ran.append(task)
            yield task

    operators = [
        op(write_h5, "image", (), effects=("writes",), path=str(tmp_path / "a.h5")),
        op(recorder(log, "final"), "image", (), kind="finalizer", effects=("logs",)),
        op(recorder(log, "pure final"), "image", (), kind="finalizer"),
        Operator("train", sink, kind="stream", effects=("checkpoints",)),
    ]
    [task] = Pipeline(operators).process(image=blobs(), dry_run=True)
    assert list(tmp_path.iterdir()) == [] and stream_ran == []
    assert log == ["pure final"] and isinstance(task["image"], Chunk)
    Pipeline(operators).process(image=blobs())
    assert (tmp_path / "a.h5").exists() and len(stream_ran) == 1
    assert log == ["pure final", "final", "pure final"]


def test_skipped_tasks_reach_finalizers_only():
    log = []

    def skip_empty(task):
        if not task.chunk("image").array.any():
            task.skip("all zero")

    operators = [
        Operator("skip-empty", skip_empty, inputs="image"),
        op(recorder(log, "compute"), "image", ()),
        op(recorder(log, "final"), "image", (), kind="finalizer"),
    ]
    [task] = Pipeline(operators).process(image=np.zeros((2, 2, 2), np.uint8))
    assert task.skipped and log == ["final"]
    Pipeline(operators).process(image=np.ones((2, 2, 2), np.uint8))
    assert log == ["final", "compute", "final"]


def test_errors_name_the_operator_and_stop_the_run_or_fail_one_task():
    def broken(chunk):
        raise ValueError("no good")

    pipeline = Pipeline([op(broken, "image", ())])
    with pytest.raises(OperatorError, match=r"^broken: ValueError: no good$"):
        pipeline.process(image=blobs())
    task = Task(image=Chunk(blobs()))
    task.contain_errors = True
    [out] = pipeline.stream([task])
    assert out.failed and "no good" in out.error


def test_declarations_are_checked():
    with pytest.raises(ChunkflowError, match="effects \\['prints'\\] are not among"):
        op(threshold, effects=("prints",))
    with pytest.raises(ChunkflowError, match="kind 'sink' is not one of"):
        Operator("x", print, kind="sink")
    with pytest.raises(ChunkflowError, match="a pipeline takes operators"):
        Pipeline([threshold])


def test_repeated_operators_get_distinct_names():
    pipeline = Pipeline([op(threshold, value=0.5), op(threshold, value=0.7)])
    stages = pipeline.stages(RunConfig())
    assert [s.name for s in stages] == ["threshold", "threshold#2"]


def test_the_run_gives_its_options_to_the_operators_that_take_them():
    seen = []
    mip = Operator("mip", lambda task, config: seen.append(config.mip), takes_config=True)
    mip(Task())  # called directly: fn on the task, under default options
    Pipeline([mip]).run(config=RunConfig(mip=3))
    assert seen == [0, 3]
