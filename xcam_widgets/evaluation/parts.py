"""Per-batch files, shared by both engines: what makes a run resumable and reopenable.

With `out`, each finished batch is written at once to `<stem>.parts/batch-<first position>-<hash
of the positions>.npz` (a temporary file, then a rename: a file is whole or absent). A part holds
the batch's image positions, its rows as JSON (floats, NaN included, round-trip exactly) and its
maps (`MapStore` arrays), read back without pickle. `manifest.json` records what the values
depend on; a rerun with other settings stops with an error rather than mixing two evaluations.
A rerun with the same ones reads the parts and computes only the positions missing from them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .batch import BatchResult
from .files import write_atomically
from .maps import ARRAY_NAMES, MapStore

FORMAT = 2  # 1: the parquet parts of xcam-widgets <= 0.1 (rows only)
MANIFEST = "manifest.json"
PART_GLOB = "batch-*.npz"
OUR_FILES = ("batch-*.npz", "batch-*.parquet", MANIFEST, ".*.tmp")

OnRows = Callable[[list[dict], Mapping[int, np.ndarray]], None]


class Part(NamedTuple):
    """One batch as written: its image positions, rows and maps."""

    positions: list[int]
    rows: list[dict]
    maps: MapStore


def encode_part(positions: Sequence[int], result: BatchResult) -> bytes:
    """A batch's `.npz` bytes: positions, rows (JSON, as uint8) and the maps' arrays."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {
        "positions": np.asarray(list(positions), dtype=np.int64),
        "table_rows": np.frombuffer(json.dumps(result.rows).encode(), dtype=np.uint8),
        **MapStore(result.maps).to_arrays(),
    }
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_part(data: bytes | Path) -> Part:
    """The `Part` of `encode_part`'s bytes or of a part file."""
    with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as arrays:
        return Part(
            arrays["positions"].tolist(),
            json.loads(arrays["table_rows"].tobytes()),
            MapStore.from_arrays({name: arrays[name] for name in ARRAY_NAMES}),
        )


class PartsFolder:
    """The parts of one evaluation in `path`, checked against its manifest."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def manifest(self) -> dict[str, Any] | None:
        file = self.path / MANIFEST
        return json.loads(file.read_text()) if file.is_file() else None

    def claim(self, manifest: dict[str, Any]) -> None:
        """Write `manifest`, or check that the one there describes the same evaluation (its
        `meta`, for display only, may differ). Removes writes cut short by an earlier crash."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        found = self.manifest()
        if found is None:
            write_atomically(self.path / MANIFEST, json.dumps(manifest, indent=1).encode())
            return
        differ = sorted(k for k in set(found) | set(manifest) if k != "meta" and found.get(k) != manifest.get(k))
        if differ:
            raise ValueError(
                f"out: {str(self.path)!r} holds the parts of another evaluation ({', '.join(differ)} differ: "
                f"{ {k: found.get(k) for k in differ} } there); pass overwrite=True (--overwrite) to start over, "
                "or use another out"
            )

    def write(self, positions: Sequence[int], payload: bytes) -> Path:
        """A batch's part under a name given by its positions: writing it again replaces it."""
        digest = hashlib.sha1(json.dumps(list(positions)).encode()).hexdigest()[:12]
        path = self.path / f"batch-{positions[0]:09d}-{digest}.npz"
        write_atomically(path, payload)
        return path

    def read(self) -> list[Part]:
        return [decode_part(file) for file in sorted(self.path.glob(PART_GLOB))]

    def remove(self) -> None:
        """Delete this folder's part files and manifest (nothing else), and the folder if then empty."""
        if not self.path.is_dir():
            return
        for pattern in OUR_FILES:
            for file in self.path.glob(pattern):
                file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()


@contextlib.contextmanager
def temporary_parts() -> Iterator[PartsFolder]:
    """A parts folder deleted at the end (the Ray engine without `out`)."""
    with tempfile.TemporaryDirectory(prefix="xcam-parts-") as folder:
        yield PartsFolder(Path(folder))


class Collector:
    """A run's rows and maps as they arrive: first those already in the parts, then batch by
    batch, each written to the parts (when there are parts) before `on_rows` sees it."""

    def __init__(self, parts: PartsFolder | None, on_rows: OnRows | None) -> None:
        self.parts, self.on_rows = parts, on_rows
        self.rows: dict[int, dict] = {}  # by `row`: a batch written twice counts once
        self.maps = MapStore()
        self.done: set[int] = set()

    def resume(self) -> None:
        """Take in the parts already written (a resumed run), and show them to `on_rows` at once."""
        if self.parts is None:
            return
        found = self.parts.read()
        for part in found:
            self.done.update(part.positions)
            for row in part.rows:
                self.rows.setdefault(row["row"], row)
        if found:
            self.maps = MapStore.concat([part.maps for part in found])
            if self.on_rows is not None:
                self.on_rows(sorted(self.rows.values(), key=lambda r: r["row"]), self.maps)

    def add(self, positions: Sequence[int], result: BatchResult, payload: bytes | None = None) -> None:
        """A finished batch: written, kept, shown."""
        if self.parts is not None:
            self.parts.write(positions, encode_part(positions, result) if payload is None else payload)
        for row in result.rows:
            self.rows.setdefault(row["row"], row)
        self.maps.update(result.maps)
        self.done.update(positions)
        if self.on_rows is not None:
            self.on_rows(result.rows, result.maps)


__all__ = ["Collector", "OnRows", "Part", "PartsFolder", "decode_part", "encode_part", "temporary_parts"]
