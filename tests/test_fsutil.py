"""atomic_dir: a published folder is whole or absent, never half-written."""
import pytest

from harness.fsutil import atomic_dir


def test_success_replaces_the_old_folder_in_one_step(tmp_path):
    dest = tmp_path / "models" / "m"
    dest.mkdir(parents=True)
    (dest / "old.txt").write_text("old")
    with atomic_dir(dest) as tmp:
        assert tmp.parent == dest.parent and tmp != dest
        (tmp / "new.txt").write_text("new")
        assert (dest / "old.txt").exists()  # readers still see the old folder meanwhile
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m"]  # no temp folder left
    assert dest.stat().st_mode & 0o777 == 0o755


def test_failure_keeps_the_old_folder_and_cleans_up(tmp_path):
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_dir(dest) as tmp:
            (tmp / "half.bin").write_bytes(b"\0" * 10)
            raise RuntimeError("disk full")
    assert (dest / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_failure_without_an_old_folder_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "new") as tmp:
            (tmp / "x").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
