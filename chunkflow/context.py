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

Nothing here knows the command line: the chain engine (`chunkflow.pipeline`) calls `plan`
and hands each stage its `Request`. The margins of the training operators (elastic warps,
affinities, grown boundaries) and the operators run with them are in
`chunkflow.training.margins`; random boxes whose context fits in the data, in
`chunkflow.training.locations`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from chunkflow.chunk import Chunk
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

    def reads_around(self, box: BoundingBox) -> BoundingBox:
        """The box the readers after a task source read for a task box (its union with what
        each reads around it): the box a task must find inside the data."""
        grown = box
        for read in self.reads.values():
            grown = grown.union(read(box))
        return grown


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
# the base boxes of a stage's outputs


def centred(size: Iterable[int] | None) -> Grow:
    """The base of an operator that outputs `size` voxels centred in its input (the offset
    moves by half the size difference, rounded down); identity for None."""
    if size is None:
        return _same
    size = Cartesian(size)

    def base(box: BoundingBox) -> BoundingBox:
        return BoundingBox.from_delta(box.start + (box.shape - size) // 2, size)

    return base


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
