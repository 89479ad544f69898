"""A run's result, its files, and reopening them without recomputing anything.

A complete run with `out` writes the table (`results.csv`), the summary (`results.summary.csv`),
the maps (`results.maps.npz`, a `MapStore`), the rows' latents where there are any
(`results.latents.npz`, a `LatentStore`) and what is needed to show the run again
(`results.meta.json`), each whole or not at all; its batches stay in `results.parts/`. A run that
stopped early has only its parts. `open_result` reads either. A run holds `out`'s lock (`lock`)
from the check of `out` to its last file, so a second run on the same `out` is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from .files import write_atomically
from .latents import LatentStore
from .lock import RunLockedError, run_lock
from .maps import MapStore
from .parts import DAMAGE, FORMAT, Damaged, PartsFolder
from .table import RunPaths, pandas, read_table, rows_frame, run_paths, summarize

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass
class EvaluationResult:
    """`table`: one row per image × method × layer; `summary`: means and 95% CIs per method × layer
    × value column; `maps`: each row's small raw map by `row`; `meta`: the run's settings (as in
    `<stem>.meta.json`); `complete`: False for a run that stopped early (its missing images are
    not in the table); `latents`: the rows' channel relevance vectors (`latents.LatentStore`), None
    where the run stored none (runs made before the runner stored them, `latents=False`). Unpacks
    and indexes as the pair `(table, summary)`, as it did when it was one."""

    table: pd.DataFrame
    summary: pd.DataFrame
    maps: MapStore = field(default_factory=MapStore)
    meta: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    latents: LatentStore | None = None

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.table, self.summary))

    def __getitem__(self, index: int) -> pd.DataFrame:
        return (self.table, self.summary)[index]


@contextlib.contextmanager
def prepare_out(out: str | os.PathLike, manifest: dict[str, Any], overwrite: bool) -> Iterator[PartsFolder]:
    """Check `out` before any work, lock it for the block (`lock.run_lock`: another run writing it is
    refused, also with `overwrite`) and claim its parts folder: a directory, an unwritable place or
    an existing table from another run fail here; with `overwrite`, the old files go first."""
    paths = run_paths(out)
    if paths.table.is_dir():
        raise IsADirectoryError(
            f"out {os.fspath(out)!r}: {str(paths.table)!r} is a directory; give a file path such as results.csv"
        )
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_lock(paths.parts, os.fspath(out)))
        except RunLockedError:
            raise
        except OSError as err:
            raise OSError(f"out {os.fspath(out)!r} cannot be written: {err}") from err
        parts = PartsFolder(paths.parts)
        if not overwrite and paths.table.exists() and parts.manifest() is None:
            raise FileExistsError(
                f"out {os.fspath(out)!r} exists and has no {paths.parts.name}/ to resume from; pass overwrite=True "
                "(--overwrite) to replace it, or use another out"
            )
        try:
            if overwrite:
                parts.remove()
                for path in (paths.table, paths.summary, paths.maps, paths.meta, paths.latents):
                    path.unlink(missing_ok=True)
            parts.claim(manifest)  # also proves that the folder is writable
        except OSError as err:
            raise OSError(f"out {os.fspath(out)!r} cannot be written: {err}") from err
        yield parts


def write_outputs(paths: RunPaths, result: EvaluationResult) -> None:
    """The table, summary, maps, latents (if any) and meta of a complete run, each through a temporary
    file and a rename; the meta last, so that a run with a meta file has all its files."""
    write_atomically(paths.table, result.table.to_csv(index=False).encode())
    write_atomically(paths.summary, result.summary.to_csv(index=False).encode())
    result.maps.save(paths.maps)
    if result.latents is not None:
        result.latents.save(paths.latents)
    write_atomically(paths.meta, (json.dumps(result.meta, indent=1) + "\n").encode())


def open_result(path: str | os.PathLike) -> EvaluationResult:
    """A previous run, recomputing nothing: `path` is its `out` (the CSV, read with its summary,
    maps and meta where present) or its parts folder (the batches written so far, also of a run
    that stopped early or a Ray run)."""
    path = Path(path)
    if path.is_dir():
        return _from_parts(PartsFolder(path))
    paths = run_paths(path)
    if paths.table.is_file():
        table = read_table(paths.table)
        summary = pandas().read_csv(paths.summary) if paths.summary.is_file() else summarize(table)
        maps = _load_maps(paths) if paths.maps.is_file() else MapStore()
        meta = json.loads(paths.meta.read_text()) if paths.meta.is_file() else {}
        latents = _load_latents(paths) if paths.latents.is_file() else None
        return EvaluationResult(table, summary, maps, meta, complete=True, latents=latents)
    if paths.parts.is_dir():
        return _from_parts(PartsFolder(paths.parts))
    raise FileNotFoundError(f"no evaluation at {str(path)!r}: neither {str(paths.table)!r} nor {str(paths.parts)!r}")


def _load_maps(paths: RunPaths) -> MapStore:
    return _load(MapStore.load, paths.maps, "maps", paths)


def _load_latents(paths: RunPaths) -> LatentStore:
    return _load(LatentStore.load, paths.latents, "latents", paths)


Store = TypeVar("Store")


def _load(load: Callable[[Path], Store], path: Path, what: str, paths: RunPaths) -> Store:
    """`load(path)`, or an error that names the damaged file and where the same `what` can be read."""
    try:
        return load(path)
    except DAMAGE as err:
        raise ValueError(
            f"{str(path)!r} is damaged ({type(err).__name__}: {err}); the same {what} are in the parts: "
            f"open_result({str(paths.parts)!r})"
        ) from err


def _from_parts(parts: PartsFolder) -> EvaluationResult:
    manifest = parts.manifest()
    if manifest is None:
        raise ValueError(f"{str(parts.path)!r} is not a parts folder of xw.evaluate (no manifest.json)")
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"{str(parts.path)!r} was written by another version of xcam-widgets (format "
            f"{manifest.get('format', 1)}, this one reads {FORMAT}); rerun with overwrite=True"
        )
    found, damaged = parts.read()
    rows = {row["row"]: row for part in reversed(found) for row in part.rows}
    meta = manifest["meta"]
    table = rows_frame(list(rows.values()), meta["columns"])
    done = {p for part in found for p in part.positions}
    if damaged:
        _warn_damaged(parts, damaged, done, meta)
    return EvaluationResult(
        table,
        summarize(table),
        MapStore.concat([part.maps for part in found]),
        meta,
        complete=len(done) >= meta["images_count"],
        latents=stored_latents(LatentStore.concat([part.latents for part in found])),
    )


def stored_latents(store: LatentStore) -> LatentStore | None:
    """`store`, or None where it holds no row (a run that stored no latents)."""
    return store if len(store) else None


def _warn_damaged(parts: PartsFolder, damaged: list[Damaged], done: set[int], meta: dict[str, Any]) -> None:
    """Name the damaged parts and the rows missing for want of them (row = position × per_image + k)."""
    per_image = len(meta["methods"]) * len(meta["layers"])
    missing = [p for p in range(meta["images_count"]) if p not in done]
    shown = ", ".join(f"{p} (rows {p * per_image}-{(p + 1) * per_image - 1})" for p in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    files = "; ".join(f"{d.path.name!r} ({d.reason})" for d in damaged)
    warnings.warn(
        f"{str(parts.path)!r}: damaged part file(s) {files} cannot be read. Missing: the rows of "
        f"{len(missing)} image(s) at positions {shown}{more} (the damaged parts' and any batch not run yet). "
        "A rerun of xw.evaluate with the same out recomputes just those.",
        RuntimeWarning,
        stacklevel=3,
    )


__all__ = ["EvaluationResult", "open_result", "prepare_out", "stored_latents", "write_outputs"]
