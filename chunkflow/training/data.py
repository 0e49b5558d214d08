"""Training batches: random locations in samples, augmentation, affinity targets, loss weights.

A *sample* is a dict of chunks that cover the same region: the image (raw), the labels and an
optional mask (nonzero = labelled). One training example is made like this:

1. pick a sample, with probability proportional to its voxel count (`sample_weights` "size"),
   the same for all ("uniform") or to given weights;
2. draw the elastic transform first (if any; its default control points are equally far apart
   in world units along every axis, by the sample's voxel size): it says which region of the
   sample the `input_size` patch reads (`ElasticTransform.source_bbox`); a transform reading
   more than the sample holds is redrawn (up to `max_redraws` times, from the same seeded
   generator).
   Then draw a location where that whole region lies inside the sample, so the result has
   exactly `input_size` and never reads padding (a location whose output patch is less than
   `min_masked` masked is redrawn);
3. cut the region; image to float32 in [0, 1]; elastic-transform image, labels and mask together
   (labels and mask with nearest neighbour, whatever their dtype or layer type: the labels are
   a segmentation, the mask a flag); mirror/transpose them together;
4. intensity, noise and defect augmentation of the image only;
5. grow boundaries and compute each target (`chunkflow.training.targets.Target`: affinities,
   boundary, foreground, distance, lsd) over the whole patch, crop labels and targets to the
   centred `output_size` (so the output border has known targets when the input has
   context), and compute the loss weights: per-channel balanced for balanced losses, else 1
   where the target is known (0 where unknown).

An example is a dict: "image" (C, z, y, x), "label" (z, y, x), "offset" (the image patch's
voxel offset in its sample; labels and targets start `context` voxels further), "voxel_size",
and per target output name "target:NAME", "weight:NAME" and "mask:NAME" (1 where known).

Example k of a run is made from the random generator seeded with (seed, k) alone, so a run is
repeatable whatever the number of workers, and a resumed run sees the batches an uninterrupted
run would have seen. Batches are assembled by torch's DataLoader in worker processes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from chunkflow.chunk import check_same_grid
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.training.targets import NEAREST, Target, check_neighborhood

__all__ = [
    "PipelineSpec",
    "ExampleMaker",
    "make_loader",
    "check_samples",
    "sample_probabilities",
    "STAGES",
]

#: Stages timed inside the workers, reported by the trainer's profile.
STAGES = ("sampling", "augmentation", "targets")

IMAGE, LABEL, MASK = "image", "label", "mask"


@dataclass
class PipelineSpec:
    """What one training example looks like and how it is augmented."""

    input_size: tuple = (20, 132, 132)
    output_size: tuple | None = None  # default: input_size; centred in the input
    neighborhood: tuple = NEAREST
    grow_boundary: int = 0
    grow_boundary_only_xy: bool = False
    simple: bool = True
    mirror_axes: tuple = (0, 1, 2)
    transpose_axes: tuple = (1, 2)
    elastic: dict | None = field(default_factory=dict)  # options of ElasticTransform.random
    intensity: dict | None = field(default_factory=dict)  # options of intensity_augment
    noise: dict | None = None  # options of noise_augment
    defect: dict | None = None  # options of defect_augment
    min_masked: float = 0.0
    balance_clip: tuple = (0.05, 0.95)
    # targets; none: affinities of `neighborhood` (balanced BCE)
    targets: tuple = ()
    spatial_dims: int = 3  # 2: z = 1 patches for a 2D model
    sample_weights: str | tuple = "size"  # "size", "uniform" or one weight per sample
    max_redraws: int = 20  # elastic transforms drawn before a sample counts as too small

    def __post_init__(self):
        self.neighborhood = tuple(check_neighborhood(self.neighborhood))
        if not self.targets:
            self.targets = (Target("affinities", neighborhood=self.neighborhood),)
        self.targets = tuple(self.targets)
        outputs = [t.output for t in self.targets]
        if len(set(outputs)) != len(outputs):
            raise ParameterError(
                f"two targets feed the same model output ({', '.join(outputs)}); name each "
                "output differently (`targets` KIND:OUTPUT)"
            )
        if self.spatial_dims not in (2, 3):
            raise ChunkflowError(f"a model is 2D or 3D, not {self.spatial_dims}D")
        self.input_size = Cartesian(self.input_size)
        self.output_size = Cartesian(self.output_size or self.input_size)
        if min(self.output_size) <= 0:
            raise ChunkflowError(f"the output patch size {self.output_size} must be positive")
        margin = self.input_size - self.output_size
        if min(margin) < 0 or any(m % 2 for m in margin):
            raise ChunkflowError(
                f"the output patch {tuple(self.output_size)} must fit centred in the input "
                f"patch {tuple(self.input_size)} (sizes differing by an even number per axis)"
            )
        if self.spatial_dims == 2 and self.input_size[0] != 1:
            raise ChunkflowError(
                f"a 2D model trains on patches one section thick (z = 1), not "
                f"{tuple(self.input_size)}"
            )
        if self.spatial_dims == 2:
            for target in self.targets:
                if target.kind == "affinities" and any(n[0] for n in target.neighborhood):
                    raise ChunkflowError(
                        f"a 2D model has no z neighbours: the affinity offsets "
                        f"{list(target.neighborhood)} must have z = 0"
                    )
        if isinstance(self.sample_weights, str):
            if self.sample_weights not in ("size", "uniform"):
                raise ChunkflowError(
                    f"sample weights {self.sample_weights!r}: expected size, uniform or a "
                    "list of numbers"
                )
        else:
            self.sample_weights = tuple(float(w) for w in self.sample_weights)
            if min(self.sample_weights, default=-1) < 0 or sum(self.sample_weights) <= 0:
                raise ChunkflowError(
                    f"sample weights {self.sample_weights}: expected numbers >= 0, not all 0"
                )
        if self.simple and len({self.input_size[a] for a in self.transpose_axes}) > 1:
            axes = ",".join(map(str, self.transpose_axes))
            raise ChunkflowError(
                f"transposing axes {axes} needs equal patch sizes along them, "
                f"got {tuple(self.input_size)}"
            )

    @property
    def context(self) -> Cartesian:
        return (self.input_size - self.output_size) // 2


def check_samples(samples: list[dict], spec: PipelineSpec, where=None) -> None:
    """One clear error for a sample that cannot be trained on."""
    for k, sample in enumerate(samples):
        name = where(k) if where else f"sample {k}"
        for key in (IMAGE, LABEL):
            if key not in sample:
                raise ChunkflowError(f"{name}: no {key} chunk")
        image, label = sample[IMAGE], sample[LABEL]
        first = samples[0][IMAGE].num_channels
        if image.num_channels != first:
            raise ChunkflowError(
                f"{name}: the image has {image.num_channels} channels, sample 0 has {first}"
            )
        if image.is_segmentation:
            raise ChunkflowError(
                f"{name}: the image is a {image.dtype} segmentation (integer data other than "
                "uint8 is taken for labels unless its layer type says image)"
            )
        if not label.is_segmentation and np.asarray(label).dtype.kind not in "iub":
            raise ChunkflowError(f"{name}: the labels are {label.dtype}, not integer ids")
        for key in (LABEL, MASK):
            chunk = sample.get(key)
            if chunk is None:
                continue
            check_same_grid((key, chunk), (IMAGE, image), what=name)
        if any(s < p for s, p in zip(image.spatial_shape, spec.input_size)):
            raise ChunkflowError(
                f"{name}: {tuple(image.spatial_shape)} voxels is smaller than the training "
                f"patch {tuple(spec.input_size)}"
            )


class ExampleMaker:
    """Makes training example k of a run (a map-style torch dataset over k)."""

    def __init__(
        self, samples: list[dict], spec: PipelineSpec, seed: int = 0, names: list | None = None
    ):
        self.names = names or [f"sample {k}" for k in range(len(samples))]
        check_samples(samples, spec, lambda k: self.names[k])
        self.samples = samples
        self.spec = spec
        self.seed = seed
        self.weights = sample_probabilities(samples, spec.sample_weights)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, int(index)])
        return self.make(rng)

    def make(self, rng: np.random.Generator) -> dict:
        """One example as a dict of float32 arrays plus the seconds of each stage."""
        from chunkflow.training import augment, intensity
        from chunkflow.training.targets import balance_labels, grow_boundary

        spec = self.spec
        seconds = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        which = int(rng.choice(len(self.samples), p=self.weights))
        sample = self.samples[which]
        transform = None
        if spec.elastic is not None:
            transform = self._transform(which, rng)
            source = transform.source_bbox
        else:
            source = BoundingBox((0, 0, 0), spec.input_size)
        offset = self._location(sample, source, transform, rng)
        region = source.shift(offset)
        chunks = {key: sample[key].crop(region) for key in (IMAGE, LABEL, MASK) if key in sample}
        chunks[IMAGE] = intensity.normalize(chunks[IMAGE])
        seconds["sampling"] = time.perf_counter() - start

        start = time.perf_counter()
        if transform is not None:
            # labels and mask are ids and flags whatever their dtype or layer type: nearest
            chunks = {
                key: transform.apply(chunk, offset, None if key == IMAGE else 0)
                for key, chunk in chunks.items()
            }
        if spec.simple:
            chunks = augment.simple_augment(
                chunks, rng, mirror_axes=spec.mirror_axes, transpose_axes=spec.transpose_axes
            )
        image = chunks[IMAGE]
        if spec.intensity is not None:
            image = intensity.intensity_augment(image, rng, **spec.intensity)
        if spec.noise is not None:
            image = intensity.noise_augment(image, rng, **spec.noise)
        if spec.defect is not None:
            image = intensity.defect_augment(image, rng, **spec.defect)
        seconds["augmentation"] = time.perf_counter() - start

        start = time.perf_counter()
        # targets from the whole transformed patch, then cropped: where the input patch has
        # context around the output, the targets at the output border are known too
        label, mask = chunks[LABEL], chunks.get(MASK)
        if spec.grow_boundary:
            label = grow_boundary(label, spec.grow_boundary, spec.grow_boundary_only_xy)
        inner = BoundingBox.from_delta(image.voxel_offset + spec.context, spec.output_size)
        array = np.asarray(image, np.float32)
        example = {
            IMAGE: array if array.ndim == 4 else array[None],
            LABEL: np.asarray(label.crop(inner)).astype(np.int64, copy=False),
            "offset": np.array(image.voxel_offset, np.int64),
            "voxel_size": np.array(image.voxel_size, np.float64),
        }
        for target_spec in spec.targets:
            target, known = target_spec.compute(label, mask, spec.spatial_dims)
            target, known = target.crop(inner), known.crop(inner)
            if target_spec.balanced:
                weight = np.asarray(balance_labels(target, known, clip=spec.balance_clip))
            else:
                weight = _full(known, target.shape)
            name = target_spec.output
            example[f"target:{name}"] = np.asarray(target, np.float32)
            example[f"weight:{name}"] = np.asarray(weight, np.float32)
            example[f"mask:{name}"] = _full(known, target.shape)
        seconds["targets"] = time.perf_counter() - start
        example["seconds"] = np.array([seconds[s] for s in STAGES])
        return example

    def _fits(self, sample: dict, source: BoundingBox) -> bool:
        bbox = sample[IMAGE].bbox
        return min((bbox.stop - source.stop) - (bbox.start - source.start)) >= 0

    def _transform(self, which: int, rng: np.random.Generator):
        """An elastic transform whose source region fits in sample `which`: drawn again (from
        the example's own generator, so reproducibly) up to `max_redraws` times."""
        from chunkflow.training import augment

        spec, sample = self.spec, self.samples[which]
        options = {"voxel_size": sample[IMAGE].voxel_size, **spec.elastic}
        smallest = None
        for _ in range(max(1, spec.max_redraws)):
            transform = augment.ElasticTransform.random(spec.input_size, rng, **options)
            if self._fits(sample, transform.source_bbox):
                return transform
            shape = tuple(transform.source_bbox.shape)
            if smallest is None or math.prod(shape) < math.prod(smallest):
                smallest = shape
        raise ChunkflowError(
            f"{self.names[which]}: {tuple(sample[IMAGE].spatial_shape)} voxels is too small for "
            f"the elastic transform: none of {max(1, spec.max_redraws)} draws fits (the "
            f"smallest needs {smallest} voxels for the patch {tuple(spec.input_size)}); use a "
            "smaller patch, less rotation/jitter, or a larger sample"
        )

    def _location(self, sample: dict, source: BoundingBox, transform, rng) -> Cartesian:
        """A random offset placing `source` inside the sample (and, with `min_masked`, an
        output patch masked enough)."""
        bbox = sample[IMAGE].bbox
        low = bbox.start - source.start
        high = bbox.stop - source.stop  # inclusive
        if min(high - low) < 0:
            raise ChunkflowError(
                f"the sample {bbox} is too small for a training patch that reads "
                f"{tuple(source.shape)} voxels (patch {tuple(self.spec.input_size)} plus the "
                "elastic transform's context); use a smaller patch or less rotation/jitter"
            )
        mask = sample.get(MASK)
        for _ in range(100):
            offset = Cartesian(*(int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high)))
            if mask is None or self.spec.min_masked <= 0:
                return offset
            inner = BoundingBox.from_delta(offset + self.spec.context, self.spec.output_size)
            if np.count_nonzero(mask.crop(inner)) >= self.spec.min_masked * inner.voxel_count:
                return offset
        raise ParameterError(
            f"no location out of 100 tries has {self.spec.min_masked:.0%} of its output patch "
            f"masked in the sample at {bbox}; lower `min_masked`"
        )


