"""Issue 25, item 1: one writer per `out`. A second run on the same `out` (another thread, another
process, `overwrite=True` included) is refused while the first runs; a stale lock is taken over;
the lock goes on every exit path."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest
from test_cli import BASE, run
from test_evaluation_robustness import KWARGS, CountingBatches

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, open_result, run_paths
from xcam_widgets.evaluation.lock import RunLockedError, run_lock
from xcam_widgets.gallery.run import GalleryRun

pytestmark = pytest.mark.usefixtures("one_thread")
WAIT = 300  # s: generous, for a loaded machine; a wait that runs out fails the test rather than hanging it


@pytest.fixture(scope="module")
def bundle(random_shapes_vgg: xw.ModelBundle) -> xw.ModelBundle:
    return random_shapes_vgg


@pytest.fixture(scope="module")
def expected(bundle):
    return evaluate(bundle, "shapes:4", **KWARGS).table


def lock_file(out):
    return run_paths(out).parts / "run.lock"


class Paused:
    """`on_rows` that holds the run after its first batch until `go` is set."""

    def __init__(self):
        self.inside, self.go = threading.Event(), threading.Event()

    def __call__(self, rows, maps):
        self.inside.set()
        assert self.go.wait(WAIT)


def test_a_second_writer_in_another_thread_is_refused_also_with_overwrite(bundle, expected, tmp_path):
    out = tmp_path / "results.csv"
    paused, results, errors = Paused(), [], []

    def first_run():
        try:
            results.append(evaluate(bundle, "shapes:4", out=out, on_rows=paused, **KWARGS))
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    thread = threading.Thread(target=first_run, name="the first run")
    thread.start()
    try:
        assert paused.inside.wait(WAIT), errors
        owner = json.loads(lock_file(out).read_text())
        assert owner["pid"] == os.getpid() and owner["thread"] == "the first run"
        assert owner["host"] == socket.gethostname() and owner["started"]
        parts_before = sorted(run_paths(out).parts.glob("batch-*.npz"))
        for overwrite in (False, True):
            with pytest.raises(BlockingIOError, match=r"being written by another run.*'the first run'") as caught:
                evaluate(bundle, "shapes:4", out=out, overwrite=overwrite, **{**KWARGS, "methods": ["xgradcam"]})
            assert str(out) in str(caught.value) and str(os.getpid()) in str(caught.value)
        assert sorted(run_paths(out).parts.glob("batch-*.npz")) == parts_before  # overwrite pulled nothing away
    finally:
        paused.go.set()
        thread.join(WAIT)
    assert not errors and results[0].complete
    pd.testing.assert_frame_equal(results[0].table, expected)
    pd.testing.assert_frame_equal(open_result(out).table, expected)
    assert not lock_file(out).exists()


SUBPROCESS_RUN = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the weights of the random_shapes_vgg fixture
    import xcam_widgets as xw

    def wait(rows, maps):
        print("inside", flush=True)
        sys.stdin.readline()

    bundle = xw.load_model("shapes_vgg", pretrained=False, device="cpu")
    kwargs = {kwargs}
    result = xw.evaluate(bundle, "shapes:4", out=sys.argv[1], on_rows=wait, **kwargs)
    print("complete" if result.complete else "incomplete", flush=True)
    """
)


