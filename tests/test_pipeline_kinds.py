"""chunkflow.operators.op for every kind: sources and stream operators made of Python generators,
under the engine's rules for declared effects, dry runs and skipped tasks."""

import json

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.h5 import read_h5, write_h5
from chunkflow.operators import op
from chunkflow.pipeline import Operator, OperatorError, Pipeline, RunConfig
from chunkflow.queues.local import LocalQueue
from chunkflow.queues.worker import WorkerOptions
from chunkflow.segmentation.labels import connected_components, threshold
from chunkflow.task import Task
from chunkflow.task_creation.leasing import lease_tasks


def tiles(count: int, depth: int = 2):
    """A task source: tiles of two blobs each, one below the other."""
    for k in range(count):
        image = np.zeros((depth, 8, 8), np.float32)
        image[:, 1:3, 1:3] = 0.9
        image[:, 5:7, 4:7] = 0.8
        yield Chunk(image, (depth * k, 0, 0), (40, 4, 4))


def numbered_apart(segs):
    """Over the stream: each tile's objects numbered after those of the tiles before it."""
    last = 0
    for seg in segs:
        yield seg + (seg > 0) * last
        last += int(seg.array.max())


def test_a_source_feeds_a_map_and_a_stream(tmp_path):
    events = []

    def logged_tiles(count):
        for chunk in tiles(count):
            events.append(f"tile {chunk.voxel_offset[0]}")
            yield chunk

    def seen(segs):
        for seg in segs:
            events.append(f"stream {seg.voxel_offset[0]}")
            yield seg

    pipeline = Pipeline(
        [
            op(logged_tiles, kind="source", outputs="image", count=3),
            op(threshold, "image", "mask", value=0.5),
            op(connected_components, "mask", "seg"),
            op(numbered_apart, "seg", kind="stream"),
            op(seen, "seg", kind="stream"),
        ]
    )
    tasks = list(pipeline.stream())
    assert [str(t.bbox) for t in tasks] == ["0-2_0-8_0-8", "2-4_0-8_0-8", "4-6_0-8_0-8"]
    for k, task in enumerate(tasks):
        seg = task["seg"]
        assert seg.voxel_offset == (2 * k, 0, 0) and seg.voxel_size == (40, 4, 4)
        assert sorted(np.unique(seg.array)) == [0, 2 * k + 1, 2 * k + 2]
        # the same labels as the library functions give, numbered on
        direct = connected_components(threshold(task["image"], 0.5))
        np.testing.assert_array_equal(seg.array, direct.array + (direct.array > 0) * 2 * k)
        assert task.bases["image"] == task.bbox and "logged-tiles" in task.log["timer"]
    # one task at a time through the whole chain, streams included
    assert events == ["tile 0", "stream 0", "tile 2", "stream 2", "tile 4", "stream 4"]


def test_dry_run_performs_none_of_the_declared_side_effects(tmp_path):
    leased, finalized, out = [], [], tmp_path / "out"
    out.mkdir()

    def lease(count, dry_run):  # a source that must honour the dry run itself
        for chunk in tiles(count):
            if not dry_run:
                leased.append(chunk.bbox)
            yield chunk

    def save(seg, folder):
        write_h5(seg, str(folder / f"{seg.bbox}.h5"))

    def summary(segs, path):  # a sink: takes every chunk, writes once at the end
        objects = sum(int(seg.array.max() > 0) for seg in segs)
        path.write_text(json.dumps({"tiles with objects": objects}))

    def delete(seg):
        finalized.append(seg.bbox)

    pipeline = Pipeline(
        [
            op(lease, kind="source", outputs="image", effects=("queue",), dry_run="self", count=2),
            op(threshold, "image", "seg", value=0.5),
            op(save, "seg", (), effects=("writes",), folder=out),
            op(summary, "seg", (), kind="stream", effects=("writes",), path=out / "sum.json"),
            op(delete, "seg", (), kind="finalizer", effects=("queue",)),
        ]
    )
    tasks = list(pipeline.stream(config=RunConfig(dry_run=True)))
    # the source ran (it honours the dry run), the map without effects too; nothing else did
    assert len(tasks) == 2 and all(task["seg"].array.any() for task in tasks)
    assert leased == [] and finalized == [] and list(out.iterdir()) == []

    tasks = list(pipeline.stream())
    assert len(leased) == 2 and finalized == leased == [task.bbox for task in tasks]
    assert sorted(p.name for p in out.iterdir()) == ["0-2_0-8_0-8.h5", "2-4_0-8_0-8.h5", "sum.json"]
    assert json.loads((out / "sum.json").read_text()) == {"tiles with objects": 2}
    np.testing.assert_array_equal(read_h5(str(out / "2-4_0-8_0-8.h5")).array, tasks[1]["seg"])


def test_a_library_task_source_leases_from_a_queue_only_outside_a_dry_run(tmp_path):
    queue = LocalQueue(str(tmp_path / "q"), create=True)
    queue.send(["0-2_0-8_0-8", "2-4_0-8_0-8"])
    options = WorkerOptions(wait_seconds=0, retry_times=0, heartbeat=False, lease_wait=0)
    fetch = op(
        lease_tasks,
        kind="source",
        effects=("queue",),
        dry_run="self",
        queue_name=str(tmp_path / "q"),
        options=options,
    )
    fill = op(lambda bbox: Chunk(np.ones(bbox.shape)), (), "image", name="fill", task_bbox="bbox")
    done = Operator(
        "delete", lambda task: task.lease.delete(), kind="finalizer", effects=("queue",)
    )

    tasks = list(Pipeline([fetch, fill, done]).stream(config=RunConfig(dry_run=True)))
    assert [str(t.bbox) for t in tasks] == ["0-2_0-8_0-8", "2-4_0-8_0-8"]
    assert (queue.counts().pending, queue.counts().leased) == (2, 0)  # read, not leased

    skipping = op(lease_tasks, kind="source", effects=("queue",), queue_name=str(tmp_path / "q"))
    [untouched] = Pipeline([skipping]).stream(config=RunConfig(dry_run=True))
    assert untouched.bbox is None and queue.count() == 2  # not run at all

    config = RunConfig()
    tasks = list(Pipeline([fetch, fill, done]).stream(config=config))
    assert len(tasks) == 2 and all(t["image"].shape == (2, 8, 8) for t in tasks)
    assert queue.count() == 0


