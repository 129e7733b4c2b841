"""Atomic file writes: a file appears whole under its final name, or not at all.

Datasets and their manifests, checkpoints, summaries, predictions and metrics files are written
through :func:`atomic_path`, so an interrupted stage never leaves a half-written file that a later
stage, DVC or a resumed run would take for a finished one (the evaluation and the report stage a
whole folder in a temporary sibling and move it in instead). What a killed writer leaves behind
is removed by the next write of the same file.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"

__all__ = ["atomic_path", "move_contents", "remove_stale_partials", "staging_dir", "write_json"]


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (its folder is created); write the file there.

    When the block succeeds the file is flushed to disk and renamed onto ``final`` (``os.replace``,
    atomic on POSIX); when it raises, the temporary file is removed and ``final`` is left as it was.
    The temporary name carries the process and thread, so concurrent writers never share one, and
    temporary files of ``final`` left by killed writers are removed first (:func:`remove_stale_partials`).
    """
    final = Path(final)
    tmp = _fresh_partial(final)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(final: str | Path, payload: Any) -> Path:
    """Write ``payload`` to ``final`` as JSON through :func:`atomic_path`: keys sorted, indented by 2, one newline
    at the end, so the same payload always gives the same bytes (what DVC hashes and git diffs). Returns ``final``."""
    final = Path(final)
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return final


@contextmanager
def staging_dir(final: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``final`` to build outputs in; it is removed when the block ends.

    The block moves what it built into place itself (``os.replace`` of the folder onto ``final``, or of
    its files one by one); whatever is left, after a success or a failure, is deleted. Like
    :func:`atomic_path`, staging folders of ``final`` left by killed writers are removed first.
    """
    tmp = _fresh_partial(Path(final))
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_contents(staging: Path, final: Path) -> None:
    """Move what was built in ``staging`` to the same place under ``final``: each sub-folder (figures) replaces
    its counterpart whole, first, then each top-level file (metrics), each with ``os.replace``. On one filesystem
    every file appears whole, and a reader that sees the metrics sees their figures. The files of ``final``
    that ``staging`` does not hold stay (another stage's, e.g. the seed study's ``seeds.json``); a sub-folder's
    do not: a figure the new run no longer draws goes with the old folder. Between the two renames of a
    sub-folder a reader finds none; if the second fails, the old folder is put back."""
    final = Path(final)
    final.mkdir(parents=True, exist_ok=True)
    for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
        target = final / folder.name
        old = _fresh_partial(target)  # a writer killed before the rmtree leaves it to the next one
        shutil.rmtree(old, ignore_errors=True)  # this writer's own, of an earlier call that failed in between
        kept = target.is_dir() and not target.is_symlink()
        if kept:
            os.replace(target, old)
        elif target.exists() or target.is_symlink():
            target.unlink()
        try:
            os.replace(folder, target)
        except BaseException:
            if kept:  # the old folder goes back: a failed move leaves what was there
                os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    for path in sorted(p for p in staging.iterdir() if not p.is_dir()):
        os.replace(path, final / path.name)


def _fresh_partial(final: Path) -> Path:
    """This writer's temporary name beside ``final`` (folder created, dead writers' leftovers removed)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    return final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}{PARTIAL_SUFFIX}")


def remove_stale_partials(final: str | Path) -> list[Path]:
    """Remove the temporary files and folders of ``final`` left by writers that no longer run; return them.

    A process killed inside :func:`atomic_path` or :func:`staging_dir` (SIGKILL, out of memory, a
    cancelled worker) cannot clean up, so its ``.<name>.<pid>.<thread>.partial`` stays beside ``final``;
    ``final`` itself is intact. One whose process is still alive (another writer right now) is kept.
    """
    final = Path(final)
    removed: list[Path] = []
    for tmp in final.parent.glob(f".{final.name}.*{PARTIAL_SUFFIX}"):
        fields = tmp.name[len(final.name) + 2 : -len(PARTIAL_SUFFIX)].split(".")
        if len(fields) != 2 or not fields[0].isdigit():
            continue
        if not _process_alive(int(fields[0])):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
