"""The decode cache: a source decoded once at a model's input (size, resize or crop) into .npy files, keyed by the
source's files, the decoder version and the preprocessing, and opened as `CifakeData`.

Pixels are streamed to disk as chunks are decoded (pwrite, no memory map), so building the cache of a dataset
larger than RAM holds a few chunks at a time.
"""

from __future__ import annotations

import gc
import json
import math
import multiprocessing
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cifake.data.dataset import CifakeData, ImageSet, SkippedFile, available_cores, default_cache_root
from cifake.data.decode import DECODER_VERSION, decode_files
from cifake.data.pixels import NpyWriter, Pixels
from cifake.data.preprocess import STUDY_INPUT, Preprocess
from cifake.data.sources import Member, cifar_class, find_members, fingerprint
from cifake.progress import progress_bar

CHUNK = 2000  # most images per decode task: big enough to hide process overhead, small enough to balance 2 cores
CHUNK_BYTES = 64 << 20  # and at most this many decoded bytes, so that large images keep the memory in flight small


def load_dataset(
    source: str | os.PathLike,
    *,
    preprocess: Preprocess = STUDY_INPUT,
    cache_root: str | os.PathLike | None = None,
    workers: int | None = None,
    refresh: bool = False,
    progress: bool = True,
) -> CifakeData:
    """Load a source at a model's input (`preprocess`: size, resize or crop), decoding it once into a cache keyed
    by the source's files (name, size, mtime) and the preprocessing."""
    key = f"{fingerprint(source)}-d{DECODER_VERSION}-{preprocess.key}"
    cache = Path(cache_root or default_cache_root()) / key
    if refresh or not (cache / "manifest.json").exists():
        _build_cache(find_members(source), Path(source), cache, preprocess, workers or available_cores(), progress)
    return _open_cache(cache, str(source), preprocess)


class _SplitWriter:
    """One split of a cache being built: pixels streamed to disk as chunks arrive, the small columns kept."""

    def __init__(self, folder: Path, split: str, candidates: int, side: int):
        self.split, self.rows = split, 0
        self.images = NpyWriter(folder / f"{split}.images.npy", candidates, (side, side, 3))
        self.members: list[Member] = []
        self.extents: list[np.ndarray] = []
        self.digests: list[np.ndarray] = []

    def add(self, members: list[Member], images: np.ndarray, extents: np.ndarray, digests: np.ndarray) -> None:
        self.images.write(self.rows, images)
        self.rows += len(members)
        self.members += members
        self.extents.append(extents)
        self.digests.append(digests)

    def finish(self, folder: Path) -> int:
        self.images.close()
        chosen = self.members
        np.save(folder / f"{self.split}.extents.npy", np.concatenate(self.extents or [np.empty(0, np.int16)]))
        np.save(folder / f"{self.split}.sha256.npy", np.concatenate(self.digests or [np.empty((0, 32), np.uint8)]))
        np.save(folder / f"{self.split}.labels.npy", np.array([m.label for m in chosen], np.uint8))
        np.save(folder / f"{self.split}.classes.npy", np.array([cifar_class(m.name) for m in chosen], np.int8))
        (folder / f"{self.split}.names.json").write_text(json.dumps([m.name for m in chosen]))
        (folder / f"{self.split}.sources.json").write_text(json.dumps([m.source for m in chosen]))
        return self.rows


