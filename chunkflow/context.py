"""Context negotiation: what an operator needs upstream, and how readers provide it.

After gunpowder's request pass. An operator that needs voxels around the box it outputs (an
elastic warp, affinities reaching one voxel back, a grown boundary, a valid convolution)
declares a `Context`: the chunk names it reads and writes, and `grow`, which maps the box its
outputs must cover to the box its inputs must cover. Before a chain runs, `plan` walks it
backwards and composes, per chunk name, the function from the box a reader would read (its
cutout or the task box, the *base* box) to the box it must read so that every operator
downstream gets real data for its whole output. Readers read that grown box, clipped to
their data; an operator whose input still falls short (the data ends there) pads it with the
mode the user chose (`pad`: zero, reflect, edge) or refuses with one line naming the chunk,
the box it needs and the box the data covers.

The terms follow daisy: the grown box is the *read* box, the box an operator outputs is its
*write* box. Boxes are in voxels of the chunk; chunks of different voxel sizes combine by world
coordinates (`align`).

Nothing here knows the command line: the chain engine (`chunkflow.cli.framework`) calls
`plan` and hands each stage its `Request`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from chunkflow.chunk import Chunk, check_same_grid
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian

__all__ = [
    "PAD_MODES",
    "Context",
    "Request",
    "plan",
    "pad",
    "cover",
    "align",
    "grow_by",
    "elastic_margin",
    "random_box",
    "read_with_context",
]

PAD_MODES = ("zero", "reflect", "edge")

Grow = Callable[[BoundingBox], BoundingBox]


def _same(box: BoundingBox) -> BoundingBox:
    return box


@dataclass(frozen=True)
class Context:
    """What one operator reads and writes, and the context it needs.

    Args:
        inputs: chunk names it reads (all of them get the union of what the outputs need,
            grown by `grow`: chunks transformed together must cover the same voxels).
        outputs: chunk names it writes.
        grow: box the outputs must cover -> box the inputs must cover (identity: a voxel-wise
            operator, which passes the requests of its outputs on to its inputs).
        base: base box of the outputs from the base box of the inputs (identity, unless the
            operator chooses its own output box, e.g. `elastic-augment --output-size`).
        fills: the operator fills in what its inputs lack (`pad`): readers before it read what
            the data has of the context, and a task source need not keep that inside the data.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    grow: Grow = _same
    base: Grow = _same
    fills: bool = False


def grow_by(neg: Iterable[int] | int, pos: Iterable[int] | int) -> Grow:
    """A `grow` that adds `neg` voxels below and `pos` voxels above every axis (z, y, x);
    a number stands for the same on all three axes."""
    neg, pos = (Cartesian(v) if isinstance(v, Iterable) else Cartesian(v, v, v) for v in (neg, pos))
    if min(neg) < 0 or min(pos) < 0:
        raise ChunkflowError(f"context margins must be >= 0, got {tuple(neg)} and {tuple(pos)}")

    def grow(box: BoundingBox) -> BoundingBox:
        return BoundingBox(box.start - neg, box.stop + pos)

    return grow


@dataclass
class Request:
    """What a stage learns from the plan: for each chunk name it reads (a reader: writes),
    the function from a base box to the box it must cover.

    `needs[name](base)` is the box a chunk called `name` must cover at this point of the chain,
    when its base box is `base`. A name nobody downstream asks context for maps to its base.
    """

    needs: dict[str, Grow] = field(default_factory=dict)
    # the same for the chunks that readers further down read (what a task source must fit)
    reads: dict[str, Grow] = field(default_factory=dict)

    def box(self, name: str, base: BoundingBox) -> BoundingBox:
        """The box chunk `name` must cover, given its base box."""
        return self.needs.get(name, _same)(base)

    def asks(self, name: str) -> bool:
        """Whether anything downstream needs more than the base box of `name`."""
        return name in self.needs


