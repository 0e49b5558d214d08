"""An `Inferencer` from plain parameters: its patch grid, device, model backend and engine.

This is what the `inference` operator runs, under the same names, so Python code builds the
same inferencer the command line does::

    from chunkflow.inference.build import build_inferencer

    inferencer = build_inferencer(
        (20, 256, 256),
        output_patch_overlap=(4, 64, 64),
        framework="pytorch",
        model_path="net.py",
        weight_path="net.pt",
        device="cpu",
        batch_size=2,
    )
    output = inferencer(chunk)

Errors name the parameter and its value (`ParameterError`).
"""

from __future__ import annotations

import logging
import os

from chunkflow.errors import ParameterError
from chunkflow.inference.grid import PatchGrid

__all__ = ["build_inferencer"]

logger = logging.getLogger(__name__)


def build_inferencer(
    input_patch_size,
    output_patch_size=None,
    output_patch_overlap=None,
    output_crop_margin=None,
    patch_num=None,
    mask_output_chunk: bool = False,
    *,
    framework: str = "universal",
    model_path: str | None = None,
    weight_path: str | None = None,
    device: str = "auto",
    num_threads: int | None = None,
    num_input_channels: int = 1,
    num_output_channels: int = 3,
    bump: str = "wu",
    output_layer_type=None,
    whole_chunk: bool = False,
    **engine,
):
    """The `Inferencer` of a model: its grid (`PatchGrid.create`), the torch device `device`
    (`choose_device`: auto, cpu, cuda, cuda:N), the model loaded by `framework`
    (`load_backend`) and the blending engine.

    Args:
        num_threads: torch's CPU threads (None: torch's choice).
        output_layer_type: the output's layer type; the identity backend's default is image.
        engine: the other options of `Inferencer` (batch_size, dtype, augment,
            mask_myelin_threshold, autocast, pin_memory, host_staging).
    """
    # large tensors on 2 MiB pages: far fewer page faults for the big intermediate activations
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import torch

    from chunkflow.inference.backends import choose_device, describe_device, load_backend
    from chunkflow.inference.bump import bump as make_bump
    from chunkflow.inference.engine import Inferencer

    if num_threads is not None:
        if num_threads < 1:
            raise ParameterError(f"`num_threads` {num_threads} must be at least 1")
        torch.set_num_threads(num_threads)
    grid = PatchGrid.create(
        input_patch_size,
        output_patch_size,
        output_patch_overlap,
        output_crop_margin,
        mask_output_chunk,
        patch_num,
        whole_chunk,
    )
    torch_device = choose_device(device)
    logger.info("inference on %s", describe_device(torch_device))
    backend = load_backend(
        framework,
        model_path,
        weight_path,
        torch_device,
        grid.patch_crop_margin,
        num_input_channels,
        num_output_channels,
        make_bump(grid.output_patch_size, bump),
    )
    if output_layer_type is None and framework == "identity":
        output_layer_type = "image"
    return Inferencer(
        backend,
        grid,
        torch_device,
        num_input_channels,
        num_output_channels,
        bump=bump,
        output_layer_type=output_layer_type,
        whole_chunk=whole_chunk,
        **engine,
    )
