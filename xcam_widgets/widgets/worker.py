"""Compute for the newest state only, off the kernel's message thread; stop cleanly at exit."""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, Callable, Generic, TypeVar

State = TypeVar("State")


class Superseded(Exception):
    """A newer state replaced the one being computed."""


class LatestWins(Generic[State]):
    """Runs `compute(state, progress)` for the newest submitted state, then `apply(state, result)`.

    A state submitted while another computes supersedes it: the running computation stops at its
    next `progress(done, total)` call (which raises `Superseded`) and its result is dropped, so a
    dragged slider always ends showing the last state, never a stale one. Errors of the newest
    state go to `on_error`; the view drawn before stays as it was.

    `shutdown()` (also run for every live worker at interpreter exit) cancels and joins the thread:
    a process must not exit while a thread is inside torch, which aborts it ("terminate called
    without an active exception").
    """

    def __init__(
        self,
        compute: Callable[[State, Callable[[int, int], None]], Any],
        apply: Callable[[State, Any], None],
        on_error: Callable[[State, Exception], None],
        on_progress: Callable[[int, int], None] | None = None,
        background: bool = True,
    ):
        self._compute, self._apply, self._on_error, self._on_progress = compute, apply, on_error, on_progress
        self._background = background
        self._lock = threading.Lock()
        self._generation = 0
        self._pending: tuple[int, State] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        _LIVE.add(self)

    def submit(self, state: State) -> None:
        """Compute `state` next, superseding whatever is pending or running; ignored after shutdown."""
        with self._lock:
            if self._closed:
                return
            self._generation += 1
            self._pending = (self._generation, state)
            if self._background and self._thread is None:
                self._thread = threading.Thread(target=self._drain, daemon=True, name="xcam-widgets worker")
                self._thread.start()
        if not self._background:
            self._drain()

    def cancel(self) -> None:
        """Drop the pending state and stop the running one at its next progress report."""
        with self._lock:
            self._generation += 1
            self._pending = None

    def wait(self, timeout: float | None = None) -> None:
        """Block until every submitted state is done (for tests and scripts)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Cancel, refuse new states, and wait for the running computation to stop."""
        with self._lock:
            self._closed = True
            self._generation += 1
            self._pending = None
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _is_current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    def _drain(self) -> None:
        while True:
            with self._lock:
                if self._pending is None:
                    self._thread = None
                    return
                generation, state = self._pending
                self._pending = None

            def progress(done: int, total: int, generation: int = generation) -> None:
                if not self._is_current(generation):
                    raise Superseded()
                if self._on_progress is not None:
                    self._on_progress(done, total)

            try:
                result = self._compute(state, progress)
            except Superseded:
                continue
            except Exception as error:  # shown in the widget; the kernel keeps running
                if self._is_current(generation):
                    self._on_error(state, error)
                continue
            if self._is_current(generation):
                self._apply(state, result)


_LIVE: weakref.WeakSet[LatestWins] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    """At interpreter exit (a script's end, a kernel shutdown or restart): stop every worker."""
    for worker in list(_LIVE):
        worker.shutdown()