def plan(contexts: Sequence[Context | None]) -> list[Request]:
    """Walk a chain backwards and give each stage its `Request`.

    `contexts[k]` is the `Context` of stage k, or None for a stage that declares none (its
    inputs are unknown: requests pass it unchanged, so an operator after it that needs context
    finds its input short and pads or refuses). The Request of stage k holds, for every chunk
    name its outputs carry (readers: the chunk they read), the composed function from the
    base box to the box it must cover there; and, for the chunks readers after it read, the
    box they must find in the data (`reads`: what they read, less what a `pad` fills in).
    """
    needs: dict[str, Grow] = {}
    firm: dict[str, Grow] = {}  # the same, less what a filling operator (`pad`) provides
    reads: dict[str, Grow] = {}
    requests: list[Request] = [Request() for _ in contexts]
    for k in range(len(contexts) - 1, -1, -1):
        context = contexts[k]
        requests[k] = Request(dict(needs), dict(reads))
        if context is None:
            continue
        wanted = [needs.pop(name, _same) for name in context.outputs]
        wanted_firm = [firm.pop(name, _same) for name in context.outputs]
        if not context.inputs:  # a reader
            for name, want in zip(context.outputs, wanted_firm):
                reads[name] = want if name not in reads else _union(reads[name], want)
            continue
        need = _composed(wanted, context.grow, context.base)
        need_firm = _same if context.fills else _composed(wanted_firm, context.grow, context.base)
        for name in context.inputs:
            needs[name] = need if name not in needs else _union(needs[name], need)
            firm[name] = need_firm if name not in firm else _union(firm[name], need_firm)
    return requests


def _composed(wanted: list[Grow], grow: Grow, base: Grow) -> Grow:
    """base box of the inputs -> box the inputs must cover, from what the outputs need."""

    def need(box: BoundingBox) -> BoundingBox:
        inner = base(box)
        boxes = [w(inner) for w in wanted] or [inner]
        union = boxes[0]
        for other in boxes[1:]:
            union = union.union(other)
        return grow(union)

    return need


def _union(a: Grow, b: Grow) -> Grow:
    return lambda box: a(box).union(b(box))


def read_with_context(read, base, grown):
    """`read(box, clip)` of the base box grown by the context operators downstream need.

    The grown box is read clipped to the data (where it ends, those operators pad or refuse);
    the base box itself must lie inside the data, as a plain cutout must.
    """
    if grown is None or base.contains(grown):
        return read(base, False)
    grown = grown.union(base)  # what the user asked for, whatever the operators after need
    chunk = read(grown, True)
    if not chunk.bbox.contains(base):
        raise ChunkflowError(
            f"cutout {base} is outside the data, which covers only {chunk.bbox} of {grown}"
        )
    return chunk


# ---------------------------------------------------------------------------------------------
# where the data ends


def pad(chunk: Chunk, bbox: BoundingBox, mode: str = "zero") -> Chunk:
    """`chunk` extended (or cropped) to cover `bbox` exactly; new voxels by `mode`.

    zero: zeros; reflect: mirrored about the edge voxel (numpy 'reflect'); edge: the edge voxel
    repeated. The chunk must overlap `bbox`.
    """
    if mode not in PAD_MODES:
        raise ChunkflowError(f"pad mode must be one of {', '.join(PAD_MODES)}, got {mode!r}")
    if bbox.is_empty:
        raise ChunkflowError(f"cannot pad to the empty box {bbox}")
    inside = chunk.bbox.intersect(bbox)
    if inside.is_empty:
        raise ChunkflowError(f"the chunk {chunk.bbox} does not overlap the box {bbox}")
    array = np.asarray(chunk.crop(inside))
    before = inside.start - bbox.start
    after = bbox.stop - inside.stop
    widths = [(0, 0)] * (array.ndim - 3) + list(zip(before, after))
    if mode == "reflect":
        small = [n for n, (a, b) in zip(inside.shape, widths[-3:]) if (a or b) and n == 1]
        if small:  # numpy cannot reflect one voxel: it is its own mirror image
            mode = "edge"
    numpy_mode = {"zero": "constant", "reflect": "reflect", "edge": "edge"}[mode]
    if mode == "reflect":  # numpy reflects once per call; repeat for pads wider than the data
        out = array
        while any(a or b for a, b in widths):
            step = [(min(a, n - 1), min(b, n - 1)) for (a, b), n in zip(widths, out.shape)]
            out = np.pad(out, step, mode="reflect")
            widths = [(a - s, b - t) for (a, b), (s, t) in zip(widths, step)]
    else:
        out = np.pad(array, widths, mode=numpy_mode)
    return Chunk(out, bbox.start, chunk.voxel_size, chunk.layer_type)


