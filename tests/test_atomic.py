"""physml.atomic: a file appears whole under its final name, or the old one stays."""

from pathlib import Path

import pytest

from physml.atomic import atomic_path


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
