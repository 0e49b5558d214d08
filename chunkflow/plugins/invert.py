"""Built-in plugin: invert an image chunk within its dtype range (max - value; 1 - value for
floats)."""

import numpy as np


def execute(chunk):
    array = np.asarray(chunk)
    if array.dtype.kind == "f":
        return chunk.with_array(1.0 - array)
    return chunk.with_array(np.iinfo(array.dtype).max - array)
