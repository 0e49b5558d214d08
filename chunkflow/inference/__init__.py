"""Patch-blending ConvNet inference.

A chunk of any size is cut into overlapping patches (`grid`), the patches run through a model
in batches (`backends`), and the outputs are blended with a bump weight (`bump`) so that seams
vanish (`engine`). Test-time augmentation lives in `augment`; `build` puts a grid, a device,
a model and the engine together from plain parameters, as the `inference` operator does.
"""
