"""The `train` sink: every task reaching it is a training sample; at the end of the stream it
trains a model file that `inference --framework pytorch` runs."""

from __future__ import annotations

import logging
import time

import click

from chunkflow.cli.framework import AXES, NEIGHBORHOOD, operator, vec3_option
from chunkflow.cli.training import elastic_kwargs, elastic_options
from chunkflow.errors import ChunkflowError

logger = logging.getLogger("chunkflow")


def _range_option(*decls, default, help):
    return click.option(*decls, type=float, nargs=2, default=default, show_default=True, help=help)


@operator("train", family="training", kind="stream", effects=("checkpoints", "writes"))
@click.option("-i", "--image-chunk-name", default="image", show_default=True)
@click.option("-l", "--label-chunk-name", default="labels", show_default=True)
@click.option(
    "--mask-chunk-name", default=None, help="Chunk marking labelled voxels (nonzero) [none]."
)
@click.option(
    "-m",
    "--convnet-model",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Model file, as for inference --framework pytorch.",
)
@click.option("-w", "--convnet-weight-path", default=None, help="Initial weights [random].")
@click.option(
    "-c",
    "--checkpoint-dir",
    required=True,
    help="Folder for checkpoints, snapshots and the final model.pt; a run resumes from its "
    "newest checkpoint.",
)
@vec3_option(
    "-p",
    "--input-patch-size",
    "--patch-size",
    positive=True,
    default=(16, 48, 48),
    show_default=True,
    help="Network input patch (z y x).",
)
@vec3_option(
    "--output-patch-size",
    positive=True,
    default=None,
    help="Network output patch, centred in the input [the input patch size].",
)
@click.option("--iterations", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Processes preparing batches ahead of the training step (0: in the main process).",
)
@click.option("--learning-rate", "--lr", type=float, default=4e-3, show_default=True)
@click.option(
    "--lr-decay", type=click.Choice(["cosine", "none"]), default="cosine", show_default=True
)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option(
    "--loss",
    type=click.Choice(["bce", "mse"]),
    default="bce",
    show_default=True,
    help="Per-voxel loss on the model output, weighted by the balanced label weights.",
)
@click.option("--checkpoint-interval", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--snapshot-interval",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Write image/label/target/prediction/weight to snapshots/*.h5 every N iterations "
    "(0: never).",
)
@click.option(
    "--profile-interval",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Log a table of the time per stage every N iterations (0: never).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--num-threads", type=click.IntRange(min=1), default=None, help="CPU threads.")
@click.option(
    "--neighborhood",
    type=NEIGHBORHOOD,
    default="1,0,0;0,1,0;0,0,1",
    show_default=True,
    help="Affinity offsets z,y,x separated by ';'; channel c links p and p - offset c.",
)
@click.option("--grow-boundary", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--grow-boundary-only-xy", is_flag=True)
@click.option(
    "--min-masked",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Minimum fraction of masked voxels in a sampled output patch.",
)
@click.option("--simple-augment/--no-simple-augment", default=True, show_default=True)
@click.option(
    "--transpose-only",
    type=AXES,
    default="1,2",
    show_default=True,
    help="Axes that random transposition permutes ('' for none).",
)
@click.option("--elastic-augment/--no-elastic-augment", default=True, show_default=True)
@elastic_options
@_range_option("--intensity-scale", default=(0.9, 1.1), help="Contrast factor range.")
@_range_option("--intensity-shift", default=(-0.1, 0.1), help="Brightness shift range.")
@click.option("--noise-var", type=float, default=0.0, show_default=True, help="0: no noise.")
@click.option("--prob-missing", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--prob-low-contrast", type=click.FloatRange(0, 1), default=0.0, show_default=True)
def train(stream, **options):
    """Train a model on all tasks reaching this operator (a sink at the end of a chain).

    Each task contributes its image and label chunks (and mask) as one sample. When the stream
    ends: random locations across samples (weighted by size), mirror/transpose, elastic and
    intensity augmentation, affinity targets with balanced loss weights, batches prepared by
    worker processes, and the PyTorch training step; checkpoints every --checkpoint-interval
    iterations (a rerun resumes from the newest), optional h5 snapshots and a profile table.
    The result, CHECKPOINT_DIR/model.pt, is what inference --convnet-weight-path reads.
    """
    from chunkflow.task import Task
    from chunkflow.training.data import IMAGE, LABEL, MASK, check_samples
    from chunkflow.training.trainer import train as run

    names = {
        IMAGE: options.pop("image_chunk_name"),
        LABEL: options.pop("label_chunk_name"),
        MASK: options.pop("mask_chunk_name"),
    }
    spec = _spec(options)
    train_options = _train_options(options)
    samples, where = [], []
    for task in stream:
        if task.skipped:
            continue
        samples.append({key: task.chunk(name) for key, name in names.items() if name})
        where.append(task.bbox)
    if not samples:
        raise ChunkflowError("no task reached train: nothing to train on")

    def describe(k):
        return f"sample {k} ({names[IMAGE]}/{names[LABEL]} of task {where[k]})"

    check_samples(samples, spec, describe)
    start = time.perf_counter()
    model = run(samples, spec, train_options)
    result = Task()
    result["model_path"] = model
    result.log["timer"]["train"] = time.perf_counter() - start
    yield result


def _spec(options: dict):
    from chunkflow.training.data import PipelineSpec

    transpose_axes = options.pop("transpose_only")
    elastic = elastic_kwargs(options)
    intensity = dict(scale=options.pop("intensity_scale"), shift=options.pop("intensity_shift"))
    noise_var = options.pop("noise_var")
    missing, low_contrast = options.pop("prob_missing"), options.pop("prob_low_contrast")
    return PipelineSpec(
        input_size=options.pop("input_patch_size"),
        output_size=options.pop("output_patch_size"),
        neighborhood=options.pop("neighborhood"),
        grow_boundary=options.pop("grow_boundary"),
        grow_boundary_only_xy=options.pop("grow_boundary_only_xy"),
        simple=options.pop("simple_augment"),
        transpose_axes=transpose_axes,
        elastic=elastic if options.pop("elastic_augment") else None,
        intensity=intensity,
        noise=dict(var=noise_var) if noise_var > 0 else None,
        defect=(
            dict(prob_missing=missing, prob_low_contrast=low_contrast)
            if missing or low_contrast
            else None
        ),
        min_masked=options.pop("min_masked"),
    )


def _train_options(options: dict):
    from chunkflow.training.trainer import TrainOptions

    return TrainOptions(
        model_path=options.pop("convnet_model"),
        weight_path=options.pop("convnet_weight_path"),
        checkpoint_dir=options.pop("checkpoint_dir"),
        iterations=options.pop("iterations"),
        batch_size=options.pop("batch_size"),
        num_workers=options.pop("num_workers"),
        learning_rate=options.pop("learning_rate"),
        lr_decay=options.pop("lr_decay"),
        optimizer=options.pop("optimizer"),
        weight_decay=options.pop("weight_decay"),
        loss=options.pop("loss"),
        checkpoint_interval=options.pop("checkpoint_interval"),
        snapshot_interval=options.pop("snapshot_interval"),
        profile_interval=options.pop("profile_interval"),
        seed=options.pop("seed"),
        device=options.pop("device"),
        threads=options.pop("num_threads"),
    )
