"""The training loop: a chunkflow PyTorch model file learns targets from samples.

The model file is the one `inference --framework pytorch` runs (`InstantiatedModel`, optional
`pre_process`/`post_process`), and the loss is computed on what inference would output:
`post_process(model(pre_process(image)))`, compared with the targets of
`chunkflow.training.data` under their loss weights.

Model outputs: a tensor (one target, or several whose channels are concatenated in the order
of the targets), a tuple or list (one tensor per target, in order) or a dict (keyed by the
targets' output names). A 2D model (`spatial_dims` 2) gets (batch, channel, y, x) and returns
(batch, channel, y, x). Each target's loss is the weighted mean of a per-voxel loss (`bce`,
`mse`, `l1`; the balanced ones weigh positives and negatives half each) and the losses add up.
The loss `model` calls the model file's `loss` instead, as gunpowder's Train does:
`loss_inputs` maps its positional (int) or keyword (str) arguments to batch entries:
"prediction", "target", "weight" (balanced for binary targets, else the mask), "mask",
"image", "label", each optionally ":OUTPUT" for a target other than the first; without
`loss_inputs` it is called as loss(prediction, target).

Files in the checkpoint folder:

- `model_{iteration:08d}.pt`: {"state_dict", "optimizer", "iteration", "loss"} every
  `checkpoint_interval` iterations and at the end; the newest one is resumed from.
- `model.pt`: {"state_dict", "iteration"} of the last iteration, the small file to hand to
  `inference --convnet-weight-path`.
- `snapshots/batch_{iteration:08d}.h5`: image, label and per output target/NAME,
  prediction/NAME and weight/NAME of the first example of a batch, every `snapshot_interval`
  iterations. Every dataset carries `offset` (world units, z y x, in the sample's coordinates)
  and `resolution` (the voxel size) attributes, as gunpowder's Snapshot writes them, so the
  image and the smaller outputs of a valid network overlay in a viewer.
- `tensorboard/`: scalars loss (and loss/NAME per target), learning_rate and batches_per_second
  per iteration (torch.utils.tensorboard), unless `tensorboard` is off.

All are written under a temporary name and renamed, and read back with `weights_only=True`.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import time
from dataclasses import dataclass

import numpy as np

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.io.files import atomic_output
from chunkflow.progress import progress
from chunkflow.training.data import STAGES, ExampleMaker, PipelineSpec, make_loader

logger = logging.getLogger(__name__)

__all__ = ["TrainOptions", "train", "newest_checkpoint"]

CHECKPOINT = re.compile(r"model_(\d{8})\.pt$")
LOSS_INPUT_NAMES = ("prediction", "target", "weight", "mask", "image", "label")
OPTIMIZERS = ("adam", "sgd")


@dataclass
class TrainOptions:
    model_path: str
    checkpoint_dir: str
    iterations: int = 1000
    batch_size: int = 1
    num_workers: int = 2
    learning_rate: float = 1e-3
    lr_decay: str = "cosine"  # or "none"
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    weight_path: str | None = None  # initial weights (fine-tuning)
    checkpoint_interval: int = 500
    snapshot_interval: int = 0  # 0: none
    profile_interval: int = 100  # 0: none
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    tensorboard: bool = True
    tensorboard_dir: str | None = None  # default: CHECKPOINT_DIR/tensorboard


def newest_checkpoint(folder: str) -> tuple[str, int] | None:
    """(path, iteration) of the newest `model_{iteration}.pt` in `folder`, if any."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(folder), "model_*.pt")):
        match = CHECKPOINT.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        return None
    iteration, path = max(found)
    return path, iteration


def train(
    samples: list[dict], spec: PipelineSpec, options: TrainOptions, names: list | None = None
) -> str:
    """Train until `options.iterations`; return the path of the final `model.pt`.

    `names` describe the samples in errors (default "sample K").
    """
    import torch

    from chunkflow.inference.backends import PytorchBackend, choose_device

    _check_options(options)
    _check_writable(options.checkpoint_dir)
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)  # the model file builds its network when it is loaded
    device = choose_device(options.device)
    backend = PytorchBackend(options.model_path, options.weight_path, device)
    channels = samples[0]["image"].num_channels if samples else 1
    _check_model_output(backend, spec, options.model_path, device, channels)
    model_loss = _model_loss(options.model_path, spec)
    run = _Run(backend, _optimizer(backend.model, options), model_loss, spec, options, device)

    start = _resume(run)
    final = os.path.join(options.checkpoint_dir, "model.pt")
    if start >= options.iterations:
        logger.info("train: %s is already at iteration %d", options.checkpoint_dir, start)
        _save_model(backend.model, start, final)
        return final
    _log_start(run, samples, start)
    loader = make_loader(
        samples,
        spec,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        seed=options.seed,
        start=start,
        stop=options.iterations,
        names=names,
    )
    ExampleMaker(samples, spec, options.seed, names)[start * options.batch_size]  # fail here
    _log_short_context(spec, samples[0]["image"].voxel_size if samples else (1, 1, 1))
    iteration, loss_value = _loop(run, loader, start)
    _save_model(backend.model, iteration, final)
    logger.info("train: iteration %d, loss %.4f, model %s", iteration, loss_value, final)
    return final


