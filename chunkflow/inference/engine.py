"""The blending engine: run a backend over every patch of a chunk and blend the outputs.

Each output patch is weighted by the bump divided by the sum of the bumps of all patches that
cover the voxel (`weight_sum`), and added to the output buffer. The weights of overlapping
patches therefore sum to exactly 1 everywhere, at chunk borders too, for any chunk size.

Input, patches, weights and the output buffer live on the chosen device (a GPU if asked for);
only the finished chunk is copied back. The output buffer has the output dtype (float16 halves
it); accumulation in float16 adds at most a few float16 rounding steps per voxel.

Whole-chunk mode (`whole_chunk`), for fully convolutional models: one forward pass over the
whole chunk, no patches and no blending; the output is cropped by the same margins as in patch
mode. A model that cannot take the chunk's shape is an error that says so.

On a GPU, `pin_memory` keeps the chunk on the host, gathers each batch of patches into pinned
host memory and sends it on a side CUDA stream while the previous batch computes
(`host_staging` is that path without the pinning and the stream: the same logic on any
device). `autocast` runs the model under `torch.autocast` in float16 or bfloat16; the blending
stays in the output dtype. Without it a GPU computes in IEEE float32, not TensorFloat-32.

An output with NaN or inf voxels (a diverged model, a NaN in the input, float16 overflow) is an
error that counts them, not a result.
"""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np

from chunkflow.chunk import Chunk, LayerType, unit_scale
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.inference import augment as tta
from chunkflow.inference.bump import bump as make_bump
from chunkflow.inference.grid import PatchGrid, Plan
from chunkflow.progress import progress

logger = logging.getLogger(__name__)


def _vec(v) -> str:
    return " ".join(str(int(x)) for x in v)


def _local(bbox, origin) -> tuple:
    return tuple(slice(a - o, b - o) for a, b, o in zip(bbox.start, bbox.stop, origin))


@contextlib.contextmanager
def _ieee_float32():
    """cuDNN convolutions in float32, not TensorFloat-32 (PyTorch's default on Ampere and
    later, with a 10-bit mantissa): float32 on a GPU gives what it gives on the CPU."""
    import torch

    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = before


