"""Duplicate audit: byte-identical and pixel-identical images within and across splits (train/test leakage)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifake.data.dataset import CifakeData, ImageSet
from cifake.data.sources import LABEL_NAMES
from cifake.report import Report

KINDS = ("bytes", "pixels")  # byte-identical files; identical decoded pixels (re-encoded copies too)


@dataclass(frozen=True)
class DuplicateGroup:
    kind: str  # "bytes" or "pixels"
    members: list[tuple[str, str, str]]  # (split, label name, image name)


def image_keys(images: ImageSet, kind: str) -> list[bytes]:
    """One key per image: the file's sha256 ("bytes") or a hash of its decoded pixels ("pixels")."""
    if kind == "bytes":
        return [row.tobytes() for row in np.asarray(images.sha256)]
    if kind == "pixels":
        return [hashlib.blake2b(np.ascontiguousarray(im).data, digest_size=16).digest() for im in images.images]
    raise ValueError(f"unknown duplicate kind {kind!r}; expected one of {KINDS}")


def split_keys(data: CifakeData, kind: str) -> dict[str, list[bytes]]:
    """image_keys of every split (hashing all pixels takes a second or two: compute once, pass around)."""
    return {split: image_keys(images, kind) for split, images in data.splits.items()}


def find_duplicates(data: CifakeData, kind: str, keys: dict[str, list[bytes]] | None = None) -> list[DuplicateGroup]:
    """Groups of two or more images sharing a key, over every split of the source."""
    keys = keys or split_keys(data, kind)
    groups: dict[bytes, list[tuple[str, str, str]]] = defaultdict(list)
    for split, images in data.splits.items():
        for key, label, name in zip(keys[split], images.labels, images.names):
            groups[key].append((split, LABEL_NAMES[int(label)], str(name)))
    return [DuplicateGroup(kind, sorted(m)) for m in groups.values() if len(m) > 1]


def leaked_mask(data: CifakeData, split: str = "test", kind: str = "pixels", reference: str = "train",
                keys: dict[str, list[bytes]] | None = None) -> np.ndarray:
    """True for each image of `split` that also occurs in `reference` (the train split): a leaked item."""
    if reference not in data.splits:
        return np.zeros(len(data[split]), bool)
    keys = keys or {s: image_keys(data[s], kind) for s in (split, reference)}
    seen = set(keys[reference])
    return np.array([key in seen for key in keys[split]], bool)


def _pair_counts(groups: list[DuplicateGroup]) -> dict[str, int]:
    """Duplicate pairs by where their two images lie, e.g. {"train/FAKE ~ test/FAKE": n}."""
    counts: Counter[str] = Counter()
    for group in groups:
        places = [f"{split}/{label}" for split, label, _ in group.members]
        for i in range(len(places)):
            for j in range(i + 1, len(places)):
                counts[" ~ ".join(sorted((places[i], places[j]), reverse=True))] += 1
    return dict(sorted(counts.items()))


def audit(data: CifakeData) -> dict:
    """The full audit as plain data: duplicate groups and pair counts of each kind, and the leaked test items."""
    report: dict = {"source": data.source, "splits": {s: len(v) for s, v in data.splits.items()}}
    for kind in KINDS:
        keys = split_keys(data, kind)
        groups = find_duplicates(data, kind, keys)
        report[kind] = {
            "groups": len(groups),
            "images_in_groups": sum(len(g.members) for g in groups),
            "pairs": _pair_counts(groups),
            "members": [[list(m) for m in g.members] for g in groups],
        }
        if "test" in data.splits:
            mask = leaked_mask(data, "test", kind, keys=keys)
            report[f"leaked_test_{kind}"] = sorted(str(n) for n in data["test"].names[mask])
    return report


def write_audit(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the audit as JSON (every group) and as Markdown and HTML (the summary); returns the JSON and
    Markdown paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "audit.json"
    json_path.write_text(json.dumps(report, indent=1))
    md_path, _ = audit_document(report).write(out, "audit")
    return json_path, md_path


def audit_document(report: dict) -> Report:
    document = Report(f"Duplicate audit of `{report['source']}`")
    document.table(["split", "images"], [[split, f"{n:,}"] for split, n in report["splits"].items()])
    for kind, title in (("bytes", "Byte-identical files"), ("pixels", "Pixel-identical images (after decoding)")):
        section = report[kind]
        document.heading(title)
        document.paragraph(f"{section['groups']:,} groups holding {section['images_in_groups']:,} images.")
        if section["pairs"]:
            document.table(["where the two images lie", "pairs"], [[w, f"{n:,}"] for w, n in section["pairs"].items()])
    for kind in KINDS:
        leaked = report.get(f"leaked_test_{kind}")
        if leaked is not None:
            document.paragraph(f"Test images with a {kind}-identical copy in train (leaked): **{len(leaked):,}**.")
    document.paragraph("`cifake evaluate --exclude-leaked` leaves the pixel-identical leaked test images out.")
    return document
