"""Writing a run's files whole or not at all, so that a crash never leaves half a file to resume from."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def write_atomically(path: Path, data: bytes) -> None:
    """`data` to `path` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_arrays(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """Named arrays to an `.npz` file at `path`, whole or not at all."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(Path(path), buffer.getvalue())


__all__ = ["save_arrays", "write_atomically"]
