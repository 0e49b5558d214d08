"""The `train` sink: every task reaching it is a training sample; at the end of the stream it
trains a model file that `inference --framework pytorch` runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import click

from chunkflow.cli.augment import NOISE_MODES, elastic_kwargs, elastic_options
from chunkflow.cli.framework import AXES, NEIGHBORHOOD, operator, vec3_option
from chunkflow.errors import ChunkflowError, flag_names

logger = logging.getLogger(__name__)

# The library's parameters (PipelineSpec, TrainOptions) as train's flags, for its errors.
TRAIN_FLAGS = dict(
    targets="--target",
    neighborhood="--neighborhood",
    loss="--loss",
    output_size="--output-patch-size",
    min_masked="--min-masked",
    learning_rate="--learning-rate",
    optimizer="--optimizer",
    tensorboard="--tensorboard",
    device="--device",
    model_path="--convnet-model",
    weight_path="--convnet-weight-path",
)


def _range_option(*decls, default, help):
    return click.option(*decls, type=float, nargs=2, default=default, show_default=True, help=help)


def _target_option(fn):
    return click.option(
        "-t",
        "--target",
        "targets",
        multiple=True,
        default=("affinities",),
        show_default=True,
        metavar="KIND[:OUTPUT]",
        help="What the model learns (repeat for several): affinities, boundary, foreground, "
        "distance or lsd; OUTPUT names the model output it feeds [the kind].",
    )(fn)


@operator(
    "train",
    family="training",
    kind="stream",
    effects=("checkpoints", "writes", "logs"),  # logs: TensorBoard event files
)
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
@_target_option
@click.option(
    "--loss",
    "losses",
    multiple=True,
    metavar="NAME",
    help="Loss: bce, balanced-bce (weighted-bce), mse, balanced-mse (weighted-mse), l1, or "
    "model (the model file's loss with its loss_inputs). Once for all targets or once per "
    "--target [balanced-bce for affinities/boundary/foreground, mse for distance/lsd].",
)
@click.option(
    "--spatial-dims",
    type=click.Choice(["2", "3"]),
    default="3",
    show_default=True,
    help="2: a 2D model on one-section patches (z = 1), fed (batch, channel, y, x).",
)
@click.option(
    "--sample-weights",
    default="size",
    show_default=True,
    help="Probability of drawing each sample: size (voxel count), uniform, or one weight per "
    "task reaching train, comma separated.",
)
@click.option(
    "--tensorboard/--no-tensorboard",
    default=True,
    show_default=True,
    help="Write loss, learning rate and batch rate for TensorBoard.",
)
@click.option(
    "--tensorboard-dir", default=None, help="TensorBoard folder [CHECKPOINT_DIR/tensorboard]."
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
    help="Affinity offsets z,y,x separated by ';' (long-range allowed), in the sign of "
    "--neighborhood-sign.",
)
@click.option(
    "--neighborhood-sign",
    type=click.Choice(["chunkflow", "gunpowder"]),
    default="chunkflow",
    show_default=True,
    help="chunkflow: channel c links p and p - offset c (waterz); gunpowder: p and p + offset "
    "c, so gunpowder's -1,0,0;0,-1,0;0,0,-1 is chunkflow's default.",
)
@click.option(
    "--boundary-width",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="boundary target: voxels within this distance of a contact between labels.",
)
@click.option(
    "--distance-scale",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="distance target: tanh(distance / scale), world units (0: the plain distance).",
)
@click.option(
    "--lsd-sigma",
    default="80",
    show_default=True,
    metavar="S|Z,Y,X",
    help="lsd target: Gaussian sigma, world units.",
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
    "--mirror-axes",
    type=AXES,
    default="0,1,2",
    show_default=True,
    help="Axes (0=z, 1=y, 2=x) each flipped with probability 1/2 ('' for none).",
)
@click.option(
    "--transpose-only",
    type=AXES,
    default="1,2",
    show_default=True,
    help="Axes that random transposition permutes ('' for none).",
)
@click.option("--elastic-augment/--no-elastic-augment", default=True, show_default=True)
@elastic_options
@click.option(
    "--elastic-redraws",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Elastic transforms drawn per example until one fits in the sample.",
)
@_range_option("--intensity-scale", default=(0.9, 1.1), help="Contrast factor range.")
@_range_option("--intensity-shift", default=(-0.1, 0.1), help="Brightness shift range.")
@click.option(
    "--intensity-z-section-wise", is_flag=True, help="Draw scale and shift per z section."
)
@click.option(
    "--noise-mode",
    type=click.Choice(NOISE_MODES),
    default="gaussian",
    show_default=True,
)
@click.option(
    "--noise-var",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Noise variance (gaussian, speckle; 0: no noise of these modes).",
)
@click.option(
    "--noise-amount",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Fraction of voxels replaced (s&p).",
)
@click.option(
    "--clip/--no-clip",
    default=True,
    show_default=True,
    help="Clip the intensity- and noise-augmented image to [0, 1].",
)
@click.option("--prob-missing", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--prob-low-contrast", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option(
    "--contrast-scale",
    type=click.FloatRange(min=0),
    default=0.1,
    show_default=True,
    help="Low-contrast sections: mean + (x - mean) * this.",
)
def train(stream, **options):
    """Train a model on all tasks reaching this operator (a sink at the end of a chain).

    Each task contributes its image (any number of channels) and label chunks (and mask) as
    one sample. When the stream ends: random locations across samples (--sample-weights),
    mirror/transpose, elastic (redrawn when it needs more than a sample holds), intensity,
    noise and defect augmentation, the targets (--target) with their loss weights, batches
    prepared by worker processes, and the PyTorch training step; checkpoints every
    --checkpoint-interval iterations (a rerun resumes from the newest), TensorBoard scalars,
    optional h5 snapshots (with offset/resolution attributes) and a profile table. The
    result, CHECKPOINT_DIR/model.pt, is what inference --convnet-weight-path reads.
    """
    from chunkflow.task import Task
    from chunkflow.training.data import check_samples
    from chunkflow.training.trainer import train as run

    names = _chunk_names(options)
    with flag_names(**TRAIN_FLAGS):
        spec = _spec(options)
        train_options = _train_options(options)
    samples, describe = _samples(stream, names)
    with flag_names(**TRAIN_FLAGS):
        check_samples(samples, spec, describe)
        start = time.perf_counter()
        model = run(samples, spec, train_options, [describe(k) for k in range(len(samples))])
    result = Task(model_path=model)
    result.log["timer"]["train"] = time.perf_counter() - start
    yield result


def _chunk_names(options: dict) -> dict:
    """The chunk each part of a sample is: image, labels and mask (None: no mask)."""
    from chunkflow.training.data import IMAGE, LABEL, MASK

    return {
        IMAGE: options.pop("image_chunk_name"),
        LABEL: options.pop("label_chunk_name"),
        MASK: options.pop("mask_chunk_name"),
    }


def _samples(stream, names: dict) -> tuple[list, Callable]:
    """The samples of the tasks reaching train (skipped ones left out), and what names sample
    k in errors and logs: its chunks and its task."""
    from chunkflow.training.data import IMAGE, LABEL

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

    return samples, describe


def _numbers(text: str, option: str, count=None) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if not values or (count is not None and len(values) not in count):
        raise ChunkflowError(f"{option} {text!r}: expected numbers separated by commas")
    return values


def _targets(options: dict) -> tuple:
    """The Target list from --target, --loss and the targets' parameters."""
    from chunkflow.training.targets import Target, neighborhood_from

    neighborhood = neighborhood_from(options.pop("neighborhood"), options.pop("neighborhood_sign"))
    sigma = _numbers(options.pop("lsd_sigma"), "--lsd-sigma", (1, 3))
    params = dict(
        neighborhood=neighborhood,
        width=options.pop("boundary_width"),
        only_xy=options["grow_boundary_only_xy"],
        scale=options.pop("distance_scale"),
        sigma=sigma if len(sigma) == 3 else sigma * 3,
    )
    kinds = options.pop("targets")
    losses = options.pop("losses") or ("",) * len(kinds)
    if len(losses) == 1:
        losses = losses * len(kinds)
    if len(losses) != len(kinds):
        raise ChunkflowError(
            f"--loss given {len(losses)} times for {len(kinds)} targets: give it once for all "
            "or once per --target"
        )
    targets = []
    for text, loss in zip(kinds, losses):
        kind, _, output = text.partition(":")
        targets.append(Target(kind.strip(), output.strip(), loss, **params))
    return tuple(targets), neighborhood


