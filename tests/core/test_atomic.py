"""Generated folders are published whole: parallel jobs never read a half-written dataset."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from core.atomic import atomic_folder


def _complete(folder: Path) -> bool:
    return (folder / "DONE").exists()


def _writer(target: str, tag: int) -> None:
    with atomic_folder(Path(target), _complete) as tmp:
        for i in range(20):
            (tmp / f"part{i}.txt").write_text(f"{tag}\n")
            time.sleep(0.005)
        (tmp / "DONE").write_text(str(tag))


def _reader(target: str, seen: mp.Queue) -> None:
    """Polls until the folder exists; whenever it exists it must be whole."""
    deadline = time.time() + 30
    while time.time() < deadline:
        folder = Path(target)
        if folder.exists():
            files = sorted(p.name for p in folder.iterdir())
            seen.put(len(files))
            return
        time.sleep(0.001)
    seen.put(-1)


def test_concurrent_writers_publish_one_whole_folder(tmp_path):
    target = tmp_path / "embedded"
    ctx = mp.get_context("fork")
    seen = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(str(target), seen)) for _ in range(2)]
    writers = [ctx.Process(target=_writer, args=(str(target), t)) for t in range(3)]
    for p in readers + writers:
        p.start()
    for p in readers + writers:
        p.join(60)
        assert p.exitcode == 0
    assert [seen.get(), seen.get()] == [21, 21]  # 20 parts + DONE, never fewer
    tags = {(target / f"part{i}.txt").read_text() for i in range(20)}
    assert len(tags) == 1 and (target / "DONE").read_text() + "\n" in tags  # one writer's folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedded"]  # no temp folders left


def test_a_stale_partial_folder_is_replaced(tmp_path):
    target = tmp_path / "embedded"
    target.mkdir()
    (target / "part0.txt").write_text("half-written by a killed job")
    _writer(str(target), 7)
    assert (target / "DONE").read_text() == "7" and (target / "part0.txt").read_text() == "7\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedded"]


def test_an_error_while_writing_leaves_no_folder(tmp_path):
    target = tmp_path / "embedded"
    try:
        with atomic_folder(target, _complete) as tmp:
            (tmp / "part0.txt").write_text("x")
            raise RuntimeError("generator failed")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