@dataclass
class _Run:
    """What every iteration of a training run uses."""

    backend: object  # chunkflow.inference.backends.PytorchBackend
    optimizer: object
    model_loss: object  # the model file's loss (see _model_loss), or None
    spec: PipelineSpec
    options: TrainOptions
    device: object


def _resume(run: _Run) -> int:
    """Load the newest checkpoint of the run's folder, if any; the iteration it reached."""
    resumed = newest_checkpoint(run.options.checkpoint_dir)
    if resumed is None:
        return 0
    path, start = resumed
    state = _load(path)
    run.backend.model.load_state_dict(state["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    logger.info("train: resumed from %s (iteration %d)", path, start)
    return start


def _log_start(run: _Run, samples: list[dict], start: int) -> None:
    from chunkflow.inference.backends import describe_device

    options = run.options
    logger.info(
        "train: %d samples, iterations %d..%d, batch %d, %d workers, %s, targets %s",
        len(samples),
        start + 1,
        options.iterations,
        options.batch_size,
        options.num_workers,
        describe_device(run.device),
        ", ".join(f"{t.kind} -> {t.output} ({t.loss})" for t in run.spec.targets),
    )


def _log_short_context(spec: PipelineSpec, voxel_size) -> None:
    """Say which targets look further around an output voxel than the input patch reaches."""
    for target in spec.targets:
        needed = target.context(voxel_size)
        if any(c < n for c, n in zip(spec.context, needed)):
            logger.info(
                "train: the %s target looks %s voxels around an output voxel, the input patch "
                "has %s around the output: near the output border it sees the patch's edge",
                target.kind,
                tuple(needed),
                tuple(spec.context),
            )


def _loop(run: _Run, loader, start: int) -> tuple[int, float]:
    """Iterations start + 1 .. options.iterations; (the last iteration, its loss)."""
    options = run.options
    writer = _tensorboard(options)
    profile = _Profile()
    run.backend.model.train()
    iteration, loss_value = start, float("nan")
    bar = progress(desc="train", total=options.iterations, unit="it")
    bar.update(start)
    wait_start = last_step = time.perf_counter()
    try:
        for iteration, batch in enumerate(_worker_errors(loader), start=start + 1):
            profile.add("waiting for data", time.perf_counter() - wait_start)
            for stage, seconds in zip(STAGES, batch["seconds"].sum(0).tolist()):
                profile.add(f"{stage} (workers)", seconds)
            learning_rate = _learning_rate(options, iteration)
            predictions, loss_value, losses = _step(run, batch, iteration, learning_rate, profile)

            tic = time.perf_counter()
            if iteration % options.checkpoint_interval == 0 or iteration == options.iterations:
                _save_checkpoint(
                    run.backend.model, run.optimizer, iteration, loss_value, options.checkpoint_dir
                )
            if options.snapshot_interval and iteration % options.snapshot_interval == 0:
                _save_snapshot(batch, predictions, run.spec, iteration, options.checkpoint_dir)
            now = time.perf_counter()
            if writer is not None:
                rate = 1.0 / max(now - last_step, 1e-9)
                _write_scalars(writer, iteration, loss_value, losses, learning_rate, rate)
            last_step = now
            profile.add("checkpoints + snapshots", time.perf_counter() - tic)
            bar.update()
            if options.profile_interval and iteration % options.profile_interval == 0:
                logger.info("train: iteration %d\n%s", iteration, profile.table())
                profile = _Profile()
            wait_start = time.perf_counter()
    finally:
        if writer is not None:
            writer.close()
    bar.close()
    return iteration, loss_value


def _step(run: _Run, batch: dict, iteration: int, learning_rate: float, profile) -> tuple:
    """One optimizer step on `batch`: (predictions, the loss, {output: loss} per target)."""
    tic = time.perf_counter()
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate
    tensors = {k: v.to(run.device) for k, v in batch.items() if k not in ("seconds", "offset")}
    predictions = forward(run.backend, tensors["image"], run.spec)
    if run.model_loss is None:
        losses = {
            t.output: _loss(
                t.loss,
                predictions[t.output],
                tensors[f"target:{t.output}"],
                tensors[f"weight:{t.output}"],
            )
            for t in run.spec.targets
        }
        loss = sum(losses.values())
    else:
        loss, losses = run.model_loss(predictions, tensors), {}
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    profile.add("forward + backward", time.perf_counter() - tic)
    tic = time.perf_counter()
    run.optimizer.step()
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise ParameterError(
            f"the loss became {loss_value} at iteration {iteration}; lower `learning_rate`"
        )
    profile.add("optimizer step", time.perf_counter() - tic)
    profile.loss(loss_value)
    return predictions, loss_value, losses


def _write_scalars(writer, iteration, loss_value, losses, learning_rate, batches_per_second):
    """TensorBoard: the loss (and one per target when there are several), the learning rate
    and the batch rate of this iteration."""
    writer.add_scalar("loss", loss_value, iteration)
    if len(losses) > 1:
        for name, value in losses.items():
            writer.add_scalar(f"loss/{name}", float(value.detach()), iteration)
    writer.add_scalar("learning_rate", learning_rate, iteration)
    writer.add_scalar("batches_per_second", batches_per_second, iteration)


def forward(backend, image, spec: PipelineSpec) -> dict:
    """{output name: prediction (batch, channel, z, y, x)} of the model on an image batch
    (batch, channel, z, y, x): post_process(model(pre_process(x))), split by target."""
    import torch

    x = image[:, :, 0] if spec.spatial_dims == 2 else image
    x = backend.pre_process(x) if backend.pre_process else x
    if backend.channels_last and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = backend.model(x)
    y = backend.post_process(y) if backend.post_process else y
    targets = spec.targets
    if isinstance(y, dict):
        missing = [t.output for t in targets if t.output not in y]
        if missing:
            raise ParameterError(
                f"the model returns outputs {', '.join(map(str, y))} but not "
                f"{', '.join(missing)} (one per `targets` KIND:OUTPUT)"
            )
        outputs = {t.output: y[t.output] for t in targets}
    elif isinstance(y, (list, tuple)):
        if len(y) != len(targets):
            raise ChunkflowError(
                f"the model returns {len(y)} outputs for {len(targets)} targets "
                f"({', '.join(t.output for t in targets)})"
            )
        outputs = {t.output: out for t, out in zip(targets, y)}
    else:
        sizes = [t.channels(spec.spatial_dims) for t in targets]
        if not isinstance(y, torch.Tensor) or y.dim() < 2 or y.shape[1] != sum(sizes):
            what = (
                f"{y.shape[1]} channels (shape {tuple(y.shape)})"
                if isinstance(y, torch.Tensor) and y.dim() >= 2
                else f"a {type(y).__name__}"
            )
            raise ChunkflowError(
                f"the model outputs {what} but the targets have {sum(sizes)} channels "
                f"({' + '.join(f'{n} {t.kind}' for n, t in zip(sizes, targets))})"
            )
        outputs = dict(zip((t.output for t in targets), torch.split(y, sizes, dim=1)))
    if spec.spatial_dims == 2:
        outputs = {k: v.unsqueeze(2) if v.dim() == 4 else v for k, v in outputs.items()}
    return outputs


def _worker_errors(loader):
    """Batches of `loader`; a ChunkflowError in a worker comes back as its own one line, not
    as the worker's traceback that the DataLoader wraps it in."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except ChunkflowError as err:
            text = str(err).strip()
            marker = "ChunkflowError: "
            raise ChunkflowError(
                text[text.rfind(marker) + len(marker) :] if marker in text else text
            ) from None
        yield batch


# checks ---------------------------------------------------------------------------------------
def _check_options(options: TrainOptions) -> None:
    if options.optimizer not in OPTIMIZERS:
        raise ParameterError(
            f"`optimizer` {options.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}"
        )
    if not os.path.isfile(options.model_path):
        raise ChunkflowError(f"model file {options.model_path}: no such file")


def _tensorboard(options: TrainOptions):
    """A SummaryWriter under the checkpoint folder, or None when switched off."""
    if not options.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # the tensorboard package is missing
        raise ParameterError(
            f"TensorBoard logging needs the tensorboard package ({err}); install it or switch "
            "`tensorboard` off"
        ) from None
    folder = options.tensorboard_dir or os.path.join(options.checkpoint_dir, "tensorboard")
    return SummaryWriter(log_dir=folder)


def _check_writable(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        with atomic_output(os.path.join(folder, ".write-test")) as tmp, open(tmp, "w") as f:
            f.write("ok")
        os.remove(os.path.join(folder, ".write-test"))
    except (OSError, ChunkflowError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ChunkflowError(f"checkpoint folder {folder}: cannot write there ({reason})") from None


def _check_model_output(backend, spec: PipelineSpec, model_path: str, device, channels=1):
    """Run one zero batch: each target's output must have its channels and the size of the
    output patch."""
    import torch

    backend.model.eval()
    with torch.no_grad():
        x = torch.zeros((1, channels, *spec.input_size), device=device)
        try:
            outputs = forward(backend, x, spec)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ChunkflowError(
                f"model file {model_path} fails on a {tuple(spec.input_size)} input patch with "
                f"{channels} channel(s) ({first})"
            ) from None
        except ChunkflowError as err:
            raise type(err)(f"model file {model_path}: {err}") from None
    layout = "(batch, channel, y, x)" if spec.spatial_dims == 2 else "(batch, channel, z, y, x)"
    for target in spec.targets:
        y = outputs[target.output]
        what = f"model file {model_path}, output {target.output!r}"
        if not isinstance(y, torch.Tensor) or y.dim() != 5:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ChunkflowError(f"{what} has shape {shape}, not {layout}")
        expected = target.channels(spec.spatial_dims)
        if y.shape[1] != expected:
            raise ParameterError(
                f"{what} has {y.shape[1]} channels but the {target.kind} target has {expected}"
                + (" (one per `neighborhood` offset)" if target.kind == "affinities" else "")
            )
        if tuple(y.shape[2:]) != tuple(spec.output_size):
            size = " ".join(map(str, y.shape[2:]))
            raise ParameterError(
                f"{what} turns a {tuple(spec.input_size)} input patch into "
                f"{tuple(y.shape[2:])}, not the output patch {tuple(spec.output_size)} "
                f"(set `output_size` {size})"
            )


def _model_loss(model_path: str, spec: PipelineSpec):
    """With the loss "model": a function (predictions, batch tensors) -> loss calling the
    model file's `loss` with its `loss_inputs`; else None."""
    uses = {t.loss == "model" for t in spec.targets}
    if uses == {False}:
        return None
    if uses != {True}:
        raise ChunkflowError("the loss 'model' replaces all named losses: give it alone")
    from chunkflow.plugins import load_source

    source = load_source(model_path, "model file")
    function = getattr(source, "loss", None)
    if not callable(function):
        raise ParameterError(f"model file {model_path} defines no loss function for `loss` model")
    first = spec.targets[0].output
    loss_inputs = getattr(source, "loss_inputs", None)
    if loss_inputs is None:
        if len(spec.targets) > 1:
            raise ChunkflowError(
                f"model file {model_path}: several targets need loss_inputs to say which "
                "predictions and targets the loss gets"
            )
        loss_inputs = {0: "prediction", 1: "target"}
    if not isinstance(loss_inputs, dict):
        raise ChunkflowError(f"model file {model_path}: loss_inputs must be a dict")
    outputs = {t.output for t in spec.targets}
    wanted = {}
    for key, value in loss_inputs.items():
        what, _, output = str(value).partition(":")
        output = output or first
        if what not in LOSS_INPUT_NAMES or (
            what not in ("image", "label") and output not in outputs
        ):
            raise ChunkflowError(
                f"model file {model_path}: loss_inputs[{key!r}] = {value!r}; expected one of "
                f"{', '.join(LOSS_INPUT_NAMES)}, optionally :OUTPUT among {', '.join(outputs)}"
            )
        if not isinstance(key, (int, str)):
            raise ChunkflowError(f"model file {model_path}: loss_inputs key {key!r} is no int/str")
        wanted[key] = (what, output)
    positions = sorted(k for k in wanted if isinstance(k, int))
    if positions != list(range(len(positions))):
        raise ChunkflowError(f"model file {model_path}: loss_inputs positions must be 0..n-1")

    def compute(predictions: dict, tensors: dict):
        def value(what, output):
            if what == "prediction":
                return predictions[output]
            if what in ("image", "label"):
                return tensors[what]
            return tensors[f"{what}:{output}"]

        args = [value(*wanted[k]) for k in positions]
        kwargs = {k: value(*v) for k, v in wanted.items() if isinstance(k, str)}
        return function(*args, **kwargs)

    return compute


# pieces of the step ---------------------------------------------------------------------------
def _optimizer(model, options: TrainOptions):
    import torch

    if options.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=options.learning_rate,
        momentum=options.momentum,
        weight_decay=options.weight_decay,
    )


def _learning_rate(options: TrainOptions, iteration: int) -> float:
    """Constant, or cosine decay from the learning rate to 0 over the run (by iteration, so a
    resumed run continues the same schedule)."""
    if options.lr_decay == "cosine":
        progress = (iteration - 1) / max(options.iterations, 1)
        return options.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    return options.learning_rate


def _loss(kind: str, prediction, target, weight):
    """Weighted mean of the per-voxel loss (weights sum to the normaliser); "balanced-" losses
    differ from the plain ones only in the weights the data pipeline made."""
    import torch.nn.functional as F

    base = kind.removeprefix("balanced-")
    if base == "bce":
        eps = 1e-6
        per_voxel = F.binary_cross_entropy(prediction.clamp(eps, 1 - eps), target, reduction="none")
    elif base == "mse":
        per_voxel = (prediction - target) ** 2
    elif base == "l1":
        per_voxel = (prediction - target).abs()
    else:
        raise ChunkflowError(f"unknown loss {kind!r}")
    return (per_voxel * weight).sum() / weight.sum().clamp(min=1e-6)


# files ----------------------------------------------------------------------------------------
def _load(path: str) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: name it
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ChunkflowError(f"checkpoint {path} cannot be read ({first})") from None
    if not isinstance(state, dict) or not {"state_dict", "optimizer"} <= set(state):
        raise ChunkflowError(f"checkpoint {path} is not a chunkflow training checkpoint")
    return state


def _save(obj, path: str) -> None:
    import torch

    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _save_checkpoint(model, optimizer, iteration: int, loss: float, folder: str) -> None:
    path = os.path.join(folder, f"model_{iteration:08d}.pt")
    state = {
        "state_dict": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "iteration": iteration,
        "loss": loss,
    }
    _save(state, path)
    logger.debug("train: checkpoint %s", path)


def _save_model(model, iteration: int, path: str) -> None:
    _save({"state_dict": _cpu_state(model), "iteration": iteration}, path)


def _save_snapshot(batch: dict, predictions: dict, spec, iteration: int, folder: str) -> None:
    """The first example of a batch; every dataset with gunpowder's `offset` (world units) and
    `resolution` attributes, so image and outputs overlay."""
    import h5py

    path = os.path.join(folder, "snapshots", f"batch_{iteration:08d}.h5")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    voxel_size = batch["voxel_size"][0].numpy().astype(np.float64)
    offset = batch["offset"][0].numpy().astype(np.float64) * voxel_size
    inner = offset + np.asarray(spec.context, np.float64) * voxel_size
    arrays = {
        "image": (batch["image"][0].numpy(), offset),
        "label": (batch["label"][0].numpy(), inner),
    }
    for target in spec.targets:
        name = target.output
        arrays[f"target/{name}"] = (batch[f"target:{name}"][0].numpy(), inner)
        arrays[f"weight/{name}"] = (batch[f"weight:{name}"][0].numpy(), inner)
        prediction = predictions[name][0].detach().float().cpu().numpy()
        arrays[f"prediction/{name}"] = (prediction, inner)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for name, (array, start) in arrays.items():
            if name == "image" and array.shape[0] == 1:
                array = array[0]
            dataset = f.create_dataset(name, data=array, compression="gzip")
            dataset.attrs["offset"] = start
            dataset.attrs["resolution"] = voxel_size
        f.attrs["iteration"] = iteration
    logger.debug("train: snapshot %s", path)


class _Profile:
    """Seconds per stage over a number of iterations, as a table."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.losses: list[float] = []
        self.start = time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def loss(self, value: float) -> None:
        self.losses.append(value)

    def table(self) -> str:
        from chunkflow.logs import format_table

        n = max(len(self.losses), 1)
        wall = time.perf_counter() - self.start
        rows = [("stage", "ms per batch", "% of wall")]
        for stage, seconds in self.seconds.items():
            rows.append((stage, f"{1000 * seconds / n:.1f}", f"{100 * seconds / wall:.1f}"))
        rows.append(("(wall time per batch)", f"{1000 * wall / n:.1f}", "100.0"))
        lines = format_table(rows, rule_before_last=True)
        lines.append(
            f"{n} batches, {n / wall:.2f} batches/s, mean loss {np.mean(self.losses):.4f}; "
            "worker stages run in parallel with the training step"
        )
        return "\n".join(lines)
