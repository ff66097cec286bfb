"""The inbox watcher lands only files copied into the inbox: a symbolic link dropped there -- or a
linked folder on the way to the file -- would land whatever it points at with the watcher's rights,
so it is refused with a log line and the link itself (never its target) moved to ``.refused/``.

No stack is started: ``InboxWatcher.handle`` is called directly, its Prefect API pointed at a port
nothing listens on (a file that did land would fail there, loudly, when announced).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from mlops_cli.scenarios import Stream
from mlops_cli.stack import InboxWatcher
from mlops_core.adapters.catalog import RegisteredDataset
from mlops_core.adapters.landing import LandingZone
from mlops_core.settings import Settings

NOWHERE = "http://127.0.0.1:9/api"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outside(tmp_path: Path, stream: Stream) -> Path:
    """A real batch, outside the inbox: what a link would make the watcher land."""
    target = tmp_path / "elsewhere" / "batch.parquet"
    target.parent.mkdir()
    shutil.copy(stream.batches[0].path, target)
    return target


def test_a_symbolic_link_in_the_inbox_is_refused_and_moved_aside(
    settings: Settings, registered: RegisteredDataset, stream: Stream, tmp_path: Path
) -> None:
    target = _outside(tmp_path, stream)
    before = _digest(target)
    inbox = settings.inbox / "credit"
    inbox.mkdir(parents=True)
    link = inbox / "dropped.parquet"
    link.symlink_to(target)
    lines: list[str] = []

    InboxWatcher(settings, api_url=NOWHERE, log=lines.append).handle(link)

    assert LandingZone(settings).entries("credit") == [], "nothing landed"
    moved = inbox / ".refused" / "dropped.parquet"
    assert moved.is_symlink() and moved.readlink() == target, "the link itself was moved"
    assert not link.exists() and not link.is_symlink()
    assert target.is_file() and _digest(target) == before, "the target is untouched"
    assert not (inbox / ".submitted").exists()
    assert lines == [
        f"inbox: dropped.parquet: refused: a symbolic link (to {target}); "
        "copy the file into the inbox instead"
    ]


def test_a_link_to_a_system_file_is_refused(
    settings: Settings, registered: RegisteredDataset
) -> None:
    labels = settings.inbox / "credit" / "labels"
    labels.mkdir(parents=True)
    link = labels / "passwd.csv"
    link.symlink_to("/etc/passwd")
    lines: list[str] = []

    InboxWatcher(settings, api_url=NOWHERE, log=lines.append).handle(link)

    assert LandingZone(settings, "labels").entries("credit") == []
    assert LandingZone(settings).entries("credit") == []
    assert (settings.inbox / "credit" / ".refused" / "passwd.csv").is_symlink()
    assert len(lines) == 1 and "refused: a symbolic link (to /etc/passwd)" in lines[0]
    assert "copy the file into the inbox instead" in lines[0]


def test_a_file_behind_a_linked_labels_folder_is_refused(
    settings: Settings, registered: RegisteredDataset, stream: Stream, tmp_path: Path
) -> None:
    target = _outside(tmp_path, stream)
    dataset = settings.inbox / "credit"
    dataset.mkdir(parents=True)
    (dataset / "labels").symlink_to(target.parent, target_is_directory=True)
    lines: list[str] = []

    InboxWatcher(settings, api_url=NOWHERE, log=lines.append).handle(
        dataset / "labels" / "batch.parquet"
    )

    assert LandingZone(settings, "labels").entries("credit") == []
    assert target.is_file(), "the file behind the link is left where it is"
    assert (dataset / ".refused" / "labels").is_symlink(), "the linked folder is moved aside"
    assert lines == [
        f"inbox: batch.parquet: refused: a symbolic link (credit/labels to {target.parent}); "
        "copy the file into the inbox instead"
    ]


def test_a_linked_dataset_folder_is_refused_and_left_alone(
    settings: Settings, registered: RegisteredDataset, stream: Stream, tmp_path: Path
) -> None:
    target = _outside(tmp_path, stream)
    settings.inbox.mkdir(parents=True)
    (settings.inbox / "credit").symlink_to(target.parent, target_is_directory=True)
    lines: list[str] = []

    InboxWatcher(settings, api_url=NOWHERE, log=lines.append).handle(
        settings.inbox / "credit" / "batch.parquet"
    )

    assert LandingZone(settings).entries("credit") == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["batch.parquet"], (
        "nothing is written into the folder the link points at"
    )
    assert len(lines) == 1 and "refused: a symbolic link (credit to " in lines[0]
