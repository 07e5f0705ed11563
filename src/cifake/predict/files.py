"""Expand the paths a user types into image files: files as given, folders recursively, and globs."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from pathlib import Path

# In folders, only these are taken (a folder may hold notes, manifests, ...); a file named explicitly is
# always tried, whatever its name, and reported if it is not an image.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files in the order given; a folder's images sorted by path; a pattern's matches sorted."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists() and glob.has_magic(str(raw)):
            for match in sorted(glob.glob(str(raw), recursive=True)):
                yield from expand_paths([match]) if Path(match).is_dir() else [Path(match)]
        else:
            yield path  # a missing file is reported by the reader, with its name
