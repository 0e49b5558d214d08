"""Training data: label targets (affinities, grown boundaries, balanced loss weights) and
seeded augmentations (mirror/transpose, elastic, intensity, noise, section defects)."""