def _host_array(tensor, slab_bytes: int = 16 << 20) -> np.ndarray:
    """`tensor` as a numpy array. From a GPU it goes slab by slab through two pinned buffers,
    each slab's copy overlapping the host copy of the one before: a copy straight into pageable
    memory is several times slower (1.4 against 11 GB/s for 200 MB on an H200)."""
    import torch

    if tensor.device.type != "cuda":
        return tensor.cpu().numpy()
    flat = tensor.contiguous().view(-1)
    array = np.empty(tuple(tensor.shape), dtype=str(tensor.dtype).split(".")[1])
    host = torch.from_numpy(array).view(-1)
    step = max(1, slab_bytes // flat.element_size())
    size = min(step, flat.numel())
    buffers = [torch.empty(size, dtype=flat.dtype, pin_memory=True) for _ in range(2)]
    pending: list = [None, None]  # per buffer: (the event ending its copy, first, last element)

    def drain(i):
        if pending[i] is not None:
            event, first, last = pending[i]
            event.synchronize()
            host[first:last].copy_(buffers[i][: last - first])
            pending[i] = None

    for k, first in enumerate(range(0, flat.numel(), step)):
        i, last = k % 2, min(first + step, flat.numel())
        drain(i)
        buffers[i][: last - first].copy_(flat[first:last], non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(tensor.device))
        pending[i] = (event, first, last)
    drain(0)
    drain(1)
    return array


class Inferencer:
    """Apply a patch model to chunks of any size."""

    def __init__(
        self,
        backend,
        grid: PatchGrid,
        device,
        num_input_channels: int = 1,
        num_output_channels: int = 3,
        batch_size: int = 1,
        bump: str = "wu",
        dtype: str = "float32",
        augment: bool = False,
        output_layer_type=None,
        mask_myelin_threshold: float | None = None,
        whole_chunk: bool = False,
        autocast: str | None = None,
        pin_memory: bool = False,
        host_staging: bool = False,
    ):
        import torch

        if batch_size < 1:
            raise ParameterError(f"`batch_size` {batch_size} must be at least 1")
        if mask_myelin_threshold is not None and num_output_channels < 2:
            raise ParameterError("`mask_myelin_threshold` needs a myelin channel after the others")
        self.backend = backend
        self.grid = grid
        self.device = device
        self.num_input_channels = num_input_channels
        self.num_output_channels = num_output_channels
        self.batch_size = batch_size
        self.dtype = getattr(torch, dtype)
        self.augment = augment
        self.mask_myelin_threshold = mask_myelin_threshold
        channels = num_output_channels - (mask_myelin_threshold is not None)
        if output_layer_type is None:
            output_layer_type = (
                LayerType.AFFINITY_MAP if channels == 3 else LayerType.PROBABILITY_MAP
            )
        self.output_layer_type = LayerType.parse(output_layer_type)
        if whole_chunk and getattr(backend, "premasked", False):
            raise ParameterError(
                "`whole_chunk` needs a model that takes any shape (pytorch or identity); the "
                "universal framework multiplies by a patch mask"
            )
        if whole_chunk and grid.patch_num is not None:
            raise ParameterError("`whole_chunk` makes no patches: drop `patch_num`")
        if autocast not in (None, "float16", "bfloat16"):
            raise ParameterError(f"`autocast` {autocast!r}: expected float16 or bfloat16")
        if pin_memory and device.type != "cuda":
            raise ParameterError(
                f"`pin_memory` overlaps host-to-GPU copies with compute; `device` is {device}, "
                "not a CUDA device"
            )
        if pin_memory and whole_chunk:
            raise ParameterError("`pin_memory` streams batches of patches: drop `whole_chunk`")
        self.whole_chunk = whole_chunk
        self.autocast = getattr(torch, autocast) if autocast else None
        self.pin_memory = pin_memory
        self.host_staging = host_staging or pin_memory
        self._whole_region = None  # the output region of the chunk in whole-chunk mode
        self.bump = torch.from_numpy(make_bump(grid.output_patch_size, bump)).to(device)
        self._weight_cache: dict = {}
        self.forward_seconds = 0.0

    # weights ----------------------------------------------------------------------------------
    def weight_sum(self, plan: Plan):
        """Sum of the bumps of all patches at every voxel of the region (cached per geometry)."""
        import torch

        key = (plan.region.shape, tuple(b.start - plan.region.start for _, b in plan.patches))
        if key not in self._weight_cache:
            total = torch.zeros(tuple(plan.region.shape), dtype=torch.float32, device=self.device)
            for _, out_bbox in plan.patches:
                total[_local(out_bbox, plan.region.start)] += self.bump
            self._weight_cache = {key: total}
        return self._weight_cache[key]

    # running ----------------------------------------------------------------------------------
    def _forward(self, batch):
        import time

        import torch

        start = time.perf_counter()
        affinity = self.output_layer_type is LayerType.AFFINITY_MAP
        if self.autocast is not None:
            cast = torch.autocast(self.device.type, dtype=self.autocast)
        elif self.device.type == "cuda":
            cast = _ieee_float32()
        else:
            cast = contextlib.nullcontext()
        with torch.inference_mode(), cast:
            if self.augment:
                out = tta.augmented(self._model, batch, affinity)
            else:
                out = self._model(batch)
        if self.autocast is not None:
            out = out.float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        return out

    def _model(self, batch):
        """The backend's output for `batch`, its first --num-output-channels channels.

        As chunkflow 1.x did, a model may return more channels than asked for (and a larger
        patch, see `_fit_output`); fewer is an error.
        """
        out = self.backend(batch)
        count, channels = len(batch), self.num_output_channels
        if out.ndim != 5 or out.shape[0] != count:
            size = self._whole_region if self.whole_chunk else self.grid.output_patch_size
            expected = (count, channels, *size)
            raise ChunkflowError(
                f"the model returned shape {tuple(out.shape)}; expected 5D "
                f"(batch, channel, z, y, x) = {expected}"
            )
        if out.shape[1] < channels:
            raise ParameterError(
                f"the model returned {out.shape[1]} output channels but `num_output_channels` "
                f"is {channels}"
            )
        return out[:, :channels] if out.shape[1] != channels else out

    def _fit_output(self, out, patch=None):
        """The output patches cropped to the output patch size at their centre: a model may
        return a larger patch (e.g. the input patch), as in chunkflow 1.x; a smaller one is an
        error. In whole-chunk mode `patch` is the output region."""
        what, target = "patches of", "the output patch"
        if patch is None:
            patch = self.grid.output_patch_size
        else:
            what, target = "for the whole chunk", "the output region"
        patch = tuple(patch)
        size = tuple(out.shape[2:])
        if size == patch:
            return out
        if any(s < p for s, p in zip(size, patch)):
            raise ParameterError(
                f"the model returned {what} {_vec(size)}, smaller than {target} "
                f"{_vec(patch)} (check `output_patch_size`)"
            )
        if any((s - p) % 2 for s, p in zip(size, patch)):
            raise ChunkflowError(
                f"the model returned {what} {_vec(size)}, which have no centre of "
                f"{target} size {_vec(patch)}: the difference must be even"
            )
        (mz, my, mx) = ((s - p) // 2 for s, p in zip(size, patch))
        (pz, py, px) = patch
        return out[:, :, mz : mz + pz, my : my + py, mx : mx + px]

    def __call__(self, chunk: Chunk) -> Chunk:
        import torch

        if chunk.num_channels != self.num_input_channels:
            raise ParameterError(
                f"the input chunk has {chunk.num_channels} channel(s) but `num_input_channels` "
                f"is {self.num_input_channels}"
            )
        plan = self.grid.whole(chunk.bbox) if self.whole_chunk else self.grid.plan(chunk.bbox)
        patches = plan.patches
        batch_size = min(self.batch_size, len(patches))  # no room for patches that do not exist
        self._require_memory(chunk, plan, batch_size)
        channels = self.num_output_channels - (self.mask_myelin_threshold is not None)
        shape = (channels, *plan.output_bbox.shape)
        if not chunk.array.any():
            logger.info("inference: input %s is all zero, the network is skipped", chunk.bbox)
            return self._chunk(np.zeros(shape, dtype=str(self.dtype).split(".")[1]), plan, chunk)
        if self.whole_chunk:
            return self._whole(chunk, plan)
        if self.host_staging:
            return self._staged(chunk, plan, batch_size)

        x = self._to_device(chunk)
        weight_sum = self.weight_sum(plan)
        weight = torch.ones_like(self.bump) if self.backend.premasked else self.bump
        out = torch.zeros(
            (self.num_output_channels, *plan.region.shape), dtype=self.dtype, device=self.device
        )
        batch = torch.empty(
            (batch_size, self.num_input_channels, *self.grid.input_patch_size),
            dtype=torch.float32,
            device=self.device,
        )
        origin_in, origin_out = chunk.voxel_offset, plan.region.start
        starts = range(0, len(patches), batch_size)
        for first in progress(starts, desc="inference", unit="batch"):
            group = patches[first : first + batch_size]
            for k, (in_bbox, _) in enumerate(group):
                batch[k] = x[(slice(None), *_local(in_bbox, origin_in))]
            y = self._fit_output(self._forward(batch[: len(group)]))
            for k, (_, out_bbox) in enumerate(group):
                local = _local(out_bbox, origin_out)
                out[(slice(None), *local)].addcmul_(y[k], weight / weight_sum[local])
        logger.debug(
            "inference: %d patches, %.2f s in the network", len(patches), self.forward_seconds
        )

        return self._finish(out, x, plan, chunk)

    def _finish(self, out, x, plan: Plan, chunk: Chunk) -> Chunk:
        """The output region cropped to the output chunk, checked, myelin-masked, on the host."""
        out = out[(slice(None), *_local(plan.output_bbox, plan.region.start))]
        self._check_finite(out, x)
        if self.mask_myelin_threshold is not None:
            out = out[:-1] * (out[-1:] <= self.mask_myelin_threshold)
        return self._chunk(_host_array(out), plan, chunk)

    def _whole(self, chunk: Chunk, plan: Plan) -> Chunk:
        """One forward pass over the whole chunk, cropped to the output region: no blending."""
        import torch

        x = self._to_device(chunk)
        self._whole_region = tuple(plan.region.shape)
        try:
            y = self._forward(x[None])
        except RuntimeError as err:
            first = " ".join(str(err).strip().splitlines()[:1])[:200]
            if isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in first:
                raise ParameterError(
                    f"`whole_chunk`: the model ran out of memory on {self.device} for the chunk "
                    f"{_vec(chunk.spatial_shape)} (its activations span the whole chunk); use "
                    "smaller chunks or patch mode"
                ) from None
            raise ParameterError(
                f"`whole_chunk`: the model cannot take the chunk {_vec(chunk.spatial_shape)} "
                f"({first}); whole-chunk mode needs a fully convolutional model and a chunk "
                "size it accepts (e.g. a multiple of its pooling factor)"
            ) from None
        out = self._fit_output(y, plan.region.shape)[0].to(self.dtype)
        if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            out = out.clone()  # e.g. identity: a view of the input must not become the output
        return self._finish(out, x, plan, chunk)

    def _staged(self, chunk: Chunk, plan: Plan, batch_size: int) -> Chunk:
        """Patch mode with the chunk kept on the host: each batch is gathered on the host and
        copied to the device. With `pin_memory` the host buffers are pinned and the copy of the
        next batch runs on a side CUDA stream while the current batch computes (two buffers,
        each reused only after its copy has finished)."""
        import torch

        x = self._to_host(chunk)
        weight_sum = self.weight_sum(plan)
        weight = torch.ones_like(self.bump) if self.backend.premasked else self.bump
        out = torch.zeros(
            (self.num_output_channels, *plan.region.shape), dtype=self.dtype, device=self.device
        )
        shape = (batch_size, self.num_input_channels, *self.grid.input_patch_size)
        host = [torch.empty(shape, pin_memory=self.pin_memory) for _ in range(2)]
        copied = [None, None]  # the event that marks the end of each buffer's last copy
        stream = torch.cuda.Stream(self.device) if self.pin_memory else None
        origin_in, origin_out = chunk.voxel_offset, plan.region.start
        groups = [plan.patches[i : i + batch_size] for i in range(0, len(plan.patches), batch_size)]

        def send(i):
            """Gather group i into host buffer i % 2 and start its copy to the device."""
            buffer = host[i % 2]
            if copied[i % 2] is not None:
                copied[i % 2].synchronize()
            for k, (in_bbox, _) in enumerate(groups[i]):
                buffer[k] = x[(slice(None), *_local(in_bbox, origin_in))]
            if stream is None:
                return buffer[: len(groups[i])].to(self.device), None
            with torch.cuda.stream(stream):
                batch = buffer[: len(groups[i])].to(self.device, non_blocking=True)
                event = torch.cuda.Event()
                event.record(stream)
            copied[i % 2] = event
            return batch, event

        pending = send(0)
        for i in progress(range(len(groups)), desc="inference", unit="batch"):
            batch, event = pending
            if event is not None:
                torch.cuda.current_stream(self.device).wait_event(event)
                batch.record_stream(torch.cuda.current_stream(self.device))
            if i + 1 < len(groups):
                pending = send(i + 1)  # the next copy overlaps this batch's compute
            y = self._fit_output(self._forward(batch))
            for k, (_, out_bbox) in enumerate(groups[i]):
                local = _local(out_bbox, origin_out)
                out[(slice(None), *local)].addcmul_(y[k], weight / weight_sum[local])
        return self._finish(out, x, plan, chunk)

    def _check_finite(self, out, x) -> None:
        """Refuse an output with NaN or inf voxels: a map of NaNs must not pass for a result."""
        import torch

        bad = int((~torch.isfinite(out)).any(dim=0).sum())
        if not bad:
            return
        total = out[0].numel()
        causes = []
        bad_input = int((~torch.isfinite(x)).any(dim=0).sum())
        if bad_input:
            causes.append(f"the input has {bad_input:,} non-finite voxels")
        if self.dtype == torch.float16:
            causes.append("float16 output may overflow: compute in float32")
        why = f" ({'; '.join(causes)})" if causes else ""
        raise ChunkflowError(
            f"the model output has {bad:,} of {total:,} voxels that are NaN or inf{why}"
        )

    def _require_memory(self, chunk: Chunk, plan: Plan, batch_size: int) -> None:
        """Refuse a chunk whose buffers do not fit in the device's memory, before any is made:
        the input as float32, the output and weight sums over the region, a batch of input
        patches and one of output patches (the model's own memory comes on top)."""
        import torch

        from chunkflow.memory import format_bytes, require_memory

        region = math.prod(plan.region.shape)
        patches_in = self.num_input_channels * math.prod(self.grid.input_patch_size)
        patches_out = self.num_output_channels * math.prod(self.grid.output_patch_size)
        output_size = self.dtype.itemsize * self.num_output_channels * region
        nbytes = (
            4 * self.num_input_channels * math.prod(chunk.spatial_shape)
            + output_size
            + 4 * region
            + 4 * batch_size * (patches_in + patches_out)
        )
        if self.whole_chunk:  # the model's float32 output over the whole chunk, no patches
            nbytes = (
                4
                * (self.num_input_channels + self.num_output_channels)
                * math.prod(chunk.spatial_shape)
                + output_size
            )
        what = (
            f"inference of a {_vec(chunk.spatial_shape)} chunk ({len(plan.patches)} patches "
            f"of {_vec(self.grid.input_patch_size)}, batches of {batch_size})"
        )
        if self.whole_chunk:
            what = f"whole-chunk inference of a {_vec(chunk.spatial_shape)} chunk"
        if self.device.type != "cuda":
            require_memory(nbytes, what)
            return
        free, _ = torch.cuda.mem_get_info(self.device)
        if nbytes > free:
            raise ChunkflowError(
                f"{what} needs {format_bytes(nbytes)} of GPU memory, more than the "
                f"{format_bytes(free)} free on {self.device}"
            )
        require_memory(output_size, f"the output of {what}")  # copied back to the host

    def _to_device(self, chunk: Chunk):
        return self._to_host(chunk, self.device)

    def _to_host(self, chunk: Chunk, device=None):
        """The chunk as a float32 (channel, z, y, x) tensor on `device` (default: the host)."""
        import torch

        array = np.asarray(chunk)
        if array.ndim == 3:
            array = array[np.newaxis]
        x = torch.from_numpy(np.ascontiguousarray(array))
        if device is not None:
            x = x.to(device)
        low, scale = unit_scale(array.dtype)  # the rule of `to_unit`, on the device
        x = x.to(torch.float32)
        if low:
            x.sub_(low)
        if scale != 1.0:
            x.mul_(np.float32(scale).item())
        return x

    def _chunk(self, array: np.ndarray, plan: Plan, chunk: Chunk) -> Chunk:
        return Chunk(array, plan.output_bbox.start, chunk.voxel_size, self.output_layer_type)