def cover(chunk: Chunk, bbox: BoundingBox, mode: str | None, name: str, what: str = "it") -> Chunk:
    """`chunk` cropped to `bbox`, padded by `mode` where the data ends; with no mode a chunk
    that does not cover `bbox` is refused with one line naming it, the box and the data."""
    if chunk.bbox.contains(bbox):
        return chunk.crop(bbox)
    if mode is None:
        raise ChunkflowError(
            f"chunk {name!r} must cover {bbox} for the context of {what} but the data covers "
            f"only {chunk.bbox}: read less near the data's edge, or choose a pad mode "
            f"({', '.join(PAD_MODES)})"
        )
    if chunk.bbox.intersect(bbox).is_empty:
        raise ChunkflowError(
            f"chunk {name!r} must cover {bbox} for the context of {what} but the data, "
            f"{chunk.bbox}, does not even overlap it"
        )
    return pad(chunk, bbox, mode)


def real_voxels(chunk: Chunk, bbox: BoundingBox) -> np.ndarray:
    """bool (z, y, x) over `bbox`: True where `chunk` has data (not padding)."""
    known = np.zeros(tuple(bbox.shape), bool)
    inside = chunk.bbox.intersect(bbox)
    if not inside.is_empty:
        known[inside.shift(-bbox.start).to_slices()] = True
    return known


# ---------------------------------------------------------------------------------------------
# chunks with different boxes and voxel sizes


def world_box(chunk: Chunk) -> tuple[Cartesian, Cartesian]:
    """(start, stop) of the chunk in world units (voxels times the voxel size)."""
    size = chunk.voxel_size
    return chunk.voxel_offset * size, chunk.voxel_stop * size


