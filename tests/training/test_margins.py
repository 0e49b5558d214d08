"""chunkflow.training.margins: the margin of an elastic warp holds its source box."""

import math

import numpy as np
import pytest

from chunkflow.geometry import BoundingBox
from chunkflow.training.augment import ElasticTransform
from chunkflow.training.margins import elastic_margin


@pytest.mark.parametrize("shape", [(2, 40, 40), (3, 20, 64)])
def test_elastic_margin_bounds_the_rotation_exactly(shape):
    """Without jitter the source box of any angle in the interval lies in the margin, and
    the worst angle needs all of it."""
    margin = elastic_margin(shape, (0, 0, 0), (0.1, 1.2))
    box = BoundingBox.from_delta((0, 0, 0), shape)
    widest = BoundingBox((0, 0, 0), (0, 0, 0))
    for angle in np.linspace(0.1, 1.2, 23):
        transform = ElasticTransform.random(
            shape, np.random.default_rng(0), jitter_sigma=0, rotation_interval=(angle, angle)
        )
        assert box.grow(margin).contains(transform.source_bbox)
        widest = widest.union(transform.source_bbox)
    slack = widest.start - box.grow(margin).start
    assert max(slack[1], slack[2]) <= 1


def test_elastic_margin_with_jitter_holds_most_draws():
    rng = np.random.default_rng(1)
    shape = (4, 32, 32)
    grown = BoundingBox.from_delta((0, 0, 0), shape).grow(
        elastic_margin(shape, (1, 2, 2), (0, math.pi / 2))
    )
    fits = [
        grown.contains(
            ElasticTransform.random(
                shape, rng, (4, 16, 16), (1, 2, 2), (0, math.pi / 2)
            ).source_bbox
        )
        for _ in range(50)
    ]
    assert sum(fits) >= 45
