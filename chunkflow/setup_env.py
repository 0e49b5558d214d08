"""Plan a distributed ConvNet inference run: patch number, chunk sizes, output layers, tasks.

Sizes are (z, y, x) voxels at the run's mip M. With the patch geometry of `PatchGrid` (input
patch P_in, output patch P, overlap o, stride s = P - o, patch crop margin m = (P_in - P) / 2)
and the output crop margin c, a task with n patches per axis has::

    input chunk   I(n) = s (n - 1) + P_in          what cutout reads (PatchGrid.chunk_size_for)
    patch region  R(n) = s (n - 1) + P             what the patches write (I - 2m)
    output chunk  S(n) = s (n - 1) + P - 2c        the task bbox, what save writes (R - 2c)
    expand margin E    = m + c                     cutout --expand-margin-size: I = S + 2E

`plan_environment` picks n by brute force over the valid values of each axis:

- S(n) > 0 and S(n) fits the region; in y and x S(n) is divisible by d = 2^(top - M), where
  top is --max-mip (or the thumbnail mip if higher), so downsample-upload of every task works,
  and by the storage block when one is forced;
- the memory of one task, ``mem = I·(2·b_in + 4·c_in) + R·(C·b_out + 4) + 2·S·C·b_out`` bytes
  (the raw input and its float32 copy, the output buffer of C channels plus the float32 weight
  sum, two copies of the cropped output while it is saved), times the safety factor, must fit
  in --max-ram-size;
- among those, the patch numbers with the best ``efficiency × coverage`` win: efficiency
  ``∏ S / (∏ n · ∏ P)`` is the share of computed output voxels kept (larger tasks waste less
  on their margins), coverage the share of the region that whole tasks cover.

The output region starts at the region start rounded up to d in y and x and holds a whole
number of tasks per axis; the output layer's bounds are exactly that region, so the tasks
(a `grid_bboxes` grid of S) cover every voxel of it exactly once, and their cutouts, grown by E,
stay inside the region they came from (the input volume shrunk by E).

Sharded output layers (`shard_bytes` given) keep one writer per shard: at every mip the shard
is the largest one `chunkflow.io.shards` chooses (as `create-info --sharded` does) within
`shard_bytes` whose shape tiles the task at that mip. A task's output at mip k, the task bbox
divided by 2^(k - M) in y and x, then covers whole shards, and no two tasks share one.
"""

from __future__ import annotations

import logging
import math
import shlex
from bisect import bisect_right
from dataclasses import dataclass, field

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian, grid_bboxes
from chunkflow.image.thumbnail import thumbnail_path_of  # noqa: F401 (the layer save writes)
from chunkflow.inference.grid import PatchGrid

logger = logging.getLogger("chunkflow")

GB = 1e9
FACTOR = Cartesian(1, 2, 2)  # downsampling factor between mips
DEFAULT_BLOCK_TARGET = Cartesian(64, 64, 64)
DEFAULT_VOXEL_SIZE = Cartesian(40, 4, 4)
MAX_PATCH_NUM = 1024  # per axis; far beyond any RAM budget of today
OUTPUT_DTYPES = {"float32": 4, "float16": 2}
INTEGER_ENCODINGS = ("compressed_segmentation", "jpeg", "png", "compresso", "crackle")
AXES = "zyx"


def _vec(v) -> str:
    return " ".join(str(int(x)) for x in v)


