"""Library errors name parameters; the command line speaks of its flags."""

import pytest

from chunkflow.errors import ChunkflowError, ParameterError, flag_names, renamed


def test_renamed_replaces_quoted_parameters_only():
    message = "`max_mip` 1 is below `mip` 2 at mip 2"
    assert renamed(message, {"max_mip": "--max-mip", "mip": "--mip"}) == (
        "--max-mip 1 is below --mip 2 at mip 2"
    )
    assert renamed(message, {}) == "max_mip 1 is below mip 2 at mip 2"


def test_flag_names_maps_parameter_errors_and_leaves_others():
    with pytest.raises(ChunkflowError) as info:
        with flag_names(shard_bytes="--shard-bytes"):
            raise ParameterError("`shard_bytes` 0 must be positive")
    assert str(info.value) == "--shard-bytes 0 must be positive"
    assert not isinstance(info.value, ParameterError)
    with pytest.raises(ChunkflowError, match="^`kept` as it is$"):
        with flag_names(kept="--kept"):
            raise ChunkflowError("`kept` as it is")
