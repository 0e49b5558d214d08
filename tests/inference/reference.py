"""A slow, obviously correct blending reference: float64, plain loops, no caching."""

import numpy as np

from chunkflow.inference.bump import bump


def starts(region: int, patch: int, stride: int) -> list[int]:
    positions = list(range(0, region - patch + 1, stride))
    if positions[-1] + patch < region:
        positions.append(region - patch)
    return positions


def blend(image, model, p_in, p_out, overlap, crop=(0, 0, 0), kind="wu"):
    """image: (c, z, y, x) float64; model: (c, *p_in) -> (c_out, *p_out)."""
    m = [(i - o) // 2 for i, o in zip(p_in, p_out)]
    region = [s - 2 * mm for s, mm in zip(image.shape[1:], m)]
    stride = [p - o for p, o in zip(p_out, overlap)]
    weight = bump(p_out, kind).astype(np.float64)
    num = den = None
    for z in starts(region[0], p_out[0], stride[0]):
        for y in starts(region[1], p_out[1], stride[1]):
            for x in starts(region[2], p_out[2], stride[2]):
                patch = image[:, z : z + p_in[0], y : y + p_in[1], x : x + p_in[2]]
                out = np.asarray(model(patch), dtype=np.float64)
                if num is None:
                    num = np.zeros((out.shape[0], *region))
                    den = np.zeros(region)
                sl = (slice(z, z + p_out[0]), slice(y, y + p_out[1]), slice(x, x + p_out[2]))
                num[(slice(None), *sl)] += out * weight
                den[sl] += weight
    result = num / den
    return result[
        :,
        crop[0] : region[0] - crop[0],
        crop[1] : region[1] - crop[1],
        crop[2] : region[2] - crop[2],
    ]


def crop_center(patch, p_out):
    m = [(s - o) // 2 for s, o in zip(patch.shape[1:], p_out)]
    return patch[:, m[0] : m[0] + p_out[0], m[1] : m[1] + p_out[1], m[2] : m[2] + p_out[2]]