@dataclass(frozen=True)
class SetupPlan:
    """The computed parameters of a run, (z, y, x) at `mip` unless said otherwise."""

    mip: int
    max_mip: int
    thumbnail_mip: int | None  # None: no thumbnail layer
    input_patch_size: Cartesian
    output_patch_size: Cartesian
    output_patch_overlap: Cartesian
    output_crop_margin: Cartesian
    patch_crop_margin: Cartesian
    patch_num: Cartesian
    input_chunk_size: Cartesian  # what cutout reads: the task grown by expand_margin_size
    patch_region_size: Cartesian  # what the patches write
    output_chunk_size: Cartesian  # the task size, what save writes
    expand_margin_size: Cartesian
    downsample_factor: Cartesian  # 2^(top mip - mip) in y and x: divides task starts and sizes
    requested_region: BoundingBox  # where output was asked for (the input shrunk by the margin)
    output_region: BoundingBox  # the output layer's bounds: a whole number of tasks
    grid_size: Cartesian  # tasks per axis
    block_size: Cartesian  # storage block of the output layer at `mip`
    block_sizes: tuple  # storage block of each mip 0..max_mip of the output layer
    thumbnail_block_sizes: tuple  # the same for the thumbnail layer, mips 0..thumbnail_mip
    num_input_channels: int
    num_output_channels: int
    dtype: str
    input_itemsize: int
    memory_bytes: int  # estimated memory of one task, without the safety factor
    safety_factor: float
    max_ram_bytes: int
    efficiency: float  # share of the computed output patch voxels that the tasks keep
    coverage: float  # share of the requested region that the output region covers
    voxel_size: Cartesian = field(default=DEFAULT_VOXEL_SIZE)  # at mip 0
    shard_bytes: int | None = None  # uncompressed bytes a shard may hold; None: unsharded

    @property
    def grid(self) -> PatchGrid:
        return PatchGrid.create(
            self.input_patch_size,
            self.output_patch_size,
            self.output_patch_overlap,
            self.output_crop_margin,
            patch_num=self.patch_num,
        )

    @property
    def stride(self) -> Cartesian:
        return self.output_patch_size - self.output_patch_overlap

    @property
    def task_count(self) -> int:
        return self.grid_size.prod

    @property
    def bboxes(self) -> list[BoundingBox]:
        """The tasks: a grid of output chunks that tiles the output region exactly."""
        return grid_bboxes(self.output_region, self.output_chunk_size)

    @property
    def memory_with_safety(self) -> float:
        return self.memory_bytes * self.safety_factor

    @property
    def voxel_size_at_mip(self) -> Cartesian:
        return self.voxel_size * factor_power(self.mip)

    @property
    def mip0_offset(self) -> Cartesian:
        return self.output_region.start * factor_power(self.mip)

    @property
    def mip0_size(self) -> Cartesian:
        return self.output_region.shape * factor_power(self.mip)

    @property
    def sharded(self) -> bool:
        return self.shard_bytes is not None

    def task_size_at(self, level: int) -> Cartesian:
        """The output chunk of a task at mip `level` (what downsample-upload writes there)."""
        if level >= self.mip:
            return self.output_chunk_size // factor_power(level - self.mip)
        return self.output_chunk_size * factor_power(self.mip - level)


def factor_power(levels: int) -> Cartesian:
    """The total downsampling factor of `levels` mips."""
    return Cartesian(FACTOR[0] ** levels, FACTOR[1] ** levels, FACTOR[2] ** levels)


# ---------------------------------------------------------------------------------------------
# planning


def memory_bytes(
    input_chunk, patch_region, output_chunk, channels, out_itemsize, in_itemsize, in_channels
) -> int:
    """Estimated memory of one task (see the module doc)."""
    return int(
        Cartesian(input_chunk).prod * (2 * in_itemsize + 4 * in_channels)
        + Cartesian(patch_region).prod * (channels * out_itemsize + 4)
        + Cartesian(output_chunk).prod * 2 * channels * out_itemsize
    )


def _largest_divisor(n: int, limit: int) -> int:
    return max(k for k in range(1, min(n, limit) + 1) if n % k == 0)