def test_a_function_may_ask_for_the_task_bbox(tmp_path):
    volume = Chunk(np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8), (10, 0, 0), (40, 4, 4))
    write_h5(volume, str(tmp_path / "v.h5"))
    boxes = [BoundingBox((10, 0, 0), (12, 8, 8)), BoundingBox((12, 0, 4), (14, 8, 8))]

    def grid():  # bare boxes, as a queue gives them
        yield from boxes

    seen = []

    def sizes(pairs):
        for bbox, image in pairs:
            seen.append(bbox)
            yield Chunk(np.full((1, 1, 1), image.array.size))

    pipeline = Pipeline(
        [
            op(grid, kind="source"),
            op(read_h5, (), "image", task_bbox="bbox", path=str(tmp_path / "v.h5")),
            op(sizes, "image", "size", kind="stream", task_bbox="bbox"),
        ]
    )
    tasks = list(pipeline.stream())
    assert [task.bbox for task in tasks] == boxes == seen
    for task, box in zip(tasks, boxes):
        np.testing.assert_array_equal(task["image"].array, volume[box].array)
        assert task["size"].array.item() == box.voxel_count
    # a reader told the task's box and a box of its own would read one of them silently
    with pytest.raises(ChunkflowError, match="`task_bbox` 'bbox': read-h5 is given that keyword"):
        op(read_h5, (), "image", task_bbox="bbox", path="v.h5", bbox=boxes[0])


def test_a_stream_may_hold_items_and_lets_skipped_tasks_pass_in_place():
    def pairs(items):  # answers two at a time, as a batch across tasks would
        batch = []
        for item in items:
            batch.append(item)
            if len(batch) == 2:
                yield from (chunk * 10 for chunk in batch)
                batch = []
        yield from (chunk * 10 for chunk in batch)

    tasks = [Task(image=Chunk(np.full((1, 1, 1), k))) for k in range(5)]
    tasks[2].skip("empty")
    out = list(Pipeline([op(pairs, "image", "scaled", kind="stream")]).stream(tasks))
    assert out == tasks  # the same tasks, in the order they came
    assert [t["scaled"].array.item() if "scaled" in t else None for t in out] == [
        0,
        10,
        None,
        30,
        40,
    ]


def test_a_sink_lets_the_tasks_it_took_go_on():
    taken = []
    sink = op(lambda chunks: taken.extend(chunks), "image", (), kind="stream", name="collect")
    tasks = [Task(image=Chunk(np.zeros((1, 1, 1)))) for _ in range(3)]
    assert list(Pipeline([sink]).stream(tasks)) == tasks and len(taken) == 3


@pytest.mark.parametrize(
    "operator, match",
    [
        (op(lambda: Chunk(np.zeros((1, 1, 1))), kind="source", name="one"), "returned a Chunk"),
        (
            op(lambda: iter([Chunk(np.zeros((1, 1, 1)))]), (), (), kind="source", name="bare"),
            "a source without outputs yields tasks or bounding boxes",
        ),
        (
            op(lambda items: [next(iter(items))] * 2, kind="stream", name="twice"),
            "yielded result 2 for the 1 item",
        ),
        (
            op(lambda items: list(items)[:1], kind="stream", name="once"),
            "yielded 1 result.* for the 2 item",
        ),
    ],
    ids=["not-a-generator", "no-outputs", "too-many", "too-few"],
)
def test_results_that_do_not_fit_name_the_operator(operator, match):
    tasks = [Task(chunk=Chunk(np.zeros((1, 1, 1)))) for _ in range(2)]
    with pytest.raises(OperatorError, match=f"^{operator.name}: .*{match}"):
        list(Pipeline([operator]).stream(tasks))


def test_a_source_yields_boxes_and_tasks():
    def grid():
        yield BoundingBox((0, 0, 0), (1, 2, 2))
        yield Task(BoundingBox((1, 0, 0), (2, 2, 2)), note="given")

    tasks = list(Pipeline([op(grid, kind="source")]).stream())
    assert [str(t.bbox) for t in tasks] == ["0-1_0-2_0-2", "1-2_0-2_0-2"]
    assert dict(tasks[0]) == {} and tasks[1]["note"] == "given"


def test_declarations_are_checked_for_every_kind():
    with pytest.raises(ChunkflowError, match="kind 'sink' is not one of"):
        op(tiles, kind="sink")
    with pytest.raises(ChunkflowError, match="dry_run='self' without effects"):
        op(tiles, kind="source", dry_run="self")
    with pytest.raises(ChunkflowError, match="effects \\['prints'\\] are not among"):
        op(numbered_apart, kind="stream", effects=("prints",))
    source = op(tiles, kind="source", count=1)
    assert (source.kind, source.inputs, source.outputs) == ("source", (), ("chunk",))
    stream = op(numbered_apart, "seg", kind="stream")
    assert (stream.inputs, stream.outputs, stream.dry_run) == (("seg",), ("seg",), "skip")
