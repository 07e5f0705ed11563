"""Find the images of a CIFAKE source: a folder tree, a zip of it, a folder of split zips, or REAL/ + FAKE/.

Layout rules (names are case-insensitive):
- an image's label is the nearest enclosing folder named REAL or FAKE;
- its split is the folder just above that one when it is named train or test, else ``all``
  (a user's own data: one folder holding REAL/ and FAKE/);
- its source (the generator, or the camera set) is the folder just below the label folder
  (``train/FAKE/stylegan2/x.jpg``: ``stylegan2``), or the label's name for a file directly in it;
- a folder that holds .zip files at its top level is read through those zips only (our split zips);
- operating-system litter (``.DS_Store``, ``__MACOSX/``, ``._*``) is ignored; any other file under
  REAL/ or FAKE/ is an image candidate, and one that does not decode is reported, not dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LABELS = {"real": 1, "fake": 0}  # REAL is the positive class, as in the study
LABEL_NAMES = {1: "REAL", 0: "FAKE"}
SPLITS = ("train", "test")
ALL_SPLIT = "all"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_CLASS_SUFFIX = re.compile(r"^\d+ \((\d+)\)$")
_BARE_NUMBER = re.compile(r"^\d+$")


class SourceError(ValueError):
    """A data source that cannot be read at all (missing, empty, or of an unknown layout)."""


@dataclass(frozen=True)
class Member:
    """One image candidate: where its bytes live and what the layout says about it."""

    name: str  # path relative to the source (or inside the zip), e.g. "train/REAL/0 (2).jpg"
    split: str
    label: int
    container: str  # the zip that holds it, or "" when `name` is a file under the source folder
    zip_entry: tuple[int, int, int] | None = None  # (header offset, compressed size, method) inside the zip
    source: str = ""  # the folder under REAL/ or FAKE/ that holds it, else the label's name

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", LABEL_NAMES[self.label])


def cifar_class(name: str) -> int:
    """CIFAR-10 class from a CIFAKE file name: ``N.jpg`` is 0 (airplane), ``N (k).jpg`` is k-1; -1 if neither."""
    stem = PurePosixPath(name).stem
    if _BARE_NUMBER.match(stem):
        return 0
    match = _CLASS_SUFFIX.match(stem)
    if match and 1 <= int(match.group(1)) <= len(CIFAR10_CLASSES):
        return int(match.group(1)) - 1
    return -1


def cifake_file_name(index: int, class_index: int) -> str:
    """CIFAKE's naming: "N.jpg" for class 0 (airplane), "N (k).jpg" for class k-1."""
    return f"{index}.jpg" if class_index == 0 else f"{index} ({class_index + 1}).jpg"


def classify(path: str) -> tuple[str, int, str] | None:
    """(split, label, source) of a relative path, or None when it is not under a REAL/FAKE folder."""
    parts = path.split("/")
    if _is_litter(parts):
        return None
    for i in range(len(parts) - 2, -1, -1):
        label = LABELS.get(parts[i].lower())
        if label is not None:
            parent = parts[i - 1].lower() if i > 0 else ""
            source = parts[i + 1] if i + 2 < len(parts) else LABEL_NAMES[label]
            return (parent if parent in SPLITS else ALL_SPLIT), label, source
    return None


def _is_litter(parts: list[str]) -> bool:
    return any(p == "__MACOSX" for p in parts) or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def find_members(source: str | os.PathLike) -> list[Member]:
    """Every image candidate of a source, sorted by name; raises SourceError when there are none."""
    root = Path(source)
    zips = source_zips(root)
    members = [m for z in zips for m in _zip_members(z)] if zips else list(_folder_members(root))
    if not members:
        raise SourceError(
            f"{root}: found no images under REAL/ or FAKE/ folders "
            "(expected train/REAL, train/FAKE, test/REAL, test/FAKE, or REAL/ and FAKE/)"
        )
    members.sort(key=lambda m: (m.container, m.name))
    return members


def source_zips(root: Path) -> list[Path]:
    """The zips a source is read through: itself, the zips at the top of a folder, or none (a folder tree)."""
    if not root.exists():
        raise SourceError(f"{root}: no such file or folder")
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise SourceError(f"{root}: not a zip file and not a folder")
        return [root]
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".zip")


def _zip_members(path: Path) -> Iterable[Member]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{path}: unreadable zip ({exc})") from exc
    for info in infos:
        where = classify(info.filename)
        if where:
            entry = (info.header_offset, info.compress_size, info.compress_type)
            yield Member(info.filename, where[0], where[1], str(path), entry, where[2])


def _folder_members(root: Path) -> Iterable[Member]:
    for folder, _, files in os.walk(root):
        for file in files:
            name = Path(folder, file).relative_to(root).as_posix()
            where = classify(name)
            if where:
                yield Member(name, where[0], where[1], "", None, where[2])


def fingerprint(source: str | os.PathLike) -> str:
    """A key that changes when any file of the source changes (path, size or modification time).

    Zips are keyed by their own size and time, so a warm load never lists their members.
    """
    root = Path(source).resolve()
    zips = source_zips(root)
    if zips:
        stats = [(str(z), *_stat(z)) for z in zips]
    else:
        stats = [(m.name, *_stat(root / m.name)) for m in _folder_members(root)]
        stats.sort()
    return hashlib.sha256(json.dumps([str(root), stats]).encode()).hexdigest()[:20]


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns
