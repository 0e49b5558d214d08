"""Plan a distributed ConvNet inference run: patch number, chunk sizes, memory, storage blocks.

Sizes are (z, y, x) voxels at the run's mip M. With the patch geometry of `PatchGrid` (input
patch P_in, output patch P, overlap o, stride s = P - o, patch crop margin m = (P_in - P) / 2)
and the output crop margin c, a task with n patches per axis has::

    input chunk   I(n) = s (n - 1) + P_in          what cutout reads (PatchGrid.chunk_size_for)
    patch region  R(n) = s (n - 1) + P             what the patches write (I - 2m)
    output chunk  S(n) = s (n - 1) + P - 2c        the task bbox, what save writes (R - 2c)
    expand margin E    = m + c                     what cutout grows the task by: I = S + 2E

`plan_environment` picks n by brute force over the valid values of each axis:

- S(n) > 0 and S(n) fits the region; in y and x S(n) is divisible by d = 2^(top - M), where
  top is `max_mip` (or the thumbnail mip if higher), so downsample-upload of every task works,
  and by the storage block when one is forced;
- the memory of one task, ``mem = I·(2·b_in + 4·c_in) + R·(C·b_out + 4) + 2·S·C·b_out`` bytes
  (the raw input and its float32 copy, the output buffer of C channels plus the float32 weight
  sum, two copies of the cropped output while it is saved), times the safety factor, must fit
  in `max_ram_gb`;
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

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property

from chunkflow.errors import ParameterError
from chunkflow.geometry import BoundingBox, Cartesian, grid_bboxes
from chunkflow.inference.grid import PatchGrid

GB = 1e9
FACTOR = Cartesian(1, 2, 2)  # downsampling factor between mips
DEFAULT_BLOCK_TARGET = Cartesian(64, 64, 64)
DEFAULT_VOXEL_SIZE = Cartesian(40, 4, 4)
MAX_PATCH_NUM = 1024  # per axis; far beyond any RAM budget of today
OUTPUT_DTYPES = {"float32": 4, "float16": 2}
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
    from chunkflow.image.downsample import factor_power as power

    return power(FACTOR, levels)


# ---------------------------------------------------------------------------------------------
# planning


def memory_bytes(
    input_chunk, patch_region, output_chunk, channels, out_itemsize, in_itemsize, in_channels
) -> int:
    """Estimated memory of one task (see the module doc)."""
    a_in, a_region, a_out = _coefficients(channels, out_itemsize, in_itemsize, in_channels)
    return int(
        Cartesian(input_chunk).prod * a_in
        + Cartesian(patch_region).prod * a_region
        + Cartesian(output_chunk).prod * a_out
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


def patch_grid(input_patch_size, output_patch_size, output_patch_overlap, output_crop_margin):
    """The patch grid of a task (without its patch number); either patch size may be None."""
    if input_patch_size is None and output_patch_size is None:
        raise ParameterError("give the patch size: `output_patch_size` or `input_patch_size`")
    if input_patch_size is None:
        input_patch_size = output_patch_size
    return PatchGrid.create(
        input_patch_size, output_patch_size, output_patch_overlap, output_crop_margin
    )


def _check_settings(
    dtype, mip, max_mip, thumbnail_mip, shard_bytes, max_ram_gb, safety_factor, block_size
) -> None:
    if dtype not in OUTPUT_DTYPES:
        raise ParameterError(f"`dtype` {dtype}: expected one of {', '.join(OUTPUT_DTYPES)}")
    if max_mip < mip:
        raise ParameterError(f"`max_mip` {max_mip} is below `mip` {mip}")
    if thumbnail_mip is not None and thumbnail_mip <= mip:
        raise ParameterError(f"`thumbnail_mip` {thumbnail_mip} must be above `mip` {mip}")
    if shard_bytes is not None and shard_bytes < 1:
        raise ParameterError(f"`shard_bytes` {shard_bytes} must be positive")
    if max_ram_gb <= 0 or safety_factor < 1:
        raise ParameterError(
            f"`max_ram_gb` {max_ram_gb} must be positive and `safety_factor` {safety_factor} "
            "at least 1"
        )
    if block_size is not None and min(block_size) <= 0:
        raise ParameterError(f"`block_size` {_vec(block_size)} must be positive")


@dataclass(frozen=True)
class _Search:
    """The search for the patch number of a task (see the module doc): n per axis."""

    grid: PatchGrid
    region: BoundingBox
    mip: int
    top: int  # the highest mip tasks are downsampled to
    forced_block: Cartesian | None
    coefficients: tuple  # bytes per voxel of the input chunk, the patch region, the output
    safety_factor: float
    budget: float  # bytes

    @cached_property
    def down(self) -> Cartesian:
        return factor_power(self.top - self.mip)

    @cached_property
    def start(self) -> Cartesian:
        return self.region.start.ceildiv(self.down) * self.down

    @cached_property
    def avail(self) -> Cartesian:
        return self.region.stop - self.start

    def sizes(self, i: int, n: int) -> tuple[int, int, int]:
        """Input chunk, patch region and output chunk of n patches along axis i."""
        g = self.grid
        base = g.stride[i] * (n - 1)
        out = base + g.output_patch_size[i]
        return base + g.input_patch_size[i], out, out - 2 * g.output_crop_margin[i]

    def size_of(self, n, which: int) -> Cartesian:
        return Cartesian(*(self.sizes(i, n[i])[which] for i in range(3)))

    def utility(self, i: int, n: int) -> float:
        """Efficiency times coverage along axis i."""
        size = self.sizes(i, n)[2]
        efficiency = size / (n * self.grid.output_patch_size[i])
        coverage = (self.avail[i] // size) * size / self.region.shape[i]
        return efficiency * coverage

    def memory(self, n) -> int:
        a_in, a_region, a_out = self.coefficients
        (iz, rz, sz), (iy, ry, sy), (ix, rx, sx) = (self.sizes(i, n[i]) for i in range(3))
        return iz * iy * ix * a_in + rz * ry * rx * a_region + sz * sy * sx * a_out

    def fits(self, n) -> bool:
        return self.memory(n) * self.safety_factor <= self.budget

    def divisor(self, i: int) -> int:
        """What the output chunk along axis i must be divisible by."""
        if self.forced_block is None:
            return self.down[i]
        return _lcm(self.down[i], self.forced_block[i])

    def candidates(self, i: int) -> list[int]:
        """The valid patch numbers along axis i, smallest first."""
        stride, divisor = self.grid.stride[i], self.divisor(i)
        offset = self.sizes(i, 1)[2]  # S(n) = stride (n - 1) + offset
        if offset % math.gcd(stride, divisor):
            raise self._never_divisible(i)
        n = 1
        while stride * (n - 1) + offset <= 0:
            n += 1
        values, smallest = [], None
        while n <= MAX_PATCH_NUM:
            size = stride * (n - 1) + offset
            if size % divisor == 0:
                smallest = smallest or (n, size)
                if size > self.avail[i]:
                    break
                values.append(n)
            n += 1
        if not values:
            raise self._too_small(i, smallest)
        if self.forced_block is None:  # prefer tasks whose default block is not tiny
            target = DEFAULT_BLOCK_TARGET[i]
            sizes = {n: self.sizes(i, n)[2] for n in values}
            good = [
                n for n in values if 2 * default_block(sizes[n], target) >= min(sizes[n], target)
            ]
            values = good or values
        return values

    def best(self) -> Cartesian:
        """The patch numbers of the best utility whose task fits in memory."""
        zs, ys, xs = (self.candidates(i) for i in range(3))
        ux = [self.utility(2, n) for n in xs]
        best_prefix = []  # index of the best x utility among xs[: k + 1]
        for k, u in enumerate(ux):
            best_prefix.append(k if not best_prefix or u > ux[best_prefix[-1]] else best_prefix[-1])
        best = None
        for nz in zs:
            if not self.fits((nz, ys[0], xs[0])):
                break
            for ny in ys:
                if not self.fits((nz, ny, xs[0])):
                    break
                # memory grows with nx: the last x that fits, by bisection
                count = bisect_right(
                    range(len(xs)),
                    False,
                    key=lambda k, nz=nz, ny=ny: not self.fits((nz, ny, xs[k])),
                )
                n = Cartesian(nz, ny, xs[best_prefix[count - 1]])
                score = self.utility(0, nz) * self.utility(1, ny) * ux[best_prefix[count - 1]]
                key = (round(score, 12), -self.memory(n))
                if best is None or key > best[0]:
                    best = (key, n)
        if best is None:
            raise self._too_little_memory(Cartesian(zs[0], ys[0], xs[0]))
        return best[1]

    # the errors, naming the parameters at fault

    def _reason(self, i: int) -> str:
        reasons = []
        if self.down[i] > 1:
            reasons.append(
                f"2^({self.top}-{self.mip}) = {self.down[i]} to downsample from `mip` to mip "
                f"{self.top}"
            )
        if self.forced_block is not None and self.forced_block[i] > 1:
            reasons.append(f"`block_size` {self.forced_block[i]}")
        return " and ".join(reasons) or "1"

    def _never_divisible(self, i: int) -> ParameterError:
        stride, divisor = self.grid.stride[i], self.divisor(i)
        p_out, crop = self.grid.output_patch_size, self.grid.output_crop_margin
        return ParameterError(
            f"`output_crop_margin` {_vec(crop)}: along {AXES[i]} the task size "
            f"{stride}·(n-1) + {p_out[i]} - 2·{crop[i]} is never divisible by "
            f"{divisor} ({self._reason(i)}); choose a crop margin with {p_out[i]} - 2·margin "
            f"divisible by {math.gcd(stride, divisor)}"
        )

    def _too_small(self, i: int, smallest) -> ParameterError:
        divisor = self.divisor(i)
        if smallest is None:
            return ParameterError(
                f"no task size along {AXES[i]} up to {MAX_PATCH_NUM} patches is divisible by "
                f"{divisor} ({self._reason(i)})"
            )
        n_min, size = smallest
        why = f", divisible by {divisor}: {self._reason(i)}" if divisor > 1 else ""
        expand = self.grid.read_margin[i]
        down, start = self.down[i], self.start[i]
        return ParameterError(
            f"the region is too small along {AXES[i]} for one task: the smallest task there "
            f"is {size} voxels ({n_min} patches{why}; its cutout {size + 2 * expand} with the "
            f"margin {expand} each side), but the region {self.region} at mip {self.mip} leaves "
            f"{max(self.avail[i], 0)}"
            + (f" from {start}, a multiple of {down}" if down > 1 else "")
        )

    def _too_little_memory(self, n: Cartesian) -> ParameterError:
        need = self.memory(n) * self.safety_factor / GB
        return ParameterError(
            f"`max_ram_gb` {self.budget / GB:g} GB is too small: the smallest task ({_vec(n)} "
            f"patches, input chunk {_vec(self.size_of(n, 0))}) needs {need:.3g} GB with the "
            f"safety factor {self.safety_factor:g}"
        )


def _coefficients(channels, out_itemsize, in_itemsize, in_channels) -> tuple[int, int, int]:
    """Bytes per voxel of the input chunk, the patch region and the output chunk."""
    return (
        2 * in_itemsize + 4 * in_channels,
        channels * out_itemsize + 4,
        2 * channels * out_itemsize,
    )


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
    uncompressed bytes that tile the tasks. Raises a one-line `ParameterError` for impossible
    settings.
    """
    grid = patch_grid(input_patch_size, output_patch_size, output_patch_overlap, output_crop_margin)
    max_mip = mip if max_mip is None else max_mip
    _check_settings(
        dtype, mip, max_mip, thumbnail_mip, shard_bytes, max_ram_gb, safety_factor, block_size
    )
    if region.is_empty:
        raise ParameterError(
            f"the region {region} at mip {mip} is empty: the input volume is smaller than one "
            "input patch plus the output crop margin "
            f"({_vec(grid.input_patch_size + grid.output_crop_margin * 2)})"
        )
    search = _Search(
        grid,
        region,
        mip,
        max(max_mip, thumbnail_mip if thumbnail_mip is not None else mip),
        Cartesian(block_size) if block_size is not None else None,
        _coefficients(
            num_output_channels, OUTPUT_DTYPES[dtype], input_itemsize, num_input_channels
        ),
        safety_factor,
        max_ram_gb * GB,
    )
    layers = dict(max_mip=max_mip, thumbnail_mip=thumbnail_mip, dtype=dtype)
    layers.update(num_input_channels=num_input_channels, input_itemsize=input_itemsize)
    layers.update(num_output_channels=num_output_channels, shard_bytes=shard_bytes)
    return _plan(search, search.best(), Cartesian(voxel_size), max_ram_gb, **layers)