def test_a_second_writer_in_another_process_is_refused(bundle, expected, tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    script = SUBPROCESS_RUN.format(kwargs=repr(KWARGS))
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "inside"
        for overwrite in (False, True):
            with pytest.raises(BlockingIOError, match=rf"being written by another run: process {child.pid} on host"):
                evaluate(bundle, "shapes:4", out=out, overwrite=overwrite, **KWARGS)
        child.stdin.write("\n")  # on_rows is called after each batch
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "inside"
        assert child.stdout.readline().strip() == "complete"
    finally:
        child.stdin.close()
        child.wait(WAIT)
    assert child.returncode == 0 and not lock_file(out).exists()
    counter = CountingBatches(monkeypatch)
    table, _ = evaluate(bundle, "shapes:4", out=out, **KWARGS)  # the child's run, resumed: same weights, nothing to do
    assert counter.calls == 0
    pd.testing.assert_frame_equal(table, expected)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(out, **owner) -> None:
    lock_file(out).parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": 1, "host": socket.gethostname(), "thread": "MainThread", "started": "then", "token": "t"}
    lock_file(out).write_text(json.dumps({**record, **owner}))


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(bundle, expected, tmp_path):
    out = tmp_path / "results.csv"
    pid = dead_pid()
    write_lock(out, pid=pid)
    with pytest.warns(RuntimeWarning, match=rf"took over a stale lock .*process {pid} on host"):
        table, _ = evaluate(bundle, "shapes:4", out=out, **KWARGS)
    pd.testing.assert_frame_equal(table, expected)
    assert not lock_file(out).exists()


def test_a_lock_of_our_own_pid_that_we_do_not_hold_is_stale(bundle, expected, tmp_path):
    """A restarted kernel or container may get the pid of the run that left the lock."""
    out = tmp_path / "results.csv"
    write_lock(out, pid=os.getpid(), token="left-by-an-earlier-process")
    with pytest.warns(RuntimeWarning, match="took over a stale lock"):
        table, _ = evaluate(bundle, "shapes:4", out=out, **KWARGS)
    pd.testing.assert_frame_equal(table, expected)


@pytest.mark.parametrize("owner", [{"host": "another-host"}, {"pid": 1}], ids=["another host", "a live pid"])
def test_a_lock_of_another_host_or_a_live_process_is_never_taken(bundle, tmp_path, owner, monkeypatch):
    out = tmp_path / "results.csv"
    write_lock(out, **owner)
    counter = CountingBatches(monkeypatch)
    with pytest.raises(BlockingIOError, match="being written by another run.*delete the lock file"):
        evaluate(bundle, "shapes:4", out=out, **KWARGS)
    assert counter.calls == 0 and json.loads(lock_file(out).read_text())["token"] == "t"  # left as it was


def test_the_lock_goes_on_every_exit_path(bundle, expected, tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    CountingBatches(monkeypatch, at=2)  # Ctrl-C in the second batch
    with pytest.raises(KeyboardInterrupt):
        evaluate(bundle, "shapes:4", out=out, **KWARGS)
    assert not lock_file(out).exists()
    monkeypatch.undo()
    with pytest.raises(ValueError, match="another evaluation"):  # refused after the lock was taken
        evaluate(bundle, "shapes:4", out=out, **{**KWARGS, "methods": ["xgradcam"]})
    assert not lock_file(out).exists()
    stop = threading.Event()
    result = evaluate(bundle, "shapes:4", out=out, stop=stop, on_rows=lambda rows, maps: stop.set(), **KWARGS)
    assert not result.complete and not lock_file(out).exists()
    table, _ = evaluate(bundle, "shapes:4", out=out, **KWARGS)
    pd.testing.assert_frame_equal(table, expected)
    assert not lock_file(out).exists()
    # A run refused before writing anything leaves no folder behind.
    lone = tmp_path / "lone.csv"
    lone.write_text("a\n1\n")
    with pytest.raises(FileExistsError):
        evaluate(bundle, "shapes:4", out=lone, **KWARGS)
    assert not run_paths(lone).parts.exists()


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_of_writers_racing_for_one_lock_exactly_one_wins(tmp_path, stale):
    out = tmp_path / "results.csv"
    if stale:
        write_lock(out, pid=dead_pid())
    start, done = threading.Barrier(8), threading.Barrier(8)
    won, refused = [], []

    def writer():
        start.wait(WAIT)
        try:
            with run_lock(run_paths(out).parts, str(out)) as owner:
                won.append(owner["token"])
                done.wait(WAIT)  # held until every writer has tried
        except RunLockedError:
            refused.append(1)
            done.wait(WAIT)

    with pytest.warns(RuntimeWarning) if stale else contextlib.nullcontext():
        threads = [threading.Thread(target=writer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
    assert len(won) == 1 and len(refused) == 7
    assert not run_paths(out).parts.exists()  # the lock was all there was: it went, and its folder


def test_the_ray_engine_and_a_gallery_run_take_the_lock_too(bundle, tmp_path):
    """Both go through `evaluate`, which takes the lock before any engine starts (no Ray starts here)."""
    out = tmp_path / "results.csv"
    with run_lock(run_paths(out).parts, str(out)):
        with pytest.raises(RunLockedError, match="being written by another run"):
            evaluate(bundle, "shapes:4", out=out, engine="ray", **KWARGS)
        options = {k: v for k, v in KWARGS.items() if k != "progress"}
        try:  # refused in the caller's thread where the run checks `out` before it returns, else in its own
            run = GalleryRun.start(bundle, "shapes:4", columns=[], images_total=4, rows_per_image=1, out=out, **options)
        except RunLockedError:
            pass
        else:
            assert run.join(WAIT)
            snapshot = run.snapshot()
            assert snapshot.state == "failed" and isinstance(snapshot.error, RunLockedError)
    assert not run_paths(out).parts.exists()


def test_the_cli_reports_a_locked_out_plainly(tmp_path, capsys):
    out = tmp_path / "results.csv"
    with run_lock(run_paths(out).parts, str(out)):
        status, _, err = run(
            [*BASE, "--images", "shapes:2", "--device", "cpu", "--out", str(out), "--overwrite"], capsys
        )
    assert status == 2 and "being written by another run" in err and str(os.getpid()) in err