def default_block(size: int, target: int) -> int:
    """The storage block along one axis of a task of `size`: its largest power-of-two divisor up
    to `target` when that is at least half of min(size, target), else its largest divisor up to
    `target`."""
    power = min(size & -size, 1 << (target.bit_length() - 1))
    if 2 * power >= min(size, target):
        return power
    return _largest_divisor(size, target)


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def plan_environment(
    region: BoundingBox,
    *,
    mip: int = 0,
    max_mip: int | None = None,
    thumbnail_mip: int | None = None,
    input_patch_size=None,
    output_patch_size=None,
    output_patch_overlap=None,
    output_crop_margin=None,
    num_output_channels: int = 1,
    num_input_channels: int = 1,
    input_itemsize: int = 1,
    dtype: str = "float32",
    max_ram_gb: float = 15.0,
    safety_factor: float = 1.5,
    block_size=None,
    voxel_size=DEFAULT_VOXEL_SIZE,
    shard_bytes: int | None = None,
) -> SetupPlan:
    """Choose the patch number and chunk sizes for output over `region` (voxels at `mip`).

    `region` is where output is wanted; the cutouts of its tasks reach `expand_margin_size`
    beyond it. `shard_bytes` makes the output layers sharded, in shards of at most that many
    uncompressed bytes that tile the tasks. Raises a one-line `ChunkflowError` for impossible
    settings.
    """
    if input_patch_size is None and output_patch_size is None:
        raise ChunkflowError("give --output-patch-size (-z) or --input-patch-size")
    if input_patch_size is None:
        input_patch_size = output_patch_size
    grid = PatchGrid.create(
        input_patch_size, output_patch_size, output_patch_overlap, output_crop_margin
    )
    if dtype not in OUTPUT_DTYPES:
        raise ChunkflowError(f"--dtype {dtype}: expected one of {', '.join(OUTPUT_DTYPES)}")
    max_mip = mip if max_mip is None else max_mip
    if max_mip < mip:
        raise ChunkflowError(f"--max-mip {max_mip} is below --mip {mip}")
    if thumbnail_mip is not None and thumbnail_mip <= mip:
        raise ChunkflowError(f"--thumbnail-mip {thumbnail_mip} must be above --mip {mip}")
    if shard_bytes is not None and shard_bytes < 1:
        raise ChunkflowError(f"--shard-bytes {shard_bytes} must be positive")
    if max_ram_gb <= 0 or safety_factor < 1:
        raise ChunkflowError(
            f"--max-ram-size {max_ram_gb} must be positive and --safety-factor {safety_factor} "
            "at least 1"
        )
    top = max(max_mip, thumbnail_mip if thumbnail_mip is not None else mip)
    down = factor_power(top - mip)
    p_in, p_out, stride = grid.input_patch_size, grid.output_patch_size, grid.stride
    crop, expand = grid.output_crop_margin, grid.patch_crop_margin + grid.output_crop_margin
    forced_block = Cartesian(block_size) if block_size is not None else None
    if forced_block is not None and min(forced_block) <= 0:
        raise ChunkflowError(f"--block-size {_vec(forced_block)} must be positive")

    if region.is_empty:
        raise ChunkflowError(
            f"the region {region} at mip {mip} is empty: the input volume is smaller than one "
            f"input patch plus the output crop margin ({_vec(p_in + crop * 2)})"
        )
    start = region.start.ceildiv(down) * down
    avail = region.stop - start

    out_itemsize = OUTPUT_DTYPES[dtype]
    budget = max_ram_gb * GB
    candidates = []
    for i in range(3):
        divisor = down[i] if forced_block is None else _lcm(down[i], forced_block[i])
        offset = p_out[i] - 2 * crop[i]  # S(n) = stride (n - 1) + offset
        if offset % math.gcd(stride[i], divisor):
            raise ChunkflowError(
                f"--output-crop-margin {_vec(crop)}: along {AXES[i]} the task size "
                f"{stride[i]}·(n-1) + {p_out[i]} - 2·{crop[i]} is never divisible by "
                f"{divisor} ({_divisor_reason(i, down, forced_block, top, mip)}); choose a "
                f"crop margin with {p_out[i]} - 2·margin divisible by "
                f"{math.gcd(stride[i], divisor)}"
            )
        n = 1
        while stride[i] * (n - 1) + offset <= 0:
            n += 1
        values = []
        smallest = None
        while n <= MAX_PATCH_NUM:
            size = stride[i] * (n - 1) + offset
            if size % divisor == 0:
                smallest = smallest or (n, size)
                if size > avail[i]:
                    break
                values.append(n)
            n += 1
        if not values and smallest is None:
            raise ChunkflowError(
                f"no task size along {AXES[i]} up to {MAX_PATCH_NUM} patches is divisible by "
                f"{divisor} ({_divisor_reason(i, down, forced_block, top, mip)})"
            )
        if not values:
            n_min, size = smallest
            why = (
                f", divisible by {divisor}: {_divisor_reason(i, down, forced_block, top, mip)}"
                if divisor > 1
                else ""
            )
            raise ChunkflowError(
                f"the region is too small along {AXES[i]} for one task: the smallest task there "
                f"is {size} voxels ({n_min} patches{why}; its cutout {size + 2 * expand[i]} "
                f"with the margin {expand[i]} each side), but the region {region} at mip {mip} "
                f"leaves {max(avail[i], 0)}"
                + (f" from {start[i]}, a multiple of {down[i]}" if down[i] > 1 else "")
            )
        if forced_block is None:
            good = [
                n
                for n in values
                if 2 * default_block(_task(stride, offset, i, n), DEFAULT_BLOCK_TARGET[i])
                >= min(_task(stride, offset, i, n), DEFAULT_BLOCK_TARGET[i])
            ]
            values = good or values
        candidates.append(values)

    def sizes(i, n):
        return (
            stride[i] * (n - 1) + p_in[i],
            stride[i] * (n - 1) + p_out[i],
            stride[i] * (n - 1) + p_out[i] - 2 * crop[i],
        )

    def utility(i, n):
        s_size = sizes(i, n)[2]
        efficiency = s_size / (n * p_out[i])
        coverage = (avail[i] // s_size) * s_size / (region.shape[i])
        return efficiency * coverage

    a_in = 2 * input_itemsize + 4 * num_input_channels
    a_region = num_output_channels * out_itemsize + 4
    a_out = 2 * num_output_channels * out_itemsize

    def memory(nz, ny, nx):
        (iz, rz, sz), (iy, ry, sy), (ix, rx, sx) = sizes(0, nz), sizes(1, ny), sizes(2, nx)
        return iz * iy * ix * a_in + rz * ry * rx * a_region + sz * sy * sx * a_out

    def fits(nz, ny, nx):
        return memory(nz, ny, nx) * safety_factor <= budget

    zs, ys, xs = candidates
    ux = [utility(2, n) for n in xs]
    best_prefix = []  # index of the best x utility among xs[: k + 1]
    for k, u in enumerate(ux):
        best_prefix.append(k if not best_prefix or u > ux[best_prefix[-1]] else best_prefix[-1])

    best = None
    for nz in zs:
        if not fits(nz, ys[0], xs[0]):
            break
        uz = utility(0, nz)
        for ny in ys:
            if not fits(nz, ny, xs[0]):
                break
            # memory grows with nx: the last x that fits, by bisection
            count = bisect_right(
                range(len(xs)), False, key=lambda k, nz=nz, ny=ny: not fits(nz, ny, xs[k])
            )
            k = best_prefix[count - 1]
            score = uz * utility(1, ny) * ux[k]
            key = (round(score, 12), -memory(nz, ny, xs[k]))
            if best is None or key > best[0]:
                best = (key, Cartesian(nz, ny, xs[k]))
    if best is None:
        n = Cartesian(zs[0], ys[0], xs[0])
        need = memory(*n) * safety_factor / GB
        raise ChunkflowError(
            f"--max-ram-size {max_ram_gb:g} GB is too small: the smallest task ({_vec(n)} "
            f"patches, input chunk {_vec(Cartesian(*(sizes(i, n[i])[0] for i in range(3))))}) "
            f"needs {need:.3g} GB with the safety factor {safety_factor:g}"
        )
    patch_num = best[1]
    input_chunk = Cartesian(*(sizes(i, patch_num[i])[0] for i in range(3)))
    patch_region = Cartesian(*(sizes(i, patch_num[i])[1] for i in range(3)))
    output_chunk = Cartesian(*(sizes(i, patch_num[i])[2] for i in range(3)))
    assert input_chunk == grid.chunk_size_for(patch_num)
    assert input_chunk == output_chunk + expand * 2
    grid_size = avail // output_chunk
    output_region = BoundingBox.from_delta(start, grid_size * output_chunk)

    if forced_block is not None:
        block = forced_block
    else:
        block = Cartesian(
            *(default_block(output_chunk[i], DEFAULT_BLOCK_TARGET[i]) for i in range(3))
        )
    block_sizes = _block_sizes(block, output_chunk, mip, max_mip)
    thumbnail_blocks = (
        _block_sizes(block, output_chunk, mip, thumbnail_mip) if thumbnail_mip is not None else ()
    )
    efficiency = output_chunk.prod / (patch_num.prod * p_out.prod)
    return SetupPlan(
        mip=mip,
        max_mip=max_mip,
        thumbnail_mip=thumbnail_mip,
        input_patch_size=p_in,
        output_patch_size=p_out,
        output_patch_overlap=grid.output_patch_overlap,
        output_crop_margin=crop,
        patch_crop_margin=grid.patch_crop_margin,
        patch_num=patch_num,
        input_chunk_size=input_chunk,
        patch_region_size=patch_region,
        output_chunk_size=output_chunk,
        expand_margin_size=expand,
        downsample_factor=down,
        requested_region=region,
        output_region=output_region,
        grid_size=grid_size,
        block_size=block,
        block_sizes=block_sizes,
        thumbnail_block_sizes=thumbnail_blocks,
        num_input_channels=num_input_channels,
        num_output_channels=num_output_channels,
        dtype=dtype,
        input_itemsize=input_itemsize,
        memory_bytes=memory(*patch_num),
        safety_factor=safety_factor,
        max_ram_bytes=int(budget),
        efficiency=efficiency,
        coverage=output_region.voxel_count / region.voxel_count,
        voxel_size=Cartesian(voxel_size),
        shard_bytes=shard_bytes,
    )


def _task(stride, offset, i, n) -> int:
    return stride[i] * (n - 1) + offset


def _divisor_reason(i, down, forced_block, top, mip) -> str:
    reasons = []
    if down[i] > 1:
        reasons.append(f"2^({top}-{mip}) = {down[i]} to downsample from --mip to mip {top}")
    if forced_block is not None and forced_block[i] > 1:
        reasons.append(f"--block-size {forced_block[i]}")
    return " and ".join(reasons) or "1"


def _block_sizes(block: Cartesian, chunk: Cartesian, mip: int, top: int) -> tuple:
    """Storage blocks of mips 0..top: `block` up to `mip`; above, a divisor of the task size at
    that mip so that downsampled tasks are aligned too."""
    blocks = []
    for level in range(top + 1):
        if level <= mip:
            blocks.append(block)
            continue
        scaled = chunk // factor_power(level - mip)
        blocks.append(Cartesian(*(math.gcd(b, c) for b, c in zip(block, scaled))))
    return tuple(blocks)


# ---------------------------------------------------------------------------------------------
# the region


def region_at_mip(start, stop=None, size=None, mip: int = 0) -> BoundingBox:
    """The output region from --volume-start with --volume-stop or --volume-size (mip 0)."""
    if start is None or (stop is None) == (size is None):
        raise ChunkflowError(
            "the region needs --volume-start with --volume-stop or --volume-size, "
            "or an input volume (-i/--input-layer-path)"
        )
    start = Cartesian(start)
    stop = Cartesian(stop) if stop is not None else start + Cartesian(size)
    factor = factor_power(mip)
    for name, vector in (("--volume-start", start), ("the region stop", stop)):
        if any(vector % factor):
            raise ChunkflowError(
                f"{name} {_vec(vector)} (mip 0) is not divisible by {_vec(factor)}, the factor "
                f"of mip {mip}"
            )
    region = BoundingBox(start // factor, stop // factor)
    if region.is_empty:
        raise ChunkflowError(f"the region {BoundingBox(start, stop)} is empty")
    return region


@dataclass(frozen=True)
class InputInfo:
    bounds: BoundingBox  # at the mip
    voxel_size: Cartesian  # at mip 0
    voxel_size_at_mip: Cartesian
    itemsize: int
    num_channels: int


def read_input(path: str, mip: int) -> InputInfo:
    import numpy as np

    from chunkflow.io.precomputed import open_volume

    vol = open_volume(path, mip)
    bounds = vol.bounds
    return InputInfo(
        bounds=BoundingBox(Cartesian.from_xyz(bounds.minpt), Cartesian.from_xyz(bounds.maxpt)),
        voxel_size=Cartesian.from_xyz([round(v) for v in vol.info["scales"][0]["resolution"]]),
        voxel_size_at_mip=Cartesian.from_xyz([round(v) for v in vol.resolution]),
        itemsize=np.dtype(vol.dtype).itemsize,
        num_channels=int(vol.num_channels),
    )


# ---------------------------------------------------------------------------------------------
# layers


def expected_scales(plan: SetupPlan, encoding: str, thumbnail: bool = False) -> list[dict]:
    """The scales (cloud-volume x, y, z) of the output layer, or of its thumbnail layer; a
    sharded plan's scales are sharded in shards that tile the task at their mip."""
    from chunkflow.io.shards import add_sharding

    top = plan.thumbnail_mip if thumbnail else plan.max_mip
    blocks = plan.thumbnail_block_sizes if thumbnail else plan.block_sizes
    voxel_bytes = 1 if thumbnail else OUTPUT_DTYPES[plan.dtype] * plan.num_output_channels
    scales = []
    for level in range(top + 1):
        factor = factor_power(level)
        scale = {
            "resolution": list((plan.voxel_size * factor).xyz),
            "voxel_offset": list((plan.mip0_offset // factor).xyz),
            "size": list(plan.mip0_size.ceildiv(factor).xyz),
            "chunk_sizes": [list(blocks[level].xyz)],
            "encoding": "raw" if thumbnail else encoding,
        }
        if plan.sharded:
            add_sharding(scale, voxel_bytes, plan.shard_bytes, tile=plan.task_size_at(level))
        scales.append(scale)
    return scales


def shard_shapes(plan: SetupPlan, thumbnail: bool = False) -> tuple:
    """The shard shape (z, y, x voxels) of each mip of the output (or thumbnail) layer; empty
    for an unsharded plan."""
    from chunkflow.io.shards import shard_shape

    if not plan.sharded:
        return ()
    return tuple(
        shard_shape(
            scale["sharding"],
            Cartesian.from_xyz(scale["size"]),
            Cartesian.from_xyz(scale["chunk_sizes"][0]),
        )
        for scale in expected_scales(plan, "raw", thumbnail)
    )


def create_layers(
    plan: SetupPlan,
    output_path: str,
    encoding: str = "raw",
    thumbnail_path: str | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write the info of the output layer (and thumbnail layer). Returns what was done, one
    line per layer. An existing info is kept when it matches, else an error unless
    `overwrite`."""
    from chunkflow.chunk import LayerType

    if plan.dtype != "float32" and encoding == "fpzip":
        raise ChunkflowError(f"--encoding fpzip stores float32, not {plan.dtype}")
    if encoding in INTEGER_ENCODINGS:
        raise ChunkflowError(
            f"--encoding {encoding} cannot store the {plan.dtype} output map; use raw or fpzip"
        )
    layer_type = (
        LayerType.AFFINITY_MAP if plan.num_output_channels == 3 else LayerType.PROBABILITY_MAP
    )
    done = [
        _create_layer(
            output_path,
            plan,
            plan.dtype,
            plan.num_output_channels,
            layer_type,
            encoding,
            plan.max_mip,
            plan.block_sizes,
            expected_scales(plan, encoding),
            overwrite,
        )
    ]
    if thumbnail_path is not None:
        if plan.thumbnail_mip is None:
            raise ChunkflowError("a thumbnail layer needs a thumbnail mip")
        done.append(
            _create_layer(
                thumbnail_path,
                plan,
                "uint8",
                1,
                LayerType.IMAGE,
                "raw",
                plan.thumbnail_mip,
                plan.thumbnail_block_sizes,
                expected_scales(plan, encoding, thumbnail=True),
                overwrite,
            )
        )
    return done


def _create_layer(
    path, plan, dtype, channels, layer_type, encoding, top, blocks, scales, overwrite
) -> str:
    from chunkflow.io.precomputed import create_info, open_volume, volume_exists

    if volume_exists(path) and not overwrite:
        info = open_volume(path, 0).info
        problem = _info_difference(info, dtype, channels, scales)
        if problem:
            raise ChunkflowError(
                f"{path}: an info exists and differs ({problem}); use --overwrite-info to "
                "replace it"
            )
        return f"{path}: kept the existing info (it matches)"
    create_info(
        path,
        plan.mip0_size,
        plan.voxel_size,
        plan.mip0_offset,
        dtype,
        channels,
        layer_type,
        blocks[0],
        encoding,
        top,
        FACTOR,
    )
    vol = open_volume(path, 0, write=True)
    for level, block in enumerate(blocks):
        vol.info["scales"][level]["chunk_sizes"] = [list(block.xyz)]
        if "sharding" in scales[level]:
            vol.info["scales"][level]["sharding"] = scales[level]["sharding"]
    vol.commit_info()
    problem = _info_difference(vol.info, dtype, channels, scales)
    if problem:  # cloud-volume computed other scales than we did: a bug, not bad input
        raise ChunkflowError(f"{path}: the info written differs from the plan ({problem})")
    sharded = ", sharded" if plan.sharded else ""
    return f"{path}: created the info ({dtype}, {channels} channel(s), mips 0-{top}{sharded})"


def _info_difference(info: dict, dtype, channels, scales) -> str | None:
    if str(info.get("data_type")) != str(dtype):
        return f"data type {info.get('data_type')}, expected {dtype}"
    if int(info.get("num_channels", 0)) != channels:
        return f"{info.get('num_channels')} channels, expected {channels}"
    found = info.get("scales", [])
    if len(found) < len(scales):
        return f"{len(found)} scales, expected {len(scales)}"
    for level, (have, want) in enumerate(zip(found, scales)):
        if ("sharding" in have) != ("sharding" in want):
            return (
                f"mip {level} is {'sharded' if 'sharding' in have else 'unsharded'}, expected "
                f"{'sharded' if 'sharding' in want else 'unsharded'}"
            )
        for key, value in want.items():
            got = have.get(key)
            if key == "resolution":
                same = [float(v) for v in got] == [float(v) for v in value]
            else:
                same = got == value
            if not same:
                return f"mip {level} {key} {got}, expected {value}"
    return None


# ---------------------------------------------------------------------------------------------
# the worker command


def worker_command(
    plan: SetupPlan,
    input_path: str | None,
    output_path: str,
    queue_name: str | None = None,
    task_file: str | None = None,
    thumbnail_path: str | None = None,
    framework: str = "universal",
    convnet_model: str | None = None,
    convnet_weight_path: str | None = None,
    visibility_timeout: int | None = None,
    endpoint_url: str | None = None,
    s3_endpoint: str | None = None,
) -> str:
    """The `chunkflow` command line a worker runs: fetch a task, cut out its input grown by the
    expand margin, infer exactly `patch_num` patches, save the task bbox, downsample it.
    `s3_endpoint` is the S3-compatible server the worker's s3:// paths go to."""
    q = shlex.quote
    words = ["chunkflow"]
    if s3_endpoint:
        words += ["--s3-endpoint", q(s3_endpoint)]
    words += ["--mip", str(plan.mip)]
    if queue_name:
        words += ["fetch-task", "-q", q(queue_name)]
        if visibility_timeout:
            words += ["--visibility-timeout", str(visibility_timeout)]
        if endpoint_url:
            words += ["--endpoint-url", q(endpoint_url)]
    elif task_file:
        words += ["fetch-task-from-file", "-f", q(task_file)]
    else:
        words += [
            "generate-tasks",
            "--roi-start",
            _vec(plan.output_region.start),
            "--roi-size",
            _vec(plan.output_region.shape),
            "--chunk-size",
            _vec(plan.output_chunk_size),
        ]
    words += ["cutout", "-v", q(input_path or "INPUT_LAYER_PATH")]
    words += ["--expand-margin-size", _vec(plan.expand_margin_size)]
    words += ["inference", "--framework", framework]
    if framework != "identity":
        words += ["--convnet-model", q(convnet_model or "MODEL_PATH")]
        if convnet_weight_path or not convnet_model:
            words += ["--convnet-weight-path", q(convnet_weight_path or "WEIGHT_PATH")]
    words += [
        "--input-patch-size",
        _vec(plan.input_patch_size),
        "--output-patch-size",
        _vec(plan.output_patch_size),
        "--output-patch-overlap",
        _vec(plan.output_patch_overlap),
        "--output-crop-margin",
        _vec(plan.output_crop_margin),
        "--patch-num",
        _vec(plan.patch_num),
        "--num-input-channels",
        str(plan.num_input_channels),
        "--num-output-channels",
        str(plan.num_output_channels),
    ]
    if plan.dtype != "float32":
        words += ["--dtype", plan.dtype]
    words += ["save", "-v", q(output_path)]
    if plan.max_mip > plan.mip:
        words += ["downsample-upload", "-v", q(output_path)]
        words += ["--start-mip", str(plan.mip + 1), "--stop-mip", str(plan.max_mip + 1)]
    if thumbnail_path and plan.thumbnail_mip is not None:
        words += ["quantize"]
        if plan.num_output_channels not in (1, 3):
            words += ["--mode", "mean"]
        words += ["-o", "thumbnail", "downsample-upload", "-i", "thumbnail", "-v"]
        words += [q(thumbnail_path), "--start-mip", str(plan.thumbnail_mip)]
        words += ["--stop-mip", str(plan.thumbnail_mip + 1)]
    if queue_name:
        words += ["delete-task-in-queue"]
    return " ".join(words)