def _plan(search: _Search, patch_num: Cartesian, voxel_size, max_ram_gb, **layers) -> SetupPlan:
    """The plan of tasks of `patch_num` patches."""
    grid, mip = search.grid, search.mip
    input_chunk, output_chunk = search.size_of(patch_num, 0), search.size_of(patch_num, 2)
    expand = grid.read_margin
    assert input_chunk == grid.chunk_size_for(patch_num)
    assert input_chunk == output_chunk + expand * 2
    grid_size = search.avail // output_chunk
    output_region = BoundingBox.from_delta(search.start, grid_size * output_chunk)
    block = search.forced_block or Cartesian(
        *(default_block(output_chunk[i], DEFAULT_BLOCK_TARGET[i]) for i in range(3))
    )
    thumbnail_mip = layers["thumbnail_mip"]
    return SetupPlan(
        mip=mip,
        input_patch_size=grid.input_patch_size,
        output_patch_size=grid.output_patch_size,
        output_patch_overlap=grid.output_patch_overlap,
        output_crop_margin=grid.output_crop_margin,
        patch_crop_margin=grid.patch_crop_margin,
        patch_num=patch_num,
        input_chunk_size=input_chunk,
        patch_region_size=search.size_of(patch_num, 1),
        output_chunk_size=output_chunk,
        expand_margin_size=expand,
        downsample_factor=search.down,
        requested_region=search.region,
        output_region=output_region,
        grid_size=grid_size,
        block_size=block,
        block_sizes=_block_sizes(block, output_chunk, mip, layers["max_mip"]),
        thumbnail_block_sizes=(
            _block_sizes(block, output_chunk, mip, thumbnail_mip)
            if thumbnail_mip is not None
            else ()
        ),
        memory_bytes=search.memory(patch_num),
        safety_factor=search.safety_factor,
        max_ram_bytes=int(max_ram_gb * GB),
        efficiency=output_chunk.prod / (patch_num.prod * grid.output_patch_size.prod),
        coverage=output_region.voxel_count / search.region.voxel_count,
        voxel_size=voxel_size,
        **layers,
    )


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
