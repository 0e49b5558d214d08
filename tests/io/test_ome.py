"""chunkflow.io.ome: OME-Zarr multiscale metadata to voxel geometry, and back."""

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.ome import find_multiscale, ome_geometry, ome_multiscale


def test_a_new_image_multiscale_reads_back_as_the_chunk_geometry():
    chunk = Chunk(np.zeros((2, 3, 4, 5), np.uint8), (7, 8, 9), (40, 4, 2))
    multiscale = ome_multiscale(chunk, "raw")
    assert [a["name"] for a in multiscale["axes"]] == ["c", "z", "y", "x"]
    found = find_multiscale("x", {"ome": {"version": "0.5", "multiscales": [multiscale]}})
    assert found is multiscale
    assert ome_geometry("x", multiscale, 0, 4) == ((7, 8, 9), (40, 4, 2))


def test_units_and_the_multiscale_transform_compose_in_nanometers():
    multiscale = {
        "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [0.04, 0.008, 0.008]},
                    {"type": "translation", "translation": [0.4, 0.08, 0.0]},
                ],
            }
        ],
        "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 2.0]}],
    }
    assert find_multiscale("x", {"multiscales": [multiscale]}) is multiscale  # 0.4 layout
    offset, size = ome_geometry("x", multiscale, 0, 3)
    assert size == (40, 16, 16) and offset == (10, 10, 0)


def test_a_voxel_size_of_a_fraction_of_a_nanometer_is_refused():
    multiscale = {
        "axes": ["z", "y", "x"],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.5, 1, 1]}]}
        ],
    }
    with pytest.raises(ChunkflowError, match="img: OME-Zarr voxel size .* not a whole number"):
        ome_geometry("img", multiscale, 0, 3)
    assert find_multiscale("x", {"other": 1}) is None


def test_zarr_format_for_an_ome_version():
    from chunkflow.errors import ParameterError
    from chunkflow.io.ome import zarr_format_for

    assert zarr_format_for() is None and zarr_format_for(3) == 3
    assert zarr_format_for(None, True, "0.4") == 2 and zarr_format_for(3, True, "0.5") == 3
    with pytest.raises(ParameterError, match="^`ome_version` needs `ome`$"):
        zarr_format_for(None, False, "0.5")
    with pytest.raises(ParameterError, match="0.4 is zarr format 2, not `zarr_format` 3$"):
        zarr_format_for(3, True, "0.4")


@pytest.mark.parametrize(
    "options,message",
    [
        ("--ome-version 0.5", "--ome-version needs --ome"),
        (
            "--ome --ome-version 0.4 --zarr-format 3",
            "OME-Zarr 0.4 is zarr format 2, not --zarr-format 3",
        ),
    ],
)
def test_save_zarr_names_its_flags(run_cli, options, message):
    from tests.conftest import error_line

    result = run_cli(f"create-chunk -s 2 2 2 save-zarr -f o.zarr {options}", expect=1)
    assert error_line(result).endswith(message)
