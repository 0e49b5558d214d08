"""Make tests/training/gunpowder_reference.npz: training targets computed by gunpowder and lsds.

Run once, in a virtual environment with gunpowder 1.5.0 and lsds 0.1.3 (not chunkflow's):

    python3.12 -m venv /tmp/venv-gp && /tmp/venv-gp/bin/pip install gunpowder==1.5.0 lsds==0.1.3
    /tmp/venv-gp/bin/python tests/training/make_gunpowder_reference.py

tests/training/test_gunpowder_targets.py compares chunkflow's targets with the stored arrays.
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("gunpowder_reference.npz")
SHAPE = (10, 28, 28)
# gunpowder's sign: channel c links p and p + offset; long-range and mixed offsets included
NEIGHBORHOOD = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-2, 0, 0], [0, -3, 0], [0, 0, -5], [1, -1, 2]]
LSD_SIGMA, LSD_VOXEL_SIZE = (8.0, 6.0, 6.0), (4, 2, 2)


def make_labels() -> np.ndarray:
    """Touching objects (nearest of random seeds, anisotropic) with some background cells."""
    rng = np.random.default_rng(16)
    seeds = rng.uniform(0, 1, (14, 3)) * SHAPE
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), -1)
    nearest = np.argmin((((grid[..., None, :] - seeds) * (3, 1, 1)) ** 2).sum(-1), -1)
    ids = rng.permutation(np.arange(1, 15)) * 1000003  # large, unordered ids
    ids[[2, 7]] = 0  # background
    return ids[nearest].astype(np.uint64)


def run(pipeline, request):
    import gunpowder as gp

    with gp.build(pipeline):
        return pipeline.request_batch(request)


def main() -> None:
    import gunpowder as gp
    from funlib.persistence import Array
    from lsd.train.local_shape_descriptor import get_local_shape_descriptors

    labels = make_labels()
    out = {"labels": labels, "neighborhood": np.array(NEIGHBORHOOD)}
    full = gp.Roi((0, 0, 0), SHAPE)
    key, affs, affs_mask, weights, grown = (
        gp.ArrayKey(n) for n in ("LABELS", "AFFS", "AFFS_MASK", "WEIGHTS", "GROWN")
    )

    def source(data):
        return gp.ArraySource(key, Array(data, (0, 0, 0), (1, 1, 1)), interpolatable=False)

    # affinities (+ mask and balanced weights) over the inner region that has every neighbour
    margin = np.abs(NEIGHBORHOOD).max(0)
    inner = full.grow(-gp.Coordinate(margin), -gp.Coordinate(margin))
    request = gp.BatchRequest()
    for k in (affs, affs_mask, weights):
        request[k] = gp.ArraySpec(roi=inner)
    batch = run(
        source(labels)
        + gp.AddAffinities(NEIGHBORHOOD, key, affs, affinities_mask=affs_mask)
        # per channel, as chunkflow's balance_labels (gunpowder's default slab is all channels)
        + gp.BalanceLabels(affs, weights, mask=affs_mask, slab=(1, -1, -1, -1)),
        request,
    )
    out["affinities_offset"] = np.array(inner.offset)
    out["affinities"] = batch[affs].data
    out["affinities_mask"] = batch[affs_mask].data
    out["balance_weights"] = batch[weights].data

    # GrowBoundary, 3D and within sections
    for name, steps, only_xy in (("grown_2", 2, False), ("grown_2_xy", 2, True)):
        request = gp.BatchRequest()
        request[key] = gp.ArraySpec(roi=full)
        batch = run(source(labels) + gp.GrowBoundary(key, steps=steps, only_xy=only_xy), request)
        out[name] = batch[key].data
    # the boundary mask: GrowBoundary with label 0 made an object of its own
    request = gp.BatchRequest()
    request[key] = gp.ArraySpec(roi=full)
    batch = run(source(labels + 1) + gp.GrowBoundary(key, steps=2), request)
    out["boundary_2"] = (batch[key].data == 0).astype(np.float32)

    # local shape descriptors (the lsds package), 3D anisotropic and one 2D section
    out["lsd_sigma"], out["lsd_voxel_size"] = np.array(LSD_SIGMA), np.array(LSD_VOXEL_SIZE)
    out["lsd"] = get_local_shape_descriptors(labels, LSD_SIGMA, voxel_size=LSD_VOXEL_SIZE)
    out["lsd_2d"] = get_local_shape_descriptors(
        labels[4], LSD_SIGMA[1:], voxel_size=LSD_VOXEL_SIZE[1:]
    )
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT}: " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))


if __name__ == "__main__":
    main()
