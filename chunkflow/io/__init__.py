"""Readers and writers, one module per format. Importing this package loads nothing heavy."""

PRECOMPUTED_ENCODINGS = (
    "raw",
    "compressed_segmentation",
    "jpeg",
    "png",
    "compresso",
    "crackle",
    "fpzip",
)

# Content encodings of the block files of a precomputed volume (cloudfiles' `compress`).
PRECOMPUTED_COMPRESSIONS = ("gzip", "br", "none")
