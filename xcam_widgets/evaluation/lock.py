"""One writer per `out`: a lock file held for the whole run, so that two runs never mix their rows.

The lock is `<stem>.parts/run.lock`, a JSON file with the owner's pid, host, thread, start time
and a random token. It appears whole or not at all (written to a temporary file, then hard-linked
to its name, which fails if the name exists), so a second writer, in another thread or process,
always finds a complete owner to name in its error. A lock whose owner is gone is stale and is
taken over with a warning: a pid on this host that no longer runs, or this process's own pid
with a token this process does not hold (a restarted container or kernel got the same pid).
A lock from another host, or from a live pid (also a reused one), is never taken, nor any stale
lock on Windows (where no signal probes a pid): the error says to delete the file if no run is
writing there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK = "run.lock"

_HELD: set[str] = set()  # the tokens of the locks this process holds
_HELD_LOCK = threading.Lock()


class RunLockedError(BlockingIOError):
    """`out` is being written by another run (its owner named in the message). A `BlockingIOError`,
    as `fcntl.flock` raises for a lock held elsewhere: an `OSError`, which the CLI reports plainly."""


@contextlib.contextmanager
def run_lock(folder: Path, out: str) -> Iterator[dict[str, Any]]:
    """Hold `folder`'s lock (creating the folder) until the block ends, however it ends; yields the
    owner record. Raises `RunLockedError`, naming `out` and the owner, while another run holds it."""
    path = folder / LOCK
    owner: dict[str, Any] = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "thread": threading.current_thread().name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "token": uuid.uuid4().hex,
    }
    _acquire(path, owner, out)
    try:
        yield owner
    finally:
        _release(path, owner["token"])
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if the lock was all there was: a run refused before its first file


def _acquire(path: Path, owner: dict[str, Any], out: str) -> None:
    tmp = path.with_name(f".{LOCK}.{owner['token'][:8]}.new")  # not ".tmp": `PartsFolder.claim` deletes those
    for attempt in range(3):  # the folder, empty, may go in between: a refused run removes it (`run_lock`)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(json.dumps(owner))
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    try:
        with _HELD_LOCK:  # an own lock left unregistered (Ctrl-C between link and add) is stale, not stuck
            for _ in range(3):  # a stale lock taken away by another writer in between: try again
                try:
                    os.link(tmp, path)
                    _HELD.add(owner["token"])
                    return
                except FileExistsError:
                    found = _read(path)
                    if found is None or not _stale(found):
                        raise RunLockedError(_locked_message(out, path, found)) from None
                    _take_over(path, found, out)
            raise RunLockedError(_locked_message(out, path, _read(path)))
    finally:
        tmp.unlink(missing_ok=True)


def _release(path: Path, token: str) -> None:
    """Remove the lock if it is still ours (a lock taken over as stale is not)."""
    with _HELD_LOCK:
        _HELD.discard(token)
        found = _read(path)
        if found is not None and found.get("token") == token:
            path.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    """The owner record, or None if the file is gone or unreadable."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _stale(owner: dict[str, Any]) -> bool:
    """The owner is gone: a dead pid on this host, or our own pid with a token we do not hold."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or os.name != "posix":
        return False  # another host (or Windows, where signal 0 is no probe): never taken over
    if pid == os.getpid():
        return owner.get("token") not in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def _take_over(path: Path, stale: dict[str, Any], out: str) -> None:
    """Move the stale lock aside (atomic) and check that the one moved is the stale one: if another
    writer took it over in between, its fresh lock goes back and the caller's next try fails."""
    aside = path.with_name(f".{LOCK}.{uuid.uuid4().hex[:8]}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    moved = _read(aside)
    ours = moved is None or moved.get("token") == stale.get("token")
    if not ours:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)
    if ours:
        warnings.warn(
            f"out {out!r}: took over a stale lock ({path}) of {_owner(stale)}, which no longer runs; "
            "its finished batches stay and this run resumes from them",
            RuntimeWarning,
            stacklevel=2,
        )


def _owner(owner: dict[str, Any]) -> str:
    return (
        f"process {owner.get('pid')} on host {owner.get('host')!r} (thread {owner.get('thread')!r}, "
        f"started {owner.get('started')})"
    )


def _locked_message(out: str, path: Path, owner: dict[str, Any] | None) -> str:
    who = _owner(owner) if owner is not None else "an owner whose lock file cannot be read"
    return (
        f"out {out!r} is being written by another run: {who} holds {str(path)!r}. Wait for that run to end, "
        "or stop it (overwrite=True is refused too while it runs), or use another out; if no run is writing "
        "there, delete the lock file"
    )


__all__ = ["LOCK", "RunLockedError", "run_lock"]
