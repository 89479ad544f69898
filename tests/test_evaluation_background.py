"""xcam_widgets.evaluation in the background, as the Gallery runs it: rows as batches finish, a
stop between batches, and a model shared with another thread that uses it between batches."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, open_result, run_paths
from xcam_widgets.shapes import nets

LAYER = nets.CAM_LAYER
KWARGS = dict(
    methods=["gradcam", "xgradcam"], layers=LAYER, metrics=["deletion"], steps=2, batch_size=2, progress=False
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle(random_shapes_vgg: xw.ModelBundle) -> xw.ModelBundle:
    return random_shapes_vgg


@pytest.fixture(scope="module")
def full(bundle):
    return evaluate(bundle, "shapes:5", **KWARGS)


def test_on_rows_sees_every_batch_as_it_finishes(bundle, full):
    calls = []
    result = evaluate(bundle, "shapes:5", on_rows=lambda rows, maps: calls.append((rows, dict(maps))), **KWARGS)
    assert [sorted({r["image"] for r in rows}) for rows, _ in calls] == [[0, 1], [2, 3], [4]]
    rows = [row for batch, _ in calls for row in batch]
    pd.testing.assert_frame_equal(pd.DataFrame(rows, columns=result.table.columns), full.table)
    for batch, maps in calls:
        assert sorted(maps) == [r["row"] for r in batch]
        for row, value in maps.items():
            np.testing.assert_array_equal(value, full.maps[row])


def test_stop_ends_the_run_after_the_current_batch_and_a_rerun_resumes(bundle, full, tmp_path):
    out = tmp_path / "results.csv"
    stop = threading.Event()
    batches = []

    def on_rows(rows, maps):
        batches.append(rows)
        if len(batches) == 2:
            stop.set()

    partial = evaluate(bundle, "shapes:5", out=out, on_rows=on_rows, stop=stop, **KWARGS)
    assert not partial.complete and len(batches) == 2
    assert sorted(set(partial.table["image"])) == [0, 1, 2, 3] and sorted(partial.maps) == list(range(8))
    assert not out.exists() and len(list(run_paths(out).parts.glob("batch-*.npz"))) == 2
    reopened = open_result(out)  # only the parts so far
    assert not reopened.complete
    pd.testing.assert_frame_equal(reopened.table, partial.table)

    resumed = []
    result = evaluate(bundle, "shapes:5", out=out, on_rows=lambda rows, maps: resumed.append(len(rows)), **KWARGS)
    assert resumed == [8, 2]  # first what the parts hold, then the missing batch
    assert result.complete
    pd.testing.assert_frame_equal(result.table, full.table)


def test_the_model_lock_is_held_in_a_batch_and_free_between_batches(bundle):
    """Another thread can take the model between two batches (the runner does not hold it across
    them), and cannot while a batch runs the model (the runner uses it only under evaluation_mode)."""
    lock = xw.model_lock(bundle.model)

    def free_elsewhere() -> bool:
        got = []

        def probe():
            got.append(lock.acquire(timeout=0.5))
            if got[0]:
                lock.release()

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
        return got[0]

    during, between = [], []
    handle = bundle.model.features.register_forward_pre_hook(lambda module, args: during.append(free_elsewhere()))
    try:
        evaluate(bundle, "shapes:4", on_rows=lambda rows, maps: between.append(free_elsewhere()), **KWARGS)
    finally:
        handle.remove()
    assert during and not any(during)
    assert between == [True, True]


def test_a_thread_explaining_on_the_same_model_while_the_runner_works(bundle, full):
    """A widget's thread and the runner take turns: both get the values they would alone, and
    the model's flags are restored."""
    model = bundle.model.train()  # the user's flag, which both must restore
    x = nets.preprocess(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
    alone = xw.explain(model, x, LAYER, "xgradcam").map
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    results, errors = {}, []

    def run():
        try:
            results["table"] = evaluate(bundle, "shapes:5", **KWARGS).table
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    maps = []
    while thread.is_alive():
        maps.append(xw.explain(model, x, LAYER, "xgradcam").map)
    thread.join()
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    for name, value in model.state_dict().items():  # BatchNorm statistics included
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0, msg=name)
    assert not errors and maps
    for m in maps:
        torch.testing.assert_close(m, alone)
    pd.testing.assert_frame_equal(results["table"], full.table)
