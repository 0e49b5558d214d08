"""Meshes (zmesh) and skeletons (kimimaro) of segmentation chunks, written so that neuroglancer
and cloud-volume read them: fragments per chunk, then per-object manifests or merged skeletons."""
