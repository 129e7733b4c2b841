"""physml.atomic: a file appears whole under its final name, or the old one stays."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from physml.atomic import atomic_path, remove_stale_partials, staging_dir


def test_success_replaces_and_a_failure_keeps_the_old_file(tmp_path: Path) -> None:
    final = tmp_path / "deep" / "summary.json"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.endswith(".partial")
        tmp.write_text("first")
    assert final.read_text() == "first"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(final) as tmp:
        tmp.write_text("half of the sec")
        raise RuntimeError("interrupted")
    assert final.read_text() == "first"
    assert [p.name for p in final.parent.iterdir()] == ["summary.json"]


def test_a_block_that_writes_nothing_is_an_error_not_an_empty_file(tmp_path: Path) -> None:
    final = tmp_path / "model.pt"
    with pytest.raises(FileNotFoundError), atomic_path(final):
        pass
    assert not final.exists()


def _killed_inside(writer: str, final: Path, write: str) -> None:
    """Run ``with <writer>(final) as tmp: <write>`` in a child process that SIGKILLs itself inside the block."""
    code = (f"import os, signal, sys\nfrom physml.atomic import {writer}\nwith {writer}(sys.argv[1]) as tmp:\n"
            f"    {write}\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(final)], check=False)
    assert killed.returncode == -signal.SIGKILL


def test_a_killed_writer_leaves_a_partial_that_the_next_write_removes(tmp_path: Path) -> None:
    final = tmp_path / "boon.pt"
    final.write_text("intact")
    _killed_inside("atomic_path", final, "tmp.write_text('half')")
    left = list(tmp_path.glob(".boon.pt.*.partial"))
    assert len(left) == 1 and final.read_text() == "intact"
    other = tmp_path / f".boon.pt.{os.getppid()}.1.partial"  # a live process (pytest's parent) is writing
    other.write_text("in progress")
    unrelated = tmp_path / f".plain.pt.{left[0].name.split('.')[3]}.1.partial"
    unrelated.write_text("another file's")
    with atomic_path(final) as tmp:
        tmp.write_text("second")
    assert final.read_text() == "second"
    assert not left[0].exists()
    assert other.exists() and unrelated.exists()


def test_remove_stale_partials_ignores_names_it_did_not_write(tmp_path: Path) -> None:
    final = tmp_path / "summary.json"
    odd = [tmp_path / ".summary.json.notapid.1.partial", tmp_path / ".summary.json.partial"]
    for path in odd:
        path.write_text("x")
    assert remove_stale_partials(final) == []
    assert all(path.exists() for path in odd)


def test_staging_dir_is_removed_after_the_block_and_a_killed_ones_by_the_next(tmp_path: Path) -> None:
    final = tmp_path / "reports"
    with pytest.raises(RuntimeError), staging_dir(final) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "index.md").write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    _killed_inside("staging_dir", final, "(tmp / 'index.md').write_text('half')")
    assert len(list(tmp_path.glob(".reports.*.partial"))) == 1
    with staging_dir(final) as tmp:
        (tmp / "index.md").write_text("whole")
        os.replace(tmp, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
    assert (final / "index.md").read_text() == "whole"


def test_move_contents_replaces_sub_folders_whole_and_keeps_other_top_level_files(tmp_path: Path) -> None:
    """evaluate's figures folder is its own: a figure the new run no longer draws does not stay behind; a file
    beside the metrics that another stage wrote (the seed study's seeds.json) does."""
    from physml.atomic import move_contents

    final = tmp_path / "metrics"
    (final / "figures").mkdir(parents=True)
    (final / "figures" / "dropped.png").write_text("old figure")
    (final / "figures" / "kept.png").write_text("old")
    (final / "none.json").write_text("old metrics")
    (final / "seeds.json").write_text("the seed study's")
    with staging_dir(final / "evaluate") as staging:
        (staging / "figures").mkdir()
        (staging / "figures" / "kept.png").write_text("new")
        (staging / "none.json").write_text("new metrics")
        move_contents(staging, final)
    assert sorted(p.name for p in (final / "figures").iterdir()) == ["kept.png"]
    assert (final / "figures" / "kept.png").read_text() == "new"
    assert (final / "none.json").read_text() == "new metrics" and (final / "seeds.json").read_text() == "the seed study's"
    assert sorted(p.name for p in final.iterdir()) == ["figures", "none.json", "seeds.json"]  # nothing left over
    fresh = tmp_path / "fresh"
    with staging_dir(fresh / "evaluate") as staging:
        (staging / "figures").mkdir()
        (staging / "figures" / "a.png").write_text("a")
        move_contents(staging, fresh)
    assert sorted(p.name for p in fresh.rglob("*")) == ["a.png", "figures"]


def test_move_contents_puts_the_old_folder_back_when_the_new_one_cannot_move(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from physml import atomic

    final = tmp_path / "metrics"
    (final / "figures").mkdir(parents=True)
    (final / "figures" / "old.png").write_text("old")
    real = os.replace
    staging = tmp_path / "staging"
    (staging / "figures").mkdir(parents=True)
    (staging / "figures" / "new.png").write_text("new")

    def failing(src: object, dst: object) -> None:
        if Path(src) == staging / "figures":
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        atomic.move_contents(staging, final)
    assert sorted(p.name for p in final.iterdir()) == ["figures"]
    assert [p.name for p in (final / "figures").iterdir()] == ["old.png"]
    monkeypatch.setattr(atomic.os, "replace", real)
    atomic.move_contents(staging, final)  # the next call is not stopped by anything the failed one left
    assert [p.name for p in (final / "figures").iterdir()] == ["new.png"]
