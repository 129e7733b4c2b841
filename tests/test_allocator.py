"""physml.allocator: after keep_large_blocks_on_heap a large tensor lives on glibc's heap, not in a fresh mapping."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt is glibc's")

WHERE = """
import sys
import torch
from physml.allocator import keep_large_blocks_on_heap
if sys.argv[1] == "heap":
    assert keep_large_blocks_on_heap() and keep_large_blocks_on_heap()  # applied, and again a no-op
block = torch.empty(64 << 20, dtype=torch.uint8)  # 64 MiB: above glibc's largest mmap threshold
addr = block.data_ptr()
for line in open("/proc/self/maps"):
    fields = line.split()
    lo, hi = (int(v, 16) for v in fields[0].split("-"))
    if lo <= addr < hi:
        print(fields[5] if len(fields) > 5 else "anonymous")
"""


@pytest.mark.parametrize(("mode", "region"), [("default", "anonymous"), ("heap", "[heap]")])
def test_a_64_mib_tensor_is_a_fresh_mapping_by_default_and_on_the_heap_after(mode: str, region: str) -> None:
    out = subprocess.run([sys.executable, "-c", WHERE, mode], capture_output=True, text=True, check=True).stdout
    assert out.strip() == region
