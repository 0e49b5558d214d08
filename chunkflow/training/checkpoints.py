"""Files a training run keeps in its checkpoint folder: checkpoints, the model, snapshots.

`chunkflow.training.trainer` writes them:

- `model_{iteration:08d}.pt`: {"state_dict", "optimizer", "iteration", "loss"} every
  `checkpoint_interval` iterations and at the end; the newest one is resumed from.
- `model.pt`: {"state_dict", "iteration"} of the last iteration, the small file to hand to
  `inference --convnet-weight-path`.
- `snapshots/batch_{iteration:08d}.h5`: image, label and per output target/NAME,
  prediction/NAME and weight/NAME of the first example of a batch, every `snapshot_interval`
  iterations. Every dataset carries `offset` (world units, z y x, in the sample's coordinates)
  and `resolution` (the voxel size) attributes, as gunpowder's Snapshot writes them, so the
  image and the smaller outputs of a valid network overlay in a viewer.

All are written under a temporary name and renamed, and read back with `weights_only=True`.
"""

from __future__ import annotations

import glob
import logging
import os
import re

import numpy as np

from chunkflow.errors import ChunkflowError
from chunkflow.io.files import atomic_output

logger = logging.getLogger(__name__)

__all__ = [
    "newest_checkpoint",
    "check_writable",
    "load_checkpoint",
    "save_checkpoint",
    "save_model",
    "save_snapshot",
]

CHECKPOINT = re.compile(r"model_(\d{8})\.pt$")


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


def check_writable(folder: str) -> None:
    """Make `folder` if needed and write a file there, so a run fails before it trains."""
    try:
        os.makedirs(folder, exist_ok=True)
        with atomic_output(os.path.join(folder, ".write-test")) as tmp, open(tmp, "w") as f:
            f.write("ok")
        os.remove(os.path.join(folder, ".write-test"))
    except (OSError, ChunkflowError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ChunkflowError(f"checkpoint folder {folder}: cannot write there ({reason})") from None


def load_checkpoint(path: str) -> dict:
    """A checkpoint's state (weights only); a file that is none is one line naming it."""
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
    return {k: v.contiguous() for k, v in _on_host(model.state_dict()).items()}


def _on_host(value):
    """`value` with every tensor in it copied to the host: a checkpoint a GPU wrote loads on a
    machine without one, with a plain torch.load too."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _on_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_host(v) for v in value)
    return value


def save_checkpoint(model, optimizer, iteration: int, loss: float, folder: str) -> None:
    """`model_{iteration:08d}.pt` in `folder`: weights, optimizer state, iteration and loss."""
    path = os.path.join(folder, f"model_{iteration:08d}.pt")
    state = {
        "state_dict": _cpu_state(model),
        "optimizer": _on_host(optimizer.state_dict()),
        "iteration": iteration,
        "loss": loss,
    }
    _save(state, path)
    logger.debug("train: checkpoint %s", path)


def save_model(model, iteration: int, path: str) -> None:
    """The weights and the iteration at `path`, the file inference loads."""
    _save({"state_dict": _cpu_state(model), "iteration": iteration}, path)


def save_snapshot(batch: dict, predictions: dict, spec, iteration: int, folder: str) -> None:
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
