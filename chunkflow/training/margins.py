"""How far the training operators read around what they output, and those operators run
over a write box.

An elastic warp, affinities and a grown boundary decide each output voxel from voxels around
it. Their margins are `chunkflow.context` grows (`elastic_margin`, `affinity_grow`,
`boundary_grow`); `affinities_with_context`, `grow_boundary_with_context` and
`elastic_with_context` compute their outputs over a write box from chunks read with that
context, padded where the data ends (`chunkflow.context.cover`) or refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from chunkflow.chunk import Chunk, check_same_grid
from chunkflow.context import Grow, align, centred, cover, grow_by, real_voxels
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian

__all__ = [
    "elastic_margin",
    "affinity_grow",
    "boundary_grow",
    "affinities_with_context",
    "grow_boundary_with_context",
    "elastic_with_context",
    "equal_sizes",
]


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