def align(chunks: Mapping[str, Chunk], what: str = "it") -> dict[str, Chunk]:
    """Each chunk cropped to the world region all of them cover (gunpowder's ROIs).

    Chunks of equal voxel sizes are cropped to the intersection of their boxes; of different
    voxel sizes, to the largest world box inside the intersection that lies on every voxel
    grid. No overlap is one line naming the chunks and their world boxes.
    """
    if not chunks:
        return {}
    items = list(chunks.items())
    start, stop = world_box(items[0][1])
    for _, chunk in items[1:]:
        a, b = world_box(chunk)
        start, stop = start.maximum(a), stop.minimum(b)
    grid = items[0][1].voxel_size
    for _, chunk in items[1:]:
        grid = Cartesian(*(math.lcm(g, v) for g, v in zip(grid, chunk.voxel_size)))
    if any(b <= a for a, b in zip(start, stop)):
        boxes = "; ".join(
            f"{name!r} {_world_string(c)} (voxel size {','.join(map(str, c.voxel_size))})"
            for name, c in items
        )
        raise ChunkflowError(f"{what}: the chunks do not overlap in world coordinates: {boxes}")
    same = all(c.voxel_size == grid for _, c in items)
    if not same:  # shrink onto the common grid
        start, stop = start.ceildiv(grid) * grid, (stop // grid) * grid
        if any(b <= a for a, b in zip(start, stop)):
            raise ChunkflowError(
                f"{what}: the chunks overlap by less than one voxel of the coarsest grid "
                f"({','.join(map(str, grid))}) in world coordinates"
            )
    out = {}
    for name, chunk in items:
        box = BoundingBox(start / chunk.voxel_size, stop / chunk.voxel_size)
        out[name] = chunk if box == chunk.bbox else chunk.crop(box)
    return out


def _world_string(chunk: Chunk) -> str:
    a, b = world_box(chunk)
    return BoundingBox(a, b).string


# ---------------------------------------------------------------------------------------------
# elastic transforms and random locations


def elastic_margin(
    shape: Iterable[int],
    jitter_sigma: Sequence[float] = (0.0, 2.0, 2.0),
    rotation_interval: Sequence[float] = (0.0, math.pi / 2),
    max_misalign: int = 0,
    misaligns: bool = False,
    sigmas: float = 3.0,
) -> Cartesian:
    """Voxels an elastic transform of an output of `shape` reads beyond it on each side.

    The rotation (radians, in the yx plane about the centre) is bounded exactly over its
    interval; displacements by `sigmas` standard deviations (draws beyond are redrawn by the
    operator); a misalignment by two of its largest steps. One more voxel for linear
    interpolation, except along z without z displacement (sections map onto sections, so a
    single section, a 2D image, needs no other).
    """
    nz, ny, nx = Cartesian(shape)
    low, high = (float(a) for a in rotation_interval)
    angles = [low, high] + [
        k * math.pi / 2
        for k in range(math.floor(low / (math.pi / 2)), math.ceil(high / (math.pi / 2)) + 1)
        if low <= k * math.pi / 2 <= high
    ]
    angles += [
        a + k * math.pi / 2
        for k in range(-8, 9)
        for a in (math.atan2(nx, ny), math.atan2(ny, nx))
        if low <= a + k * math.pi / 2 <= high
    ]
    half_y, half_x = (ny - 1) / 2, (nx - 1) / 2
    reach_y = max(abs(math.cos(a)) * half_y + abs(math.sin(a)) * half_x for a in angles)
    reach_x = max(abs(math.sin(a)) * half_y + abs(math.cos(a)) * half_x for a in angles)
    jitter = [sigmas * float(s) for s in jitter_sigma]
    shift = 2 * max_misalign if misaligns else 0
    return Cartesian(
        math.ceil(jitter[0]) + (1 if jitter[0] > 0 else 0),  # whole sections without z jitter
        math.ceil(reach_y - half_y + jitter[1]) + shift + 1,
        math.ceil(reach_x - half_x + jitter[2]) + shift + 1,
    )


def random_box(
    bounds: BoundingBox,
    size: Iterable[int],
    rng: np.random.Generator,
    grow: Grow = _same,
    accept: Callable[[BoundingBox], bool] | None = None,
    tries: int = 100,
) -> BoundingBox:
    """A box of `size` at a uniformly random place where `grow(box)` lies inside `bounds`.

    `accept` may reject a box (a mask with too little foreground): then another is drawn, at
    most `tries` in all; the error names the bounds, the size and the context.
    """
    size = Cartesian(size)
    if min(size) <= 0:
        raise ChunkflowError(f"the box size {tuple(size)} must be positive")
    probe = BoundingBox.from_delta(bounds.start, size)
    grown = grow(probe)
    neg, pos = probe.start - grown.start, grown.stop - probe.stop
    low, high = bounds.start + neg, bounds.stop - pos - size
    if any(h < lo for lo, h in zip(low, high)):
        need = f"-{','.join(map(str, neg))} +{','.join(map(str, pos))}"
        raise ChunkflowError(
            f"no box of size {','.join(map(str, size))} with its context ({need}) fits in {bounds}"
        )
    for _ in range(max(1, tries)):
        start = Cartesian(*(int(rng.integers(lo, h + 1)) for lo, h in zip(low, high)))
        box = BoundingBox.from_delta(start, size)
        if accept is None or accept(box):
            return box
    raise ChunkflowError(
        f"no box of size {','.join(map(str, size))} in {bounds} passed the mask in {tries} tries"
    )


def output_bases(context: Context, bases: dict[str, BoundingBox]) -> None:
    """Record, in `bases` (chunk name -> base box), the base boxes of a stage's outputs: its
    `base` of the region its inputs share; none when no input has one."""
    known = [bases[name] for name in context.inputs if name in bases]
    shared = None
    for box in known:
        shared = box if shared is None else shared.intersect(box)
    for name in context.outputs:
        if shared is None or shared.is_empty:
            bases.pop(name, None)
        else:
            bases[name] = context.base(shared)


# ---------------------------------------------------------------------------------------------
# operators that need context: their output box, read with context, padded where data ends


def centred(size: Iterable[int] | None) -> Grow:
    """The base of an operator that outputs `size` voxels centred in its input (the offset
    moves by half the size difference, rounded down); identity for None."""
    if size is None:
        return _same
    size = Cartesian(size)

    def base(box: BoundingBox) -> BoundingBox:
        return BoundingBox.from_delta(box.start + (box.shape - size) // 2, size)

    return base


def affinity_grow(neighborhood: Iterable[Iterable[int]]) -> Grow:
    """Affinity channel c of p reads p - n_c: the context below is the largest positive
    offset per axis, above the largest negative one."""
    offsets = [Cartesian(o) for o in neighborhood]
    neg = Cartesian(*(max([0, *(o[a] for o in offsets)]) for a in range(3)))
    pos = Cartesian(*(max([0, *(-o[a] for o in offsets)]) for a in range(3)))
    return grow_by(neg, pos)


def boundary_grow(steps: int, only_xy: bool = False) -> Grow:
    """`grow_boundary` decides a voxel from the labels within `steps` voxels of it."""
    margin = (0, steps, steps) if only_xy else (steps, steps, steps)
    return grow_by(margin, margin)


def affinities_with_context(
    labels: Chunk,
    write_box: BoundingBox,
    neighborhood,
    pad_mode: str | None = None,
    labels_mask: Chunk | None = None,
    name: str = "labels",
    mask_name: str = "labels mask",
) -> tuple[Chunk, Chunk]:
    """Affinities and their mask over `write_box`, read from the labels around it.

    The labels must cover `write_box` grown by the neighbourhood's reach (`affinity_grow`),
    else they are padded by `pad_mode` or refused. Affinities that link a voxel with a padded
    one, or one the labels mask does not know, are masked (0 in the mask).
    """
    from chunkflow.training.targets import add_affinities, check_neighborhood

    offsets = check_neighborhood(neighborhood)
    if labels_mask is not None:
        check_same_grid((mask_name, labels_mask), (name, labels), boxes="overlap")
        if labels_mask.ndim != 3:
            raise ChunkflowError(
                f"the labels mask has shape {labels_mask.shape}; expected 3D (z, y, x)"
            )
    read_box = affinity_grow(offsets)(write_box)
    source = cover(labels, read_box, pad_mode, name, "add-affinities")
    known = None
    if not labels.bbox.contains(read_box):
        known = real_voxels(labels, read_box)
    if labels_mask is not None:
        mask_known = np.asarray(cover(labels_mask, read_box, "zero", "labels mask")) != 0
        known = mask_known if known is None else known & mask_known
    mask_chunk = None
    if known is not None:
        mask_chunk = Chunk(known.astype(np.uint8), read_box.start, labels.voxel_size)
    affs, mask = add_affinities(source, offsets, mask_chunk)
    return affs.crop(write_box), mask.crop(write_box)


def grow_boundary_with_context(
    labels: Chunk,
    write_box: BoundingBox,
    steps: int,
    only_xy: bool = False,
    pad_mode: str | None = None,
    name: str = "labels",
) -> Chunk:
    """`grow_boundary` over `write_box`, deciding its border voxels from the labels around it
    (padded by `pad_mode`, or refused, where they end)."""
    from chunkflow.training.targets import grow_boundary

    read_box = boundary_grow(steps, only_xy)(write_box)
    source = cover(labels, read_box, pad_mode, name, "grow-boundary")
    return grow_boundary(source, steps, only_xy).crop(write_box)


def elastic_with_context(
    chunks: Mapping[str, Chunk],
    rng: np.random.Generator,
    write_boxes: Mapping[str, BoundingBox] | None = None,
    output_size=None,
    nearest: Iterable[str] = (),
    pad_mode: str | None = None,
    tries: int = 20,
    **transform_options,
) -> dict[str, Chunk]:
    """One random `ElasticTransform` applied to all chunks, each output over its write box.

    The chunks are first cropped to the world region they share (`align`). `write_boxes`
    (chunk name -> box) say what each output covers; without them every output has
    `output_size` voxels (default: the input size) centred in the input. The transform is
    drawn for the union of the write boxes; a draw that reads past the data is drawn again
    (seeded, at most `tries` draws), so the output holds real data whenever some draw fits;
    then the last draw is padded by `pad_mode`, or refused naming the box it needs.
    """
    from chunkflow.training.augment import ElasticTransform

    unknown = sorted(set(nearest) - set(chunks))
    if unknown:
        raise ChunkflowError(f"nearest names chunks that are not augmented: {', '.join(unknown)}")
    names = list(chunks)
    first = chunks[names[0]]
    for name in names[1:]:
        check_same_grid((name, chunks[name]), (names[0], first), boxes=None)
    chunks = align(chunks, "elastic-augment")
    first = chunks[names[0]]
    for name, chunk in chunks.items():
        if chunk.is_affinity_map:
            raise ChunkflowError(
                f"elastic-augment does not transform affinity maps ({name!r}): augment the "
                "labels and compute the affinities afterwards"
            )
    available = first.bbox
    if write_boxes is None:
        out = centred(output_size)(available) if output_size is not None else available
        if out.is_empty:
            raise ChunkflowError(f"the output size {tuple(output_size)} must be positive")
        write_boxes = {name: out for name in names}
    union = None
    for name in names:
        union = write_boxes[name] if union is None else union.union(write_boxes[name])
    transform_options.setdefault("voxel_size", first.voxel_size)
    for _ in range(max(1, tries)):
        transform = ElasticTransform.random(union.shape, rng, **transform_options)
        needed = transform.source_bbox.shift(union.start)
        if available.contains(needed):
            break
    result = {}
    for name in names:
        source = cover(chunks[name], needed, pad_mode, name, f"elastic-augment ({tries} draws)")
        warped = transform.apply(source, union.start, 0 if name in nearest else None)
        box = write_boxes[name]
        result[name] = warped if box == union else warped.crop(box)
    return result


# ---------------------------------------------------------------------------------------------
# sources of random locations

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def stored_bounds(path: str, dataset: str | None = None) -> BoundingBox:
    """The box (voxels) an HDF5 dataset or a zarr/N5 array covers, from its metadata only."""
    if str(path).endswith(H5_SUFFIXES):
        from chunkflow.io.h5 import _array_datasets, _geometry, _open

        with _open(path) as f:
            if dataset is None:
                arrays = _array_datasets(f)
                dataset = "/main" if "/main" in arrays else arrays[0] if len(arrays) == 1 else None
            if dataset is None or dataset not in f or not hasattr(f[dataset], "shape"):
                raise ChunkflowError(
                    f"{path}: which dataset? give one of: {', '.join(_array_datasets(f))}"
                )
            dset = f[dataset]
            _, offset = _geometry(f, dset, path, f"{path}:{dset.name}")
            return BoundingBox.from_delta(offset, dset.shape[-3:])
    from chunkflow.io.zarr import _open

    source = _open(path, dataset)
    offset = source.voxel_offset if source.voxel_offset is not None else Cartesian(0, 0, 0)
    return BoundingBox.from_delta(offset, source.shape[-3:])


def read_box(path: str, dataset: str | None, box: BoundingBox) -> Chunk:
    """The part of `box` inside an HDF5 dataset or a zarr/N5 array."""
    if str(path).endswith(H5_SUFFIXES):
        from chunkflow.io.h5 import read_h5

        return read_h5(path, dataset, box, clip=True)
    from chunkflow.io.zarr import read_zarr

    return read_zarr(path, dataset, box, clip=True)


def foreground(mask: Chunk, box: BoundingBox) -> float:
    """Fraction of the voxels of `box` where `mask` is nonzero (outside the mask counts 0)."""
    inside = mask.bbox.intersect(box)
    if inside.is_empty:
        return 0.0
    return float(np.count_nonzero(np.asarray(mask.crop(inside)))) / box.voxel_count


def equal_sizes(box: BoundingBox, axes: Iterable[int], around: BoundingBox) -> BoundingBox:
    """The largest part of `box` with equal sizes along `axes` (for a transpose), centred on
    `around` as far as `box` allows."""
    axes = list(axes)
    if not axes:
        return box
    size = min(box.shape[a] for a in axes)
    start, stop = list(box.start), list(box.stop)
    for a in axes:
        centre = (around.start[a] + around.stop[a]) // 2
        low = min(max(centre - size // 2, box.start[a]), box.stop[a] - size)
        start[a], stop[a] = low, low + size
    return BoundingBox(start, stop)
