"""The training loop: a chunkflow PyTorch model file learns affinities from samples.

The model file is the one `inference --framework pytorch` runs (`InstantiatedModel`, optional
`pre_process`/`post_process`), and the loss is computed on what inference would output:
`post_process(model(pre_process(image)))`, compared with the affinity targets under the
balanced weights of `chunkflow.training.data`.

Files in the checkpoint folder:

- `model_{iteration:08d}.pt`: {"state_dict", "optimizer", "iteration", "loss"} every
  `checkpoint_interval` iterations and at the end; the newest one is resumed from.
- `model.pt`: {"state_dict", "iteration"} of the last iteration, the small file to hand to
  `inference --convnet-weight-path`.
- `snapshots/batch_{iteration:08d}.h5`: image, label, target, prediction and weight of the first
  example of a batch, every `snapshot_interval` iterations.

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

from chunkflow.errors import ChunkflowError
from chunkflow.io.files import atomic_output
from chunkflow.progress import progress
from chunkflow.training.data import STAGES, ExampleMaker, PipelineSpec, make_loader

logger = logging.getLogger("chunkflow")

__all__ = ["TrainOptions", "train", "newest_checkpoint"]

CHECKPOINT = re.compile(r"model_(\d{8})\.pt$")
LOSSES = ("bce", "mse")
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
    loss: str = "bce"
    weight_path: str | None = None  # initial weights (fine-tuning)
    checkpoint_interval: int = 500
    snapshot_interval: int = 0  # 0: none
    profile_interval: int = 100  # 0: none
    seed: int = 0
    device: str = "auto"
    threads: int | None = None


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


def train(samples: list[dict], spec: PipelineSpec, options: TrainOptions) -> str:
    """Train until `options.iterations`; return the path of the final `model.pt`."""
    import torch

    from chunkflow.inference.backends import PytorchBackend, choose_device, describe_device

    _check_options(options)
    _check_writable(options.checkpoint_dir)
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)  # the model file builds its network when it is loaded
    device = choose_device(options.device)
    backend = PytorchBackend(options.model_path, options.weight_path, device)
    model = backend.model
    _check_model_output(backend, spec, options.model_path, device)
    optimizer = _optimizer(model, options)

    start = 0
    resumed = newest_checkpoint(options.checkpoint_dir)
    if resumed is not None:
        path, start = resumed
        state = _load(path)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        logger.info("train: resumed from %s (iteration %d)", path, start)
    final = os.path.join(options.checkpoint_dir, "model.pt")
    if start >= options.iterations:
        logger.info("train: %s is already at iteration %d", options.checkpoint_dir, start)
        _save_model(model, start, final)
        return final

    logger.info(
        "train: %d samples, iterations %d..%d, batch %d, %d workers, %s",
        len(samples),
        start + 1,
        options.iterations,
        options.batch_size,
        options.num_workers,
        describe_device(device),
    )
    loader = make_loader(
        samples,
        spec,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        seed=options.seed,
        start=start,
        stop=options.iterations,
    )
    ExampleMaker(samples, spec, options.seed)[start * options.batch_size]  # fail here, clearly
    profile = _Profile()
    model.train()
    iteration, loss_value = start, float("nan")
    bar = progress(desc="train", total=options.iterations, unit="it")
    bar.update(start)
    wait_start = time.perf_counter()
    for iteration, batch in enumerate(_worker_errors(loader), start=start + 1):
        profile.add("waiting for data", time.perf_counter() - wait_start)
        for stage, seconds in zip(STAGES, batch["seconds"].sum(0).tolist()):
            profile.add(f"{stage} (workers)", seconds)

        tic = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(options, iteration)
        image = batch["image"].to(device)
        target = batch["target"].to(device)
        weight = batch["weight"].to(device)
        prediction = backend(image)
        loss = _loss(options.loss, prediction, target, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        profile.add("forward + backward", time.perf_counter() - tic)
        tic = time.perf_counter()
        optimizer.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise ChunkflowError(
                f"the loss became {loss_value} at iteration {iteration}; lower --learning-rate"
            )
        profile.add("optimizer step", time.perf_counter() - tic)
        profile.loss(loss_value)

        tic = time.perf_counter()
        if iteration % options.checkpoint_interval == 0 or iteration == options.iterations:
            _save_checkpoint(model, optimizer, iteration, loss_value, options.checkpoint_dir)
        if options.snapshot_interval and iteration % options.snapshot_interval == 0:
            _save_snapshot(batch, prediction, iteration, options.checkpoint_dir)
        profile.add("checkpoints + snapshots", time.perf_counter() - tic)
        bar.update()
        if options.profile_interval and iteration % options.profile_interval == 0:
            logger.info("train: iteration %d\n%s", iteration, profile.table())
            profile = _Profile()
        wait_start = time.perf_counter()
    bar.close()
    _save_model(model, iteration, final)
    logger.info("train: iteration %d, loss %.4f, model %s", iteration, loss_value, final)
    return final


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
    if options.loss not in LOSSES:
        raise ChunkflowError(f"--loss {options.loss!r}: expected one of {', '.join(LOSSES)}")
    if options.optimizer not in OPTIMIZERS:
        raise ChunkflowError(
            f"--optimizer {options.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}"
        )
    if not os.path.isfile(options.model_path):
        raise ChunkflowError(f"model file {options.model_path}: no such file")


def _check_writable(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        with atomic_output(os.path.join(folder, ".write-test")) as tmp, open(tmp, "w") as f:
            f.write("ok")
        os.remove(os.path.join(folder, ".write-test"))
    except (OSError, ChunkflowError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ChunkflowError(f"checkpoint folder {folder}: cannot write there ({reason})") from None


def _check_model_output(backend, spec: PipelineSpec, model_path: str, device) -> None:
    """Run one zero batch: the output must have one channel per affinity offset and the size
    of the output patch."""
    import torch

    backend.model.eval()
    with torch.no_grad():
        x = torch.zeros((1, 1, *spec.input_size), device=device)
        try:
            y = backend(x)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ChunkflowError(
                f"model file {model_path} fails on a {tuple(spec.input_size)} input patch ({first})"
            ) from None
    channels = len(spec.neighborhood)
    if y.dim() != 5:
        raise ChunkflowError(
            f"model file {model_path} outputs shape {tuple(y.shape)}, not (batch, channel, z, y, x)"
        )
    if y.shape[1] != channels:
        raise ChunkflowError(
            f"model file {model_path} outputs {y.shape[1]} channels but the affinity targets "
            f"have {channels} (one per --neighborhood offset)"
        )
    if tuple(y.shape[2:]) != tuple(spec.output_size):
        raise ChunkflowError(
            f"model file {model_path} turns a {tuple(spec.input_size)} input patch into "
            f"{tuple(y.shape[2:])}, not the output patch {tuple(spec.output_size)} "
            f"(set --output-patch-size {' '.join(map(str, y.shape[2:]))})"
        )


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
    """Weighted mean of the per-voxel loss (weights sum to the normaliser)."""
    import torch.nn.functional as F

    if kind == "bce":
        eps = 1e-6
        per_voxel = F.binary_cross_entropy(prediction.clamp(eps, 1 - eps), target, reduction="none")
    else:
        per_voxel = (prediction - target) ** 2
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


def _save_snapshot(batch: dict, prediction, iteration: int, folder: str) -> None:
    import h5py

    path = os.path.join(folder, "snapshots", f"batch_{iteration:08d}.h5")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {
        "image": batch["image"][0, 0].numpy(),
        "label": batch["label"][0].numpy(),
        "target": batch["target"][0].numpy(),
        "prediction": prediction[0].detach().float().cpu().numpy(),
        "weight": batch["weight"][0].numpy(),
    }
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=array, compression="gzip")
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
