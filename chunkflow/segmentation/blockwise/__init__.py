"""Whole-volume segmentation in chunks: one id per object across every chunk and worker.

A job turns a precomputed INPUT volume into a new precomputed uint64 segmentation OUTPUT whose
ids are unique over the whole volume and whose objects continue across chunk faces. It runs in
phases over one grid of chunks (the tasks); every per-chunk phase is an ordinary task that any
worker may run, any number of times, in any order within its phase:

1. `fragments` (per task): label the chunk, grown by a context margin (clipped to the volume),
   keep the labels of the chunk itself, store them in a fragment volume and keep the chunk's
   faces and inner contacts.
2. `edges` (per task): join the chunk's low faces to the faces of the chunks below it and store
   the task's edges of the whole volume's fragment graph.
3. `merge` (once, in one process): read every task's edges (never voxels) and give each
   fragment its object id; memory grows with fragments and edges only.
4. `relabel` (per task): write the chunk's fragments as object ids into OUTPUT.

Modes:

- ``agglomerate``: INPUT is a 3-channel affinity map in the `agglomerate` convention (channel c
  of voxel p links p and p - e_c; channels z, y, x). Fragments are waterz watershed basins of
  the chunk grown by the margin, cut at the chunk's faces; the edges carry the sum and number of
  the affinities across each contact, inside chunks and across faces, and `merge` agglomerates
  the whole graph with waterz's mean-affinity rule. The pieces of a basin cut by a face are
  joined first, as one fragment, where the watersheds of both chunks (each with its context
  beyond the face) agree that they are one basin. With one chunk this is exactly the
  `agglomerate` operator on the whole volume; with many, it is too wherever the margin lets
  the chunks' watersheds see the basins as the whole volume's does.
- ``cc``: connected components (cc3d, 6/18/26 connectivity) of a label volume (distinct ids stay
  distinct, 0 is background) or of a map above `threshold`. Each chunk is labelled with a
  one-voxel shell of its neighbours, so every contact across a face is seen; the result equals
  cc3d on the whole volume up to the numbering.

Ids: fragment k of task t is stored as (t << 32) | k, with t the task's index in z, y, x raster
order of the grid and k counted from 1 in raster order of first voxels; object ids are 1, 2,
... in the order objects first appear along (t, k). All of it follows from the data and the
grid, never from which worker ran a task or when: a retried task writes the same bytes.

Work data lives beside the output, in the same storage (file://, gs://, s3://), so workers need
nothing else (default `{OUTPUT}/blockwise`)::

    plan.json            the job: mode, input, region, chunk grid, parameters (written last)
    fragments/           precomputed uint64 volume of per-chunk fragment ids
    faces/{bbox}.npz     phase 1 of a task: fragment count, inner contacts, face planes
    edges/{bbox}.npz     phase 2 of a task: fragment count and the task's graph edges
    merge/ids            the object id of every fragment, uint64, tasks in grid order
    merge/offsets        index in merge/ids of each task's first fragment (uint64, tasks + 1)
    merge/summary.json   written last by the merge: fragments, edges, objects
    relabeled/{bbox}     phase 4 of a task is done
"""

from chunkflow.segmentation.blockwise.merge import merge, status, unfinished_phases
from chunkflow.segmentation.blockwise.plan import (
    DEFAULT_MARGIN,
    ID_BITS,
    MODES,
    Plan,
    default_block_size,
    default_work_path,
    load_plan,
    setup,
)
from chunkflow.segmentation.blockwise.tasks import find_edges, make_fragments, relabel, same_basins

__all__ = [
    "DEFAULT_MARGIN",
    "ID_BITS",
    "MODES",
    "Plan",
    "default_block_size",
    "default_work_path",
    "find_edges",
    "load_plan",
    "make_fragments",
    "merge",
    "relabel",
    "same_basins",
    "setup",
    "status",
    "unfinished_phases",
]
