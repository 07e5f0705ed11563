"""Assemble a CIFAKE-layout dataset (train/test x REAL/FAKE) from a real source and a synthetic source.

Files keep their original bytes. Each label is split into train and test, stratified by CIFAR-10 class and
seeded; files are renamed to CIFAKE's naming (N.jpg for class 0, N (k).jpg for class k-1, N counting from 0
per folder and class) so no two collide; files without a class keep their name. build.json maps every new
name to where it came from.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np

from cifake.data.decode import ZipMemberReader
from cifake.data.sources import LABEL_NAMES, Member, cifake_file_name, cifar_class, find_members
from cifake.files import atomic_write


def build_dataset(real: str | os.PathLike, fake: str | os.PathLike, out: str | os.PathLike,
                  test_fraction: float = 1 / 6, seed: int = 1) -> dict:
    """Write OUT/{train,test}/{REAL,FAKE}/...; returns counts per split and label."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must lie between 0 and 1, got {test_fraction}")
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty; choose a new --out")
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    rng = np.random.default_rng(seed)
    origins: dict[str, str] = {}
    counts: dict[str, int] = defaultdict(int)
    for source, label in ((real, 1), (fake, 0)):
        members = [m for m in find_members(source) if m.label == label]
        if not members:
            raise ValueError(f"{source}: no {LABEL_NAMES[label]} images")
        for split, chosen in _split(members, test_fraction, rng).items():
            for new_name, member in _rename(chosen):
                path = staging / split / LABEL_NAMES[label] / new_name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_read(Path(source), member))
                origins[f"{split}/{LABEL_NAMES[label]}/{new_name}"] = f"{source}:{member.name}"
                counts[f"{split}/{LABEL_NAMES[label]}"] += 1
    (staging / "build.json").write_text(json.dumps({"real": str(real), "fake": str(fake), "seed": seed,
                                                    "test_fraction": test_fraction, "files": origins}, indent=1))
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.rmdir()
    os.replace(staging, target)
    return dict(sorted(counts.items()))


def _split(members: list[Member], test_fraction: float, rng: np.random.Generator) -> dict[str, list[Member]]:
    """Per CIFAR-10 class, a seeded test_fraction of the images goes to test, the rest to train."""
    by_class: dict[int, list[Member]] = defaultdict(list)
    for member in sorted(members, key=lambda m: (m.container, m.name)):
        by_class[cifar_class(member.name)].append(member)
    out: dict[str, list[Member]] = {"train": [], "test": []}
    for cls in sorted(by_class):
        group = by_class[cls]
        order = rng.permutation(len(group))
        n_test = int(round(len(group) * test_fraction))
        out["test"] += [group[i] for i in sorted(order[:n_test])]
        out["train"] += [group[i] for i in sorted(order[n_test:])]
    return out


def _rename(members: list[Member]):
    """CIFAKE names numbered per class; names without a class kept (made unique)."""
    next_number: dict[int, int] = defaultdict(int)
    taken: set[str] = set()
    for member in members:
        cls = cifar_class(member.name)
        if cls >= 0:
            name = cifake_file_name(next_number[cls], cls)
            next_number[cls] += 1
        else:
            name = Path(member.name).name
            stem, suffix, k = Path(name).stem, Path(name).suffix, 1
            while name in taken:
                k += 1
                name = f"{stem}-{k}{suffix}"
        taken.add(name)
        yield name, member


def _read(root: Path, member: Member) -> bytes:
    if not member.container:
        return (root / member.name).read_bytes()
    reader = ZipMemberReader(member.container, [member.name], [member.zip_entry] if member.zip_entry else None)
    try:
        return reader.read(0)
    finally:
        reader.close()



def subset_zip(source: str | os.PathLike, out: str | os.PathLike, per_label: dict[str, int], seed: int = 1) -> dict:
    """A smaller CIFAKE in one zip, in CIFAKE's layout (SPLIT/LABEL/name, the files' own bytes and names): a
    seeded sample of `per_label[split]` images of each label of each split (all of them where there are fewer).
    Returns the counts per split and label. Small enough to carry to another machine (e.g. a GPU check)."""
    target = Path(out)
    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new --out")
    members = find_members(source)
    rng = np.random.default_rng(seed)
    chosen: list[Member] = []
    counts: dict[str, int] = {}
    for split, count in per_label.items():
        for label in (1, 0):
            group = sorted((m for m in members if m.split == split and m.label == label), key=lambda m: m.name)
            if not group:
                raise ValueError(f"{source}: no {split}/{LABEL_NAMES[label]} images")
            picked = sorted(rng.choice(len(group), size=min(count, len(group)), replace=False))
            chosen += [group[i] for i in picked]
            counts[f"{split}/{LABEL_NAMES[label]}"] = len(picked)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: _write_zip(Path(source), chosen, tmp))
    return counts


def _write_zip(root: Path, members: list[Member], path: str) -> None:
    by_container: dict[str, list[Member]] = defaultdict(list)
    for member in members:
        by_container[member.container].append(member)
    # JPEGs do not compress: stored members keep the zip as fast to read as the originals
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for container, group in by_container.items():
            entries = [m.zip_entry for m in group]
            reader = ZipMemberReader(container, [m.name for m in group], entries if all(entries) else None) \
                if container else None
            try:
                for i, member in enumerate(group):
                    data = reader.read(i) if reader else (root / member.name).read_bytes()
                    name = f"{member.split}/{LABEL_NAMES[member.label]}/{PurePosixPath(member.name).name}"
                    archive.writestr(name, data)
            finally:
                if reader:
                    reader.close()
