"""Load a CIFAKE source into uint8 arrays, decoding once into an on-disk cache of memory-mapped .npy files."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifake.data.decode import DECODER_VERSION, IMAGE_SIZE, DecodedChunk, decode_files
from cifake.data.sources import ALL_SPLIT, CIFAR10_CLASSES, LABEL_NAMES, Member, cifar_class, find_members, fingerprint
from cifake.progress import progress_bar

CHUNK = 2000  # images per decode task: big enough to hide process overhead, small enough to balance 2 cores


@dataclass(frozen=True)
class ImageSet:
    """The images of one split. Labels: REAL = 1 (positive class), FAKE = 0. Classes: CIFAR-10 index or -1."""

    images: np.ndarray  # (N, 32, 32, 3) uint8, NHWC
    labels: np.ndarray  # (N,) uint8
    classes: np.ndarray  # (N,) int8
    names: np.ndarray  # (N,) str: path of each image inside the source
    sha256: np.ndarray  # (N, 32) uint8: digest of each file's original bytes

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> ImageSet:
        columns = (self.images, self.labels, self.classes, self.names, self.sha256)
        return ImageSet(*(np.asarray(a)[index] for a in columns))

    def limit(self, per_label: int | None, seed: int = 1) -> ImageSet:
        """At most `per_label` images of each label, drawn at random (seeded), in their original order."""
        return self if per_label is None else self.take(self.limit_indices(per_label, seed))

    def limit_indices(self, per_label: int, seed: int = 1) -> np.ndarray:
        """The sorted indices `limit` keeps."""
        rng = np.random.default_rng(seed)
        keep = [rng.permutation(np.flatnonzero(self.labels == label))[:per_label] for label in (0, 1)]
        return np.sort(np.concatenate(keep))

    def in_memory(self) -> ImageSet:
        """A copy held in RAM (the cache is memory-mapped), for loops that read every image many times."""
        return ImageSet(*(np.array(a) for a in (self.images, self.labels, self.classes, self.names, self.sha256)))

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per label and per CIFAR-10 class, e.g. {"REAL": {"total": 5, "airplane": 1, ...}}."""
        out: dict[str, dict[str, int]] = {}
        for label in (1, 0):
            classes = Counter(self.classes[self.labels == label].tolist())
            row = {"total": int(sum(classes.values()))}
            row |= {name: classes.get(k, 0) for k, name in enumerate(CIFAR10_CLASSES)}
            if classes.get(-1):
                row["unknown"] = classes[-1]
            out[LABEL_NAMES[label]] = row
        return out


@dataclass(frozen=True)
class SkippedFile:
    name: str
    reason: str


@dataclass(frozen=True)
class CifakeData:
    """Every split of a source, what was skipped and converted while decoding, and where the cache lives."""

    source: str
    splits: dict[str, ImageSet]
    skipped: list[SkippedFile] = field(default_factory=list)
    converted: int = 0
    cache_dir: Path | None = None

    def __getitem__(self, split: str) -> ImageSet:
        if split not in self.splits:
            raise KeyError(f"{self.source} has no split {split!r}; it has {', '.join(self.splits)}")
        return self.splits[split]

    def training_split(self) -> ImageSet:
        """The split to train on: ``train`` when the source has one, else the whole of a REAL/FAKE folder."""
        return self.splits.get("train") or self[ALL_SPLIT]


