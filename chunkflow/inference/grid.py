"""Where the patches go: read regions (input patches) and write regions (output patches).

Sizes are (z, y, x) voxels. With an input patch larger than the output patch, the network
reads context it does not write: the patch crop margin m = (input - output) / 2 on each side::

    input chunk    |<-------------------------- chunk -------------------------->|
    output region    |m|<------------------ region ------------------------>|m|
    output patches     [patch 0]
                              [patch 1]          stride = output patch - overlap
                                     [patch 2]   ...   the last one ends at the region's end
    output chunk       |c|<------------- chunk - 2m - 2c ----------------->|c|

The output chunk is the region minus the output crop margin c on each side (default: 0 with
`mask_output_chunk`, else the output patch overlap, where fewer patches overlap). Every voxel
of the region is covered by at least one patch, for any chunk size.

In whole-chunk mode (`whole`) the chunk is one read region and the output region its only
write region: no patches, no blending, the same two margins.
"""

from __future__ import annotations

from dataclasses import dataclass

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox, Cartesian


def _vec(v) -> str:
    return " ".join(str(int(x)) for x in v)


def axis_starts(length: int, patch: int, stride: int) -> list[int]:
    """Patch starts along one axis: regular steps, the last patch flush with the end."""
    count = max(0, -(-(length - patch) // stride)) + 1
    return sorted({min(i * stride, length - patch) for i in range(count)})


@dataclass(frozen=True)
class Plan:
    """The patches of one input chunk, in global voxel coordinates."""

    input_bbox: BoundingBox
    region: BoundingBox  # all voxels the patches write
    output_bbox: BoundingBox  # the returned chunk: region minus the output crop margin
    patches: tuple  # ((input patch bbox, output patch bbox), ...)


@dataclass(frozen=True)
class PatchGrid:
    """Patch geometry, validated once: raises one-line errors that name the options."""

    input_patch_size: Cartesian
    output_patch_size: Cartesian
    output_patch_overlap: Cartesian
    output_crop_margin: Cartesian
    patch_num: Cartesian | None = None

    @classmethod
    def create(
        cls,
        input_patch_size,
        output_patch_size=None,
        output_patch_overlap=None,
        output_crop_margin=None,
        mask_output_chunk: bool = False,
        patch_num=None,
        whole_chunk: bool = False,
    ) -> PatchGrid:
        """The grid of these sizes, checked. The output crop margin defaults to the overlap,
        where fewer patches overlap, or to 0 with `mask_output_chunk` or `whole_chunk` (one
        pass over the whole chunk has no patch seams to crop away)."""
        p_in = Cartesian(input_patch_size)
        p_out = Cartesian(output_patch_size) if output_patch_size is not None else p_in
        overlap = (
            Cartesian(output_patch_overlap) if output_patch_overlap is not None else p_out // 2
        )
        if min(p_in) <= 0 or min(p_out) <= 0:
            raise ParameterError(
                f"patch sizes must be positive: `input_patch_size` {_vec(p_in)}, "
                f"`output_patch_size` {_vec(p_out)}"
            )
        if any(o > i for o, i in zip(p_out, p_in)):
            raise ParameterError(
                f"`output_patch_size` {_vec(p_out)} is larger than `input_patch_size` {_vec(p_in)}"
            )
        if any((i - o) % 2 for o, i in zip(p_out, p_in)):
            raise ParameterError(
                f"`input_patch_size` {_vec(p_in)} minus `output_patch_size` {_vec(p_out)} must be "
                "even: the crop margin is cut equally from both sides"
            )
        if min(overlap) < 0 or any(o >= p for o, p in zip(overlap, p_out)):
            raise ParameterError(
                f"`output_patch_overlap` {_vec(overlap)} must be >= 0 and smaller than the output "
                f"patch {_vec(p_out)}"
            )
        if output_crop_margin is None:
            margin = Cartesian(0, 0, 0) if mask_output_chunk or whole_chunk else overlap
        else:
            margin = Cartesian(output_crop_margin)
            if min(margin) < 0:
                raise ParameterError(f"`output_crop_margin` {_vec(margin)} must be >= 0")
        if patch_num is not None:
            patch_num = Cartesian(patch_num)
            if min(patch_num) <= 0:
                raise ParameterError(f"`patch_num` {_vec(patch_num)} must be positive")
        return cls(p_in, p_out, overlap, margin, patch_num)

    @property
    def patch_crop_margin(self) -> Cartesian:
        return (self.input_patch_size - self.output_patch_size) // 2

    @property
    def read_margin(self) -> Cartesian:
        """What the output chunk loses on each side of the input chunk: the patch crop margin
        plus the output crop margin. The read ROI is the write ROI grown by it."""
        return self.patch_crop_margin + self.output_crop_margin

    @property
    def stride(self) -> Cartesian:
        return self.output_patch_size - self.output_patch_overlap

    def chunk_size_for(self, patch_num) -> Cartesian:
        """The input chunk size that holds exactly `patch_num` regular patches."""
        return self.stride * (Cartesian(patch_num) - 1) + self.input_patch_size

    def _regions(self, input_bbox: BoundingBox) -> tuple[BoundingBox, BoundingBox]:
        """The output region (input minus the patch crop margin) and the output chunk."""
        region = input_bbox.grow(-self.patch_crop_margin)
        if region.is_empty:
            raise ChunkflowError(
                f"the patch crop margin {_vec(self.patch_crop_margin)} leaves nothing of the "
                f"chunk {_vec(input_bbox.shape)} ({input_bbox})"
            )
        output_bbox = region.grow(-self.output_crop_margin)
        if output_bbox.is_empty:
            raise ParameterError(
                f"the output crop margin {_vec(self.output_crop_margin)} leaves nothing of the "
                f"output region {_vec(region.shape)} (set `output_crop_margin`, or use "
                "`mask_output_chunk`; without it the margin defaults to the patch overlap)"
            )
        return region, output_bbox

    def whole(self, input_bbox: BoundingBox) -> Plan:
        """The whole chunk as one read region, the output region as its one write region."""
        region, output_bbox = self._regions(input_bbox)
        return Plan(input_bbox, region, output_bbox, ((input_bbox, region),))

    def plan(self, input_bbox: BoundingBox) -> Plan:
        size = input_bbox.shape
        if any(s < p for s, p in zip(size, self.input_patch_size)):
            raise ChunkflowError(
                f"input patch {_vec(self.input_patch_size)} is larger than the chunk "
                f"{_vec(size)} ({input_bbox})"
            )
        region, output_bbox = self._regions(input_bbox)
        starts = [
            axis_starts(n, p, s)
            for n, p, s in zip(region.shape, self.output_patch_size, self.stride)
        ]
        if self.patch_num is not None:
            counts = Cartesian(*(len(s) for s in starts))
            if counts != self.patch_num:
                raise ParameterError(
                    f"`patch_num` {_vec(self.patch_num)} does not fit the chunk {_vec(size)}: it "
                    f"holds {_vec(counts)} patches; a chunk of "
                    f"{_vec(self.chunk_size_for(self.patch_num))} holds {_vec(self.patch_num)}"
                )
        patches = []
        for z in starts[0]:
            for y in starts[1]:
                for x in starts[2]:
                    out = BoundingBox.from_delta(region.start + (z, y, x), self.output_patch_size)
                    patches.append((out.grow(self.patch_crop_margin), out))
        return Plan(input_bbox, region, output_bbox, tuple(patches))
