"""How much memory a request may take: the machine's, or a container's cgroup limit."""

import pytest

import chunkflow.memory as memory
from chunkflow.errors import ChunkflowError


def test_available_memory_is_what_the_machine_has_now():
    import psutil

    available = memory.available_memory()
    assert 0 < available <= psutil.virtual_memory().total


def test_a_cgroup_limit_counts_its_droppable_page_cache_as_available(tmp_path, monkeypatch):
    import types

    import psutil

    machine = types.SimpleNamespace(available=8 * 2**30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: machine)
    (tmp_path / "memory.max").write_text("1073741824\n")  # 1 GiB
    (tmp_path / "memory.current").write_text("805306368\n")  # 768 MiB used ...
    (tmp_path / "memory.stat").write_text("anon 1\ninactive_file 268435456\nactive_file 5\n")
    cgroups = ((f"{tmp_path}/", "memory.max", "memory.current", "inactive_file"),)
    monkeypatch.setattr(memory, "_CGROUPS", cgroups)
    assert memory.available_memory() == 512 * 2**20  # ... of which 256 MiB is page cache
    (tmp_path / "memory.max").write_text("max\n")  # no limit: the machine's memory
    assert memory.available_memory() == 8 * 2**30


@pytest.mark.parametrize(
    "count, text",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (3 * 2**20, "3.0 MiB"),
        (10**12, "931.3 GiB"),
    ],
)
def test_sizes_read_as_people_write_them(count, text):
    assert memory.format_bytes(count) == text


def test_require_memory_names_what_needs_how_much(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 2**30)
    memory.require_memory(2**30, "exactly all of it")  # fits
    with pytest.raises(
        ChunkflowError, match="^a thing needs 2.0 GiB of memory, more than the 1.0 GiB available$"
    ):
        memory.require_memory(2**31, "a thing")
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    memory.require_memory(2**60, "unknown limits")  # nothing to compare with: no refusal
