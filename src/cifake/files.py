"""Files written so that readers, and a process killed mid-write, never see half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """Call write(temporary path), then rename over `path`: readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, value, indent: int | None = 2) -> Path:
    """Write `value` as JSON, atomically."""
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(value, indent=indent)))
    return path
