"""Torch threads per stage: PHYSML_TORCH_THREADS (2, or fewer cores, when unset), the CLI's --threads, restored
after; the count is per thread, so the flow's tasks in threads do not change each other's."""

from __future__ import annotations

import os

import pytest
import torch

from physml import stages, threads
from physml.cli import main


def test_stage_threads_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.stage_threads() == threads.default_threads() == min(2, threads.available_cores())
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.stage_threads() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(ValueError, match="PHYSML_TORCH_THREADS must be an integer >= 1"):
            threads.stage_threads()


def test_torch_threads_sets_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The block gets the threads asked for, and after it the count is back to what it was: 3 here, neither
    the default of this 2-core machine nor a count the blocks set, so a missing restore shows."""
    monkeypatch.setenv(threads.ENV, "1")
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with threads.torch_threads():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with threads.torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_cli_stage_gets_threads_and_the_environment_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []
    monkeypatch.setattr(stages, "train", lambda *a, **k: seen.append(os.environ.get(threads.ENV)) or "done")
    monkeypatch.delenv(threads.ENV, raising=False)
    assert main(["train", "--case", "stefan", "--model", "anp", "--threads", "3", "--no-progress"]) == 0
    assert main(["train", "--case", "stefan", "--model", "anp", "--no-progress"]) == 0
    assert seen == ["3", str(min(2, threads.available_cores()))]  # 3: not the default, so --threads is read
    assert threads.ENV not in os.environ
    assert main(["train", "--case", "stefan", "--model", "anp", "--threads", "0"]) == 2


def test_the_count_is_per_thread() -> None:
    """The premise of running the flow's tasks side by side in threads with the stages' thread count: a count set
    in one thread is not the count of another thread running at the same time."""
    import threading

    seen: dict[int, int] = {}
    both_set, both_read = threading.Barrier(2, timeout=30), threading.Barrier(2, timeout=30)

    def task(n: int) -> None:
        with threads.torch_threads(n):
            both_set.wait()
            seen[n] = torch.get_num_threads()
            both_read.wait()

    workers = [threading.Thread(target=task, args=(n,)) for n in (1, 3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert seen == {1: 1, 3: 3}
