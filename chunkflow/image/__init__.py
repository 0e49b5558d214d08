"""Image processing over chunks: contrast and intensity normalization, quantization, filters,
channel voting and downsampling (single chunks and mip pyramids written to precomputed volumes).

Every function takes and returns `Chunk`s; none prints, parses options or touches a task.
"""
