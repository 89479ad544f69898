"""Per-batch files, shared by both engines: what makes a run resumable and reopenable.

With `out`, each finished batch is written at once to `<stem>.parts/batch-<first position>-<hash
of the positions>.npz` (a temporary file, then a rename: a file is whole or absent). A part holds
the batch's image positions, its rows as JSON (floats, NaN included, round-trip exactly), its
maps (`MapStore` arrays) and its rows' latents (`LatentStore` arrays), read back without pickle.
`manifest.json` records what the values depend on (its meta holds the run's `fingerprint`:
weights, preprocess, images); a rerun with other settings or inputs stops with an error that says
what changed rather than mixing two evaluations. A rerun with the same ones reads the parts and
computes only the positions missing from them. A part that cannot be read (a damaged file) is
named in a warning; a rerun moves it aside (`<name>.damaged`) and recomputes its batch, keeping
the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .batch import BatchResult
from .files import write_atomically
from .fingerprint import changes
from .latents import PREFIX, LatentStore
from .maps import ARRAY_NAMES, MapStore

FORMAT = 2  # 1: the parquet parts of xcam-widgets <= 0.1 (rows only)
MANIFEST = "manifest.json"
PART_GLOB = "batch-*.npz"
DAMAGED = ".damaged"  # a damaged part moved aside by a resumed run
OUR_FILES = ("batch-*.npz", "batch-*.parquet", f"batch-*{DAMAGED}", MANIFEST, ".*.tmp")
# What reading a damaged part raises: a truncated or overwritten zip, a bad CRC, bad JSON, an array missing.
DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError)

OnRows = Callable[[list[dict], Mapping[int, np.ndarray]], None]


class Damaged(NamedTuple):
    """A part file that cannot be read, and why."""

    path: Path
    reason: str


class Part(NamedTuple):
    """One batch as written: its image positions, rows, maps and latents."""

    positions: list[int]
    rows: list[dict]
    maps: MapStore
    latents: LatentStore


def encode_part(positions: Sequence[int], result: BatchResult) -> bytes:
    """A batch's `.npz` bytes: positions, rows (JSON, as uint8), the maps' and the latents' arrays."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {
        "positions": np.asarray(list(positions), dtype=np.int64),
        "table_rows": np.frombuffer(json.dumps(result.rows).encode(), dtype=np.uint8),
        **MapStore(result.maps).to_arrays(),
        **LatentStore(result.latents).to_arrays(),
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
            LatentStore.from_arrays({name: arrays[name] for name in arrays.files if name.startswith(PREFIX)}),
        )


class PartsFolder:
    """The parts of one evaluation in `path`, checked against its manifest."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def manifest(self) -> dict[str, Any] | None:
        file = self.path / MANIFEST
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except ValueError as err:
            raise ValueError(
                f"{str(file)!r} is damaged ({err}); pass overwrite=True (--overwrite) to start afresh"
            ) from err

    def claim(self, manifest: dict[str, Any]) -> None:
        """Write `manifest`, or check that the one there describes the same evaluation: the same
        settings and the same fingerprint (`meta["fingerprint"]`; the rest of `meta`, for display
        only, may differ). Removes writes cut short by an earlier crash."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        found = self.manifest()
        if found is None:
            write_atomically(self.path / MANIFEST, json.dumps(manifest, indent=1).encode())
            return
        start_over = "pass overwrite=True (--overwrite) to start afresh, or use another out"
        old = (found.get("meta") or {}).get("fingerprint")
        if old is None:
            # Resuming would mix rows whose weights, preprocess and images cannot be checked: refused.
            raise ValueError(
                f"out: {str(self.path)!r} was written by an older xcam-widgets that recorded no fingerprint of the "
                "weights, preprocess and images, so whether its rows are this run's cannot be checked; reopen it "
                f"with xw.open_result, or {start_over}"
            )
        differ = sorted(k for k in set(found) | set(manifest) if k != "meta" and found.get(k) != manifest.get(k))
        if differ:
            raise ValueError(
                f"out: {str(self.path)!r} holds the parts of another evaluation ({', '.join(differ)} differ: "
                f"{ {k: found.get(k) for k in differ} } there); {start_over}"
            )
        changed = changes(old, manifest["meta"]["fingerprint"])
        if changed:
            raise ValueError(
                f"out: {str(self.path)!r} holds the parts of an evaluation of other inputs; changed since: "
                f"{'; '.join(changed)}. Its rows would not be this run's: {start_over}"
            )

    def write(self, positions: Sequence[int], payload: bytes) -> Path:
        """A batch's part under a name given by its positions: writing it again replaces it."""
        digest = hashlib.sha1(json.dumps(list(positions)).encode()).hexdigest()[:12]
        path = self.path / f"batch-{positions[0]:09d}-{digest}.npz"
        write_atomically(path, payload)
        return path

    def read(self) -> tuple[list[Part], list[Damaged]]:
        """The parts that can be read, and the damaged ones."""
        parts, damaged = [], []
        for file in sorted(self.path.glob(PART_GLOB)):
            try:
                parts.append(decode_part(file))
            except DAMAGE as err:
                damaged.append(Damaged(file, f"{type(err).__name__}: {err}"))
        return parts, damaged

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
    """A run's rows, maps and latents as they arrive: first those already in the parts, then batch by
    batch, each written to the parts (when there are parts) before `on_rows` sees it."""

    def __init__(self, parts: PartsFolder | None, on_rows: OnRows | None) -> None:
        self.parts, self.on_rows = parts, on_rows
        self.rows: dict[int, dict] = {}  # by `row`: a batch written twice counts once
        self.maps = MapStore()
        self.latents = LatentStore()
        self.done: set[int] = set()
        self.written: list[Path] = []  # the part files this run wrote

    def resume(self) -> None:
        """Take in the parts already written (a resumed run), and show them to `on_rows` at once. A
        damaged part is moved aside with a warning: its positions are pending again, so its batch is
        recomputed."""
        if self.parts is None:
            return
        found, damaged = self.parts.read()
        for bad in damaged:
            aside = bad.path.with_name(bad.path.name + DAMAGED)
            bad.path.replace(aside)
            warnings.warn(
                f"part {str(bad.path)!r} is damaged ({bad.reason}); moved to {aside.name!r}, and its batch is "
                "computed again (the other parts are kept)",
                RuntimeWarning,
                stacklevel=3,
            )
        for part in found:
            self.done.update(part.positions)
            for row in part.rows:
                self.rows.setdefault(row["row"], row)
        if found:
            self.maps = MapStore.concat([part.maps for part in found])
            self.latents = LatentStore.concat([part.latents for part in found])
            if self.on_rows is not None:
                self.on_rows(sorted(self.rows.values(), key=lambda r: r["row"]), self.maps)

    def discard_written(self) -> None:
        """Delete the part files this run wrote (their rows cannot be trusted); the earlier ones stay."""
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()

    def add(self, positions: Sequence[int], result: BatchResult, payload: bytes | None = None) -> None:
        """A finished batch: written, kept, shown."""
        if self.parts is not None:
            self.written.append(
                self.parts.write(positions, encode_part(positions, result) if payload is None else payload)
            )
        for row in result.rows:
            self.rows.setdefault(row["row"], row)
        self.maps.update(result.maps)
        self.latents.update(result.latents)
        self.done.update(positions)
        if self.on_rows is not None:
            self.on_rows(result.rows, result.maps)


__all__ = ["Collector", "Damaged", "OnRows", "Part", "PartsFolder", "decode_part", "encode_part", "temporary_parts"]