def default_cache_root() -> Path:
    if os.environ.get("CIFAKE_CACHE"):
        return Path(os.environ["CIFAKE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cifake"


def load_dataset(
    source: str | os.PathLike,
    *,
    cache_root: str | os.PathLike | None = None,
    workers: int | None = None,
    refresh: bool = False,
    progress: bool = True,
) -> CifakeData:
    """Load a CIFAKE source, decoding it once into a cache keyed by the source's files (name, size, mtime)."""
    key = f"{fingerprint(source)}-d{DECODER_VERSION}-s{IMAGE_SIZE}"
    cache = Path(cache_root or default_cache_root()) / key
    if refresh or not (cache / "manifest.json").exists():
        _build_cache(find_members(source), Path(source), cache, workers or available_cores(), progress)
    return _open_cache(cache, str(source))


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _build_cache(members: list[Member], root: Path, cache: Path, workers: int, progress: bool) -> None:
    started = time.perf_counter()
    chunks = [group[i : i + CHUNK] for group in _by_container(members) for i in range(0, len(group), CHUNK)]
    results = _decode_chunks(chunks, root, workers, progress)
    ok_members: list[Member] = []
    parts: list[DecodedChunk] = []
    skipped: list[SkippedFile] = []
    for chunk, result in zip(chunks, results):
        ok_members += [chunk[i] for i in result.index]
        parts.append(result)
        skipped += [SkippedFile(_display_name(chunk[i]), reason) for i, reason in result.errors]
    images = np.concatenate([p.images for p in parts])
    digests = np.concatenate([p.sha256 for p in parts])
    # Write next to the final folder, then rename: a killed decode never leaves a half-written cache.
    staging = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    splits = {}
    for split in sorted({m.split for m in ok_members}):
        index = np.array([i for i, m in enumerate(ok_members) if m.split == split])
        chosen = [ok_members[i] for i in index]
        np.save(staging / f"{split}.images.npy", images[index])
        np.save(staging / f"{split}.sha256.npy", digests[index])
        np.save(staging / f"{split}.labels.npy", np.array([m.label for m in chosen], np.uint8))
        np.save(staging / f"{split}.classes.npy", np.array([cifar_class(m.name) for m in chosen], np.int8))
        (staging / f"{split}.names.json").write_text(json.dumps([m.name for m in chosen]))
        splits[split] = len(chosen)
    manifest = {
        "source": str(root),
        "splits": splits,
        "converted": sum(p.converted for p in parts),
        "skipped": [{"name": s.name, "reason": s.reason} for s in skipped],
        "decode_seconds": round(time.perf_counter() - started, 2),
        "decoder_version": DECODER_VERSION,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(staging, cache)


def _by_container(members: list[Member]) -> list[list[Member]]:
    groups: dict[str, list[Member]] = {}
    for member in members:
        groups.setdefault(member.container, []).append(member)
    return list(groups.values())


def _display_name(member: Member) -> str:
    return f"{member.container}:{member.name}" if member.container else member.name


def _decode_chunks(chunks: list[list[Member]], root: Path, workers: int, progress: bool) -> list[DecodedChunk]:
    total = sum(len(c) for c in chunks)
    jobs = [(c[0].container, [m.name for m in c], str(root), [m.zip_entry for m in c] if c[0].container else None)
            for c in chunks]
    if workers <= 1 or len(chunks) == 1:
        with progress_bar(progress) as bar:
            task = bar.add_task("Decoding images", total=total)
            results = []
            for job in jobs:
                results.append(decode_files(*job))
                bar.advance(task, len(job[1]))
            return results
    # fork where the platform has it (no re-import of the caller's __main__); the workers are forked in
    # submit(), before the progress display starts its thread. Workers touch only Pillow and NumPy.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context(method)) as pool:
        futures = [pool.submit(decode_files, *job) for job in jobs]
        with progress_bar(progress) as bar:
            task = bar.add_task("Decoding images", total=total)
            for future, job in zip(futures, jobs):
                future.result()
                bar.advance(task, len(job[1]))
        return [f.result() for f in futures]


def _open_cache(cache: Path, source: str) -> CifakeData:
    manifest = json.loads((cache / "manifest.json").read_text())
    splits = {}
    for split in manifest["splits"]:
        splits[split] = ImageSet(
            images=np.load(cache / f"{split}.images.npy", mmap_mode="r"),
            labels=np.load(cache / f"{split}.labels.npy"),
            classes=np.load(cache / f"{split}.classes.npy"),
            names=np.array(json.loads((cache / f"{split}.names.json").read_text())),
            sha256=np.load(cache / f"{split}.sha256.npy", mmap_mode="r"),
        )
    skipped = [SkippedFile(**s) for s in manifest["skipped"]]
    return CifakeData(source, splits, skipped, manifest["converted"], cache)


def train_val_split(images: ImageSet, fraction: float = 0.1, seed: int = 1) -> tuple[ImageSet, ImageSet]:
    """Carve a validation split from training images: seeded and stratified by label."""
    from sklearn.model_selection import train_test_split  # 1.9 s to import: only where a split is carved

    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie between 0 and 1, got {fraction}")
    train_idx, val_idx = train_test_split(
        np.arange(len(images)), test_size=fraction, random_state=seed, stratify=images.labels
    )
    return images.take(np.sort(train_idx)), images.take(np.sort(val_idx))