def _spec(options: dict):
    from chunkflow.training.data import PipelineSpec

    targets, neighborhood = _targets(options)
    transpose_axes = options.pop("transpose_only")
    mirror_axes = options.pop("mirror_axes")
    elastic = elastic_kwargs(options)
    clip = options.pop("clip")
    intensity = dict(
        scale=options.pop("intensity_scale"),
        shift=options.pop("intensity_shift"),
        z_section_wise=options.pop("intensity_z_section_wise"),
        clip=clip,
    )
    noise_mode, noise_var = options.pop("noise_mode"), options.pop("noise_var")
    noise_amount = options.pop("noise_amount")
    noisy = noise_var > 0 if noise_mode in ("gaussian", "speckle") else noise_mode == "poisson"
    noisy = noisy or (noise_mode in ("s&p", "salt-and-pepper") and noise_amount > 0)
    missing, low_contrast = options.pop("prob_missing"), options.pop("prob_low_contrast")
    contrast_scale = options.pop("contrast_scale")
    weights = options.pop("sample_weights")
    if weights not in ("size", "uniform"):
        weights = _numbers(weights, "--sample-weights")
    return PipelineSpec(
        input_size=options.pop("input_patch_size"),
        output_size=options.pop("output_patch_size"),
        neighborhood=neighborhood,
        targets=targets,
        spatial_dims=int(options.pop("spatial_dims")),
        sample_weights=weights,
        max_redraws=options.pop("elastic_redraws"),
        mirror_axes=mirror_axes,
        grow_boundary=options.pop("grow_boundary"),
        grow_boundary_only_xy=options.pop("grow_boundary_only_xy"),
        simple=options.pop("simple_augment"),
        transpose_axes=transpose_axes,
        elastic=elastic if options.pop("elastic_augment") else None,
        intensity=intensity,
        noise=(
            dict(mode=noise_mode, var=noise_var, amount=noise_amount, clip=clip) if noisy else None
        ),
        defect=(
            dict(
                prob_missing=missing,
                prob_low_contrast=low_contrast,
                contrast_scale=contrast_scale,
            )
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
        checkpoint_interval=options.pop("checkpoint_interval"),
        snapshot_interval=options.pop("snapshot_interval"),
        profile_interval=options.pop("profile_interval"),
        seed=options.pop("seed"),
        device=options.pop("device"),
        threads=options.pop("num_threads"),
        tensorboard=options.pop("tensorboard"),
        tensorboard_dir=options.pop("tensorboard_dir"),
    )
