"""The text setup-env prints: the worker command line."""

import shlex

from chunkflow.report import worker_command
from tests.inference.test_plan import small_plan


def test_worker_command_spellings():
    plan = small_plan(thumbnail_mip=3, num_output_channels=2, dtype="float16")
    words = worker_command(
        plan, "file:///in", "file:///out", task_file="t.txt", thumbnail_path="file:///out/thumbnail"
    ).split()
    assert words[:5] == ["chunkflow", "--mip", "0", "fetch-task-from-file", "-f"]
    assert "delete-task-in-queue" not in words
    text = " ".join(words)
    assert "--convnet-model MODEL_PATH --convnet-weight-path WEIGHT_PATH" in text
    assert "--dtype float16" in text and "quantize --mode mean" in text
    assert f"--patch-num {' '.join(map(str, plan.patch_num))}" in text
    assert "downsample-upload -v file:///out --start-mip 1 --stop-mip 3" in text
    assert "-v file:///out/thumbnail --start-mip 3 --stop-mip 4" in text
    # no queue and no task file: generate-tasks reproduces the task grid
    text = worker_command(plan, None, "file:///out", convnet_model="m.pt", framework="pytorch")
    start = " ".join(map(str, plan.output_region.start))
    assert f"generate-tasks --roi-start {start}" in text
    assert "cutout -v INPUT_LAYER_PATH" in text and "WEIGHT_PATH" not in text
    queue = worker_command(plan, "in dir", "o", queue_name="q/x", visibility_timeout=60)
    assert shlex.split(queue)[-1] == "delete-task-in-queue" and "'in dir'" in queue
    assert "fetch-task -q q/x --visibility-timeout 60" in queue


def test_worker_command_keeps_the_s3_endpoint():
    """Workers elsewhere need the S3-compatible server setup-env ran against (--s3-endpoint)."""
    plan = small_plan()
    words = shlex.split(
        worker_command(plan, "s3://b/in", "s3://b/out", s3_endpoint="http://minio:9000")
    )
    assert words[:5] == ["chunkflow", "--s3-endpoint", "http://minio:9000", "--mip", "0"]


def test_segment_status_report_and_unfinished_phases():
    from types import SimpleNamespace

    from chunkflow.report import segment_status_report
    from chunkflow.segmentation.blockwise import unfinished_phases

    plan = SimpleNamespace(mode="cc", input_path="file:///in", output_path="file:///out")
    done = dict(tasks=8, fragments=8, edges=5, relabel=0, merge=None)
    phases = ("fragments", "edges", "merge", "relabel")
    assert segment_status_report(plan, done, phases).splitlines() == [
        "cc job: file:///in -> file:///out, 8 tasks",
        "fragments  8/8",
        "edges      5/8",
        "merge      not run",
        "relabel    0/8",
    ]
    assert unfinished_phases(done, phases) == ["edges", "merge", "relabel"]
    assert unfinished_phases(done, ("fragments",)) == []
    done.update(edges=8, relabel=8, merge=dict(fragments=12, edges=30, objects=3))
    assert segment_status_report(plan, done, ("merge",)).endswith(
        "merge      done: 12 fragments, 30 edges, 3 objects"
    )
    assert unfinished_phases(done, phases) == []