def _full(array, shape) -> np.ndarray:
    """`array` as a writable float32 array of `shape` (broadcast channels are copied)."""
    array = np.asarray(array, np.float32)
    if array.shape == tuple(shape):
        return array
    return np.array(np.broadcast_to(array, shape))


def sample_probabilities(samples: list[dict], weights="size") -> np.ndarray:
    """Probability of drawing each sample: by voxel count ("size"), the same ("uniform"), or
    proportional to one given weight per sample."""
    if isinstance(weights, str):
        if weights == "uniform":
            values = np.ones(len(samples))
        elif weights == "size":
            values = np.array([math.prod(s[IMAGE].spatial_shape) for s in samples], float)
        else:
            raise ChunkflowError(f"sample weights {weights!r}: expected size, uniform or a list")
    else:
        values = np.asarray(weights, float)
        if values.shape != (len(samples),):
            raise ChunkflowError(
                f"{values.size} sample weights given for {len(samples)} samples (one per task "
                "reaching train)"
            )
    if (values < 0).any() or values.sum() <= 0:
        raise ChunkflowError(f"sample weights {values.tolist()}: expected >= 0, not all 0")
    return values / values.sum()


def make_loader(
    samples: list[dict],
    spec: PipelineSpec,
    batch_size: int = 1,
    num_workers: int = 2,
    seed: int = 0,
    start: int = 0,
    stop: int | None = None,
    names: list | None = None,
):
    """A torch DataLoader yielding batches (dicts of tensors) of examples start..stop - 1 of a
    run (batch i holds examples i*batch_size ... (i+1)*batch_size - 1 counted from 0)."""
    import torch

    maker = ExampleMaker(samples, spec, seed, names)
    first = start * batch_size
    indices = range(first, 2**62 if stop is None else stop * batch_size)
    return torch.utils.data.DataLoader(
        maker,
        batch_size=batch_size,
        sampler=indices,
        num_workers=num_workers,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
        worker_init_fn=_init_worker,
        multiprocessing_context="fork" if num_workers and _has_fork() else None,
    )


def _init_worker(_worker_id: int) -> None:
    """Set up a worker process: one compute thread, and a heap that keeps its memory.

    Workers compute with numpy/scipy; one thread each leaves the cores to the trainer. Each
    example allocates and frees the same few megabytes of arrays; by default glibc hands such
    blocks back to the kernel at once and takes page faults to get them again, which cost more
    than the elastic transform itself. Raising the mmap and trim thresholds keeps them.
    """
    import ctypes

    import torch

    torch.set_num_threads(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: keep the defaults
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 256 * 2**20)
    libc.mallopt(m_trim_threshold, 1024 * 2**20)


def _has_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()
