"""Example plugin: clip intensities to [low, high] and stretch them to the full uint8 range.

A plugin is a Python file with `execute(*inputs, **args)`: it gets the chunks named by `-i`,
the keyword arguments given by `-a`, and returns one value per name in `-o`. Run it with

    chunkflow read-h5 -f data/gala_fibsem/test-image.h5 -o img \
        plugin -f examples/plugin_example.py -i img -o out -a 'low=10;high=200' \
        write-tif -i out -f out.tif

Return a Chunk (here via `chunk.with_array`, which keeps the voxel offset and size) or a bare
array of the input's shape.
"""

import numpy as np


def execute(chunk, low=0, high=255):
    if not high > low:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    array = np.asarray(chunk, dtype=np.float32)
    scaled = (np.clip(array, low, high) - low) * (255.0 / (high - low))
    return chunk.with_array(np.round(scaled).astype(np.uint8))
