"""Precomputed encodings are checked against the data before any info is written."""

from __future__ import annotations

import numpy as np
import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.io.precomputed import check_encoding
from tests.conftest import error_line


@pytest.mark.parametrize(
    "encoding, dtype, channels, layer, reason",
    [
        ("jpeg", "uint16", 1, "image", "Only accepts uint8"),
        ("jpeg", "uint32", 1, "segmentation", "jpeg is lossy and would change label ids"),
        ("compressed_segmentation", "uint32", 1, "image", "is for segmentation layers"),
        ("compressed_segmentation", "uint8", 1, "segmentation", "only supports uint32"),
        ("crackle", "uint32", 3, "segmentation", "does not work here"),
        ("webp", "uint8", 1, "image", "expected one of raw, compressed_segmentation"),
    ],
)
def test_encodings_that_cannot_store_the_data_are_refused(encoding, dtype, channels, layer, reason):
    with pytest.raises(ChunkflowError, match=reason):
        check_encoding(encoding, dtype, channels, layer)


@pytest.mark.parametrize(
    "encoding, dtype, channels, layer",
    [
        ("raw", "float32", 3, "affinity_map"),
        ("jpeg", "uint8", 3, "image"),
        ("compressed_segmentation", "uint64", 1, "segmentation"),
    ],
)
def test_encodings_that_round_trip_pass(encoding, dtype, channels, layer):
    check_encoding(encoding, dtype, channels, layer)


def test_unviewable_encodings_warn(caplog):
    check_encoding("crackle", "uint32", 1, "segmentation")
    assert "not by neuroglancer or tensorstore" in caplog.text


def test_save_with_a_bad_encoding_writes_no_info_and_a_rerun_works(run_cli, tmp_path):
    np.save(tmp_path / "img.npy", np.linspace(0, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8))
    line = error_line(run_cli(f"load-npy -f img.npy save -v {tmp_path}/out -e jpeg", expect=1))
    assert line.startswith("chunkflow: error: save")
    assert "encoding 'jpeg' for image float32 x 1 channel(s) does not work here" in line
    assert not (tmp_path / "out").exists()  # no info committed
    run_cli(f"load-npy -f img.npy save -v {tmp_path}/out -e raw")
    assert (tmp_path / "out" / "info").is_file()
