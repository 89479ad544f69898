"""The Gallery's background run, without widgets: `xw.evaluate` in a thread, its rows kept as they come.

`GalleryRun.start(...)` calls `evaluate(..., on_rows=..., stop=...)` in a daemon thread, and
returns once the runner has passed all its checks (it asks `stop` first just before its first
batch), so an argument or `out` it refuses raises in the caller's thread. Each
finished batch's rows become one small DataFrame (a `snapshot` concatenates them, O(rows) per
snapshot, never a per-row Python loop over the whole table) and its maps go into one `MapStore`
(append-only, so a reader's look-ups are safe while rows arrive). A listener is told after each
batch and once at the end, in the run's thread; when the run returns, its own table and maps
replace the batches. `cancel()` lets the current batch finish and keeps every row so far;
`close()` also waits for the thread, and so does the interpreter's exit (`atexit`): a process
must not exit while a thread is inside torch.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..evaluation import EvaluationResult, MapStore, evaluate
from ..evaluation.table import rows_frame
from .columns import require_pandas

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

RUN_STATES: tuple[str, ...] = ("running", "done", "cancelled", "failed")
Listener = Callable[["GalleryRun"], None]


@dataclass(frozen=True, eq=False)
class RunSnapshot:
    """The rows so far (sorted by `row`), their maps, how many images are done of how many, the
    run's state (one of `RUN_STATES`), its error if it failed, and `version`, which grows with
    every change of the rows (equal versions: equal tables)."""

    table: pd.DataFrame
    maps: Mapping[int, np.ndarray]
    images_done: int
    images_total: int
    state: str
    error: BaseException | None
    version: int


class GalleryRun:
    """Rows and maps of one evaluation: growing while `state` is "running", fixed afterwards."""

    def __init__(
        self, columns: list[str], images_total: int, rows_per_image: int, listener: Listener | None = None
    ) -> None:
        self.columns = list(columns)
        self.images_total = images_total
        self.rows_per_image = max(1, rows_per_image)
        self.listener = listener
        self.result: EvaluationResult | None = None
        self.listener_error: BaseException | None = None
        self._lock = threading.Lock()
        self._frames: list[pd.DataFrame] = []
        self._seen: set[int] = set()
        self._maps = MapStore()
        self._state = "running"
        self._error: BaseException | None = None
        self._version = 0
        self._stop = _StopAfterChecks()
        self._thread: threading.Thread | None = None

    @classmethod
    def finished(cls, result: EvaluationResult) -> GalleryRun:
        """A run that is already over: an earlier `EvaluationResult` (nothing is computed)."""
        if not isinstance(result, EvaluationResult):
            raise TypeError(f"GalleryRun.finished needs an EvaluationResult, got {type(result).__name__}")
        meta = result.meta or {}
        per_image = len(meta.get("methods") or [1]) * len(meta.get("layers") or [1])
        total = int(meta.get("images_count") or 0)
        run = cls(list(result.table.columns), total, per_image)
        run._finish(result, None)
        return run

    @classmethod
    def start(
        cls,
        model: Any,
        images: Any,
        *,
        columns: list[str],
        images_total: int,
        rows_per_image: int,
        listener: Listener | None = None,
        **evaluate_options: Any,
    ) -> GalleryRun:
        """Start `evaluate(model, images, **evaluate_options)` in a background thread (with
        `on_rows`, `stop` and `progress=False` set here), and return once the runner has passed
        its own checks (arguments, `out`, the model's task): an error they raise is raised here,
        in the caller's thread, with no thread left behind."""
        run = cls(columns, images_total, rows_per_image, listener)
        run._thread = threading.Thread(
            target=run._work, args=(model, images, evaluate_options), daemon=True, name="xcam-widgets gallery run"
        )
        _LIVE.add(run)
        run._thread.start()
        try:
            run._stop.checked.wait()
        except BaseException:  # e.g. Ctrl-C while the runner checks: no run left behind
            run.close()
            raise
        if run._error is not None and not run._stop.passed:  # refused before any work: the caller's error
            run.join()
            raise run._error
        return run

    # --- state ------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def images_done(self) -> int:
        return len(self._seen) // self.rows_per_image

    def snapshot(self) -> RunSnapshot:
        """The rows and maps so far; the batches' frames are merged into one as a side effect."""
        pandas = require_pandas()
        with self._lock:
            if len(self._frames) > 1:
                merged = pandas.concat(self._frames, ignore_index=True)
                if not merged["row"].is_monotonic_increasing:
                    merged = merged.sort_values("row", kind="stable", ignore_index=True)
                self._frames = [merged]
            table = self._frames[0] if self._frames else pandas.DataFrame(columns=self.columns)
            return RunSnapshot(
                table, self._maps, self.images_done, self.images_total, self._state, self._error, self._version
            )

    # --- control ----------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop after the current batch; the rows so far stay (state "cancelled" once stopped)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run's thread; True when it has ended (or there is none)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Detach the listener, cancel and wait for the thread; True when it has ended."""
        self.listener = None
        self.cancel()
        return self.join(timeout)

    # --- the run's thread -------------------------------------------------------------------
    def _work(self, model: Any, images: Any, options: dict[str, Any]) -> None:
        try:
            result = evaluate(model, images, on_rows=self._on_rows, stop=self._stop, progress=False, **options)
        except BaseException as error:  # shown by the widget; the rows so far stay
            self._finish(None, error)
        else:
            self._finish(result, None)
        finally:
            self._stop.checked.set()
        self._notify()

    def _on_rows(self, rows: list[dict], maps: Mapping[int, np.ndarray]) -> None:
        fresh = [row for row in rows if row["row"] not in self._seen]
        if fresh:
            frame = rows_frame(fresh, self.columns)
            with self._lock:
                self._frames.append(frame)
                self._seen.update(row["row"] for row in fresh)
                self._maps.update({row: maps[row] for row in frame["row"].tolist() if row in maps})
                self._version += 1
        self._notify()

    def _finish(self, result: EvaluationResult | None, error: BaseException | None) -> None:
        with self._lock:
            if result is not None:
                self.result = result
                self._frames = [result.table]
                self._seen = set(result.table["row"].tolist())
                self._maps = result.maps
                self._version += 1
                self._state = "done" if result.complete else "cancelled"
            else:
                self._error = error
                self._state = "failed"

    def _notify(self) -> None:
        """Tell the listener; its errors are kept (`listener_error`), never allowed to stop the run."""
        listener = self.listener
        if listener is None:
            return
        try:
            listener(self)
        except Exception as error:  # a drawing error must not end the evaluation
            self.listener_error = error


class _StopAfterChecks(threading.Event):
    """The run's `stop` event, which also tells `start` when `evaluate` has checked every argument
    and `out`: the runner asks it first just before its first batch, after all its checks."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = threading.Event()  # set when the checks passed, or when the run ended
        self.passed = False

    def is_set(self) -> bool:
        if not self.passed:
            self.passed = True
            self.checked.set()
        return super().is_set()


_LIVE: weakref.WeakSet[GalleryRun] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit (a script's end, a kernel shutdown or restart): stop every run."""
    for run in list(_LIVE):
        run.close()


__all__ = ["RUN_STATES", "GalleryRun", "Listener", "RunSnapshot"]
