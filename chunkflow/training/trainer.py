"""The training loop: a chunkflow PyTorch model file learns targets from samples.

The model file is the one `inference --framework pytorch` runs (`InstantiatedModel`, optional
`pre_process`/`post_process`), and the loss is computed on what inference would output:
`post_process(model(pre_process(image)))`, compared with the targets of
`chunkflow.training.data` under their loss weights (`chunkflow.training.losses`).

The run resumes from the newest checkpoint of its folder and keeps there the files of
`chunkflow.training.checkpoints`, and `tensorboard/`: scalars loss (and loss/NAME per target),
learning_rate and batches_per_second per iteration (torch.utils.tensorboard), unless
`tensorboard` is off.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.progress import progress
from chunkflow.training.checkpoints import (
    check_writable,
    load_checkpoint,
    newest_checkpoint,
    save_checkpoint,
    save_model,
    save_snapshot,
)
from chunkflow.training.data import STAGES, ExampleMaker, PipelineSpec, make_loader
from chunkflow.training.losses import check_model_output, forward, model_file_loss, voxel_loss

logger = logging.getLogger(__name__)

__all__ = ["TrainOptions", "train"]

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


def train(
    samples: list[dict], spec: PipelineSpec, options: TrainOptions, names: list | None = None
) -> str:
    """Train until `options.iterations`; return the path of the final `model.pt`.

    `names` describe the samples in errors (default "sample K").
    """
    import torch

    from chunkflow.inference.backends import PytorchBackend, choose_device

    _check_options(options)
    check_writable(options.checkpoint_dir)
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)  # the model file builds its network when it is loaded
    device = choose_device(options.device)
    backend = PytorchBackend(options.model_path, options.weight_path, device)
    channels = samples[0]["image"].num_channels if samples else 1
    check_model_output(backend, spec, options.model_path, device, channels)
    model_loss = model_file_loss(options.model_path, spec)
    run = _Run(backend, _optimizer(backend.model, options), model_loss, spec, options, device)

    start = _resume(run)
    final = os.path.join(options.checkpoint_dir, "model.pt")
    if start >= options.iterations:
        logger.info("train: %s is already at iteration %d", options.checkpoint_dir, start)
        save_model(backend.model, start, final)
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
    save_model(backend.model, iteration, final)
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
    state = load_checkpoint(path)
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
                save_checkpoint(
                    run.backend.model, run.optimizer, iteration, loss_value, options.checkpoint_dir
                )
            if options.snapshot_interval and iteration % options.snapshot_interval == 0:
                save_snapshot(batch, predictions, run.spec, iteration, options.checkpoint_dir)
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
            t.output: voxel_loss(
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