def _build_cache(members: list[Member], root: Path, cache: Path, preprocess: Preprocess, workers: int,
                 progress: bool) -> None:
    started = time.perf_counter()
    side = preprocess.stored_size
    # at most CHUNK images and CHUNK_BYTES of pixels a chunk, and at least one chunk a worker: 240 large faces
    # would otherwise decode as one chunk on one core
    per_chunk = max(8, min(CHUNK, CHUNK_BYTES // (side * side * 3), math.ceil(len(members) / workers)))
    chunks = [group[i : i + per_chunk] for group in _by_container(members) for i in range(0, len(group), per_chunk)]
    # Write next to the final folder, then rename: a killed decode never leaves a half-written cache.
    staging = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    candidates = Counter(m.split for m in members)
    writers = {split: _SplitWriter(staging, split, count, side) for split, count in sorted(candidates.items())}
    skipped: list[SkippedFile] = []
    converted = 0
    for chunk, result in _decode_chunks(chunks, root, preprocess, workers, progress):
        converted += result.converted
        skipped += [SkippedFile(_display_name(chunk[i]), reason) for i, reason in result.errors]
        good = [chunk[i] for i in result.index]
        for split, writer in writers.items():
            mine = np.array([m.split == split for m in good], bool)
            if mine.any():
                writer.add([m for m in good if m.split == split], result.images[mine], result.extents[mine],
                           result.sha256[mine])
    splits = {split: writer.finish(staging) for split, writer in writers.items()}
    manifest = {
        "source": str(root),
        "splits": {split: count for split, count in splits.items() if count},
        "converted": converted,
        "skipped": [{"name": s.name, "reason": s.reason} for s in skipped],
        "decode_seconds": round(time.perf_counter() - started, 2),
        "decoder_version": DECODER_VERSION,
        **preprocess.to_dict(),
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


def _decode_chunks(chunks: list[list[Member]], root: Path, preprocess: Preprocess, workers: int, progress: bool):
    """(chunk, DecodedChunk) in order, as they are decoded: at most two chunks a worker in flight."""
    total = sum(len(c) for c in chunks)
    jobs = [(c[0].container, [m.name for m in c], str(root), [m.zip_entry for m in c] if c[0].container else None,
             preprocess) for c in chunks]
    if workers <= 1 or len(chunks) == 1:
        with progress_bar(progress) as bar:
            task = bar.add_task("Decoding images", total=total)
            for chunk, job in zip(chunks, jobs):
                yield chunk, decode_files(*job)
                bar.advance(task, len(chunk))
        return
    # fork where the platform has it (no re-import of the caller's __main__); the first workers are forked in
    # submit(), before the progress display starts its thread. Workers touch only Pillow and NumPy.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ahead = 2 * workers
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context(method)) as pool:
        # A forked worker must never free what it inherits: a collection there that frees an onnxruntime session
        # the caller dropped waits forever on a lock of the caller's threads. Frozen objects are left out of every
        # collection, and every worker is forked in these first submits.
        gc.freeze()
        try:
            futures = [pool.submit(decode_files, *job) for job in jobs[:ahead]]
        finally:
            gc.unfreeze()
        with progress_bar(progress) as bar:
            task = bar.add_task("Decoding images", total=total)
            for n, chunk in enumerate(chunks):
                result = futures[n].result()
                futures[n] = None  # its pixels are written next: do not keep them
                if n + ahead < len(jobs):
                    futures.append(pool.submit(decode_files, *jobs[n + ahead]))
                yield chunk, result
                bar.advance(task, len(chunk))


def _open_cache(cache: Path, source: str, preprocess: Preprocess) -> CifakeData:
    manifest = json.loads((cache / "manifest.json").read_text())
    splits = {}
    for split, count in manifest["splits"].items():
        extents = np.load(cache / f"{split}.extents.npy") if preprocess.crops else None
        splits[split] = ImageSet(
            images=Pixels.of(cache / f"{split}.images.npy", count, preprocess.size, extents),
            labels=np.load(cache / f"{split}.labels.npy"),
            classes=np.load(cache / f"{split}.classes.npy"),
            names=np.array(json.loads((cache / f"{split}.names.json").read_text())),
            sha256=np.load(cache / f"{split}.sha256.npy"),
            sources=np.array(json.loads((cache / f"{split}.sources.json").read_text())),
        )
    skipped = [SkippedFile(**s) for s in manifest["skipped"]]
    return CifakeData(source, splits, skipped, manifest["converted"], cache, preprocess)


