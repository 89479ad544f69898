"""The Ray engine of the dataset runner: the local engine's table, faults, resuming.

One local Ray (2 CPUs) serves the whole module: starting it takes seconds, and every
evaluation starts its own actors (a process, torch, the model) on top of that."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

import xcam_widgets as xw
from xcam_widgets.cli import main
from xcam_widgets.evaluation import ENGINES, EvaluationResult, evaluate, open_result, run_paths
from xcam_widgets.evaluation.parts import decode_part
from xcam_widgets.shapes import nets

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install xcam-widgets[ray])")
# Tests on the module's Ray instance: each starts actors (a process, torch, the model), 10-20 s on a
# 2-core machine. A hang (a lost actor, a wait that never ends) fails its test after 4 minutes.
on_ray_cluster = pytest.mark.timeout(240)

LAYER = nets.CAM_LAYER
METHODS = ["gradcam", "xgradcam", "ablationcam"]  # two gradient methods and a perturbation one
N = 12
BATCH = 4
KWARGS = dict(methods=METHODS, layers=LAYER, steps=4, batch_size=BATCH, progress=False)
FLOATS = dict(rtol=1e-4, atol=1e-5)  # float32 sums in another process, with other thread counts


def random_bundle() -> xw.ModelBundle:
    torch.manual_seed(0)
    return xw.load_model("shapes_vgg", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def ray_instance():
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install xcam-widgets[ray])")
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hooks below, in the workers
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local():
    """The local engine's result on the same images, one torch thread as in the actors."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bundle = random_bundle()
    result = evaluate(bundle, f"shapes:{N}", **KWARGS)
    torch.set_num_threads(threads)
    return bundle, result


# Hooks run in the actors before each batch (picklable: the module is pickled by value).


class Log:
    """Append each batch's image ids to a file, one JSON line per attempt."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, ids):
        with open(self.path, "a") as f:
            f.write(json.dumps(ids) + "\n")


class FailOnce:
    """The first batch holding `image` raises a RuntimeError, or kills its worker process with
    `crash`; the marker file, removed by the first try, makes it once across retries and actors."""

    def __init__(self, marker, image, crash=False):
        self.marker, self.image, self.crash = str(marker), image, crash

    def __call__(self, ids):
        if self.image not in ids:
            return
        try:
            os.remove(self.marker)
        except FileNotFoundError:
            return
        if self.crash:
            os._exit(1)
        raise RuntimeError(f"injected fault on image {self.image}")


class StopAfter:
    """The first `k` batches to start run; every later one waits until the driver has written
    `k` parts to `folder`, then fails (a ValueError: not retried), as if the run stopped there."""

    def __init__(self, k, tokens, folder):
        self.k, self.tokens, self.folder = k, str(tokens), str(folder)

    def __call__(self, ids):
        for n in range(self.k):
            try:
                os.close(os.open(os.path.join(self.tokens, str(n)), os.O_CREAT | os.O_EXCL))
                return
            except FileExistsError:
                pass
        deadline = time.monotonic() + 60
        while len(glob.glob(os.path.join(self.folder, "batch-*.npz"))) < self.k and time.monotonic() < deadline:
            time.sleep(0.05)
        raise ValueError(f"stopped at images {ids}")


class Hooks:
    def __init__(self, *hooks):
        self.hooks = hooks

    def __call__(self, ids):
        for hook in self.hooks:
            hook(ids)


def attempts(path) -> list[list]:
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def parts_folder(out):
    return run_paths(out).parts


def assert_same_as_local(table, summary, local_result):
    """The local engine's table: same columns, dtypes and row order; values method by method."""
    expected, expected_summary = local_result
    assert list(table.columns) == list(expected.columns)
    assert table.dtypes.to_dict() == expected.dtypes.to_dict()
    assert not table.duplicated(["image", "method", "layer"]).any() and table["row"].is_unique
    for method in METHODS:
        got, want = (t[t["method"] == method].reset_index(drop=True) for t in (table, expected))
        pd.testing.assert_frame_equal(got, want, **FLOATS, obj=method)
    pd.testing.assert_frame_equal(table, expected, **FLOATS)  # the row order too
    pd.testing.assert_frame_equal(summary, expected_summary, **FLOATS)


@on_ray_cluster
@needs_ray
def test_ray_table_equals_local_table(ray_instance, local, tmp_path):
    bundle, expected = local
    out = tmp_path / "results.csv"
    result = evaluate(bundle, f"shapes:{N}", engine="ray", out=out, engine_options={"workers": 2}, **KWARGS)
    assert_same_as_local(result.table, result.summary, expected)
    assert len(pd.read_csv(out)) == N * len(METHODS) and out.with_name("results.summary.csv").is_file()
    parts = sorted(p.name for p in parts_folder(out).glob("batch-*.npz"))
    assert len(parts) == N // BATCH and parts[0].startswith("batch-000000000-")
    local_maps = expected.maps
    assert sorted(result.maps) == sorted(local_maps) == list(range(N * len(METHODS)))
    for row in local_maps:  # float16 of float32 maps from another process: equal to float16 rounding
        np.testing.assert_allclose(result.maps[row].astype(float), local_maps[row].astype(float), rtol=2e-3, atol=1e-4)
    reopened = open_result(parts_folder(out))  # the parts alone, as the Gallery opens a Ray run
    pd.testing.assert_frame_equal(reopened.table, result.table)
    assert reopened.complete and len(reopened.maps) == len(result.maps)


@on_ray_cluster
@needs_ray
def test_a_failed_batch_and_a_dead_worker_are_retried_once(ray_instance, local, tmp_path):
    bundle, expected = local
    log = tmp_path / "attempts.jsonl"
    raised, crashed = tmp_path / "raise.marker", tmp_path / "crash.marker"
    raised.touch()
    crashed.touch()
    hook = Hooks(Log(log), FailOnce(raised, image=2), FailOnce(crashed, image=9, crash=True))
    table, summary = evaluate(
        bundle,
        f"shapes:{N}",
        engine="ray",
        out=tmp_path / "r.csv",
        engine_options={"workers": 1, "batch_hook": hook},
        **KWARGS,
    )
    assert not raised.exists() and not crashed.exists()  # both faults happened
    tries = attempts(log)
    assert sorted(map(tuple, tries)) == [(0, 1, 2, 3)] * 2 + [(4, 5, 6, 7)] + [(8, 9, 10, 11)] * 2
    assert_same_as_local(table, summary, expected)


@on_ray_cluster
@needs_ray
def test_an_interrupted_run_resumes_with_only_the_missing_images(ray_instance, local, tmp_path):
    bundle, expected = local
    out = tmp_path / "results.csv"
    folder = parts_folder(out)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    # One worker: Ray Data may keep a failed run's actors alive in a Ray that the caller started
    # (here, the fixture's), and the rerun needs the other CPU.
    with pytest.raises(ValueError, match="stopped at images"):  # the worker's error, as the local engine raises it
        evaluate(
            bundle,
            f"shapes:{N}",
            engine="ray",
            out=out,
            **KWARGS,
            engine_options={"workers": 1, "max_retries": 0, "batch_hook": StopAfter(1, tokens, folder)},
        )
    first = {p.name: p.stat() for p in folder.glob("batch-*.npz")}
    done = {image for name in first for image in decode_part(folder / name).positions}  # shapes ids are positions
    assert len(first) == 1 and len(done) == BATCH and not out.exists()

    log = tmp_path / "attempts.jsonl"
    table, summary = evaluate(
        bundle, f"shapes:{N}", engine="ray", out=out, engine_options={"workers": 1, "batch_hook": Log(log)}, **KWARGS
    )
    computed = [image for ids in attempts(log) for image in ids]
    assert sorted(computed) == sorted(set(range(N)) - done)  # each missing image once, nothing else
    for name, stat in first.items():  # the first run's files are left as they were
        again = (folder / name).stat()
        assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert_same_as_local(table, summary, expected)

    # Everything is there: a third run reads the parts and starts no actor.
    log.unlink()
    table, _ = evaluate(bundle, f"shapes:{N}", engine="ray", out=out, engine_options={"batch_hook": Log(log)}, **KWARGS)
    assert not log.exists()
    pd.testing.assert_frame_equal(table, expected[0], **FLOATS)
    with pytest.raises(ValueError, match="another evaluation.*methods"):
        evaluate(bundle, f"shapes:{N}", engine="ray", out=out, **{**KWARGS, "methods": ["gradcam"]})


@on_ray_cluster
@needs_ray
def test_files_a_duplicate_and_a_corrupt_image_give_the_local_table(ray_instance, local, tmp_path, monkeypatch):
    """String ids, files read by the actors (relative paths: resolved for them), no masks; a file
    named twice gives two sets of rows (keyed by position), and a corrupt file rows with its error,
    in both engines alike."""
    from PIL import Image

    from xcam_widgets.shapes.dataset import make_shapes

    bundle, _ = local
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(make_shapes(3, seed=5).images):
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"img{i}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files = ["imgs/img0.png", "imgs/bad.png", "imgs/img1.png", "imgs/img0.png", "imgs/img2.png"]
    monkeypatch.chdir(tmp_path)
    kwargs = dict(
        methods=["gradcam"], layers=LAYER, metrics=["average_drop", "deletion"], steps=2, batch_size=2, progress=False
    )
    expected, _ = evaluate(bundle, files, **kwargs)
    table, _ = evaluate(bundle, files, engine="ray", out="r.csv", engine_options={"workers": 1}, **kwargs)
    assert table["image"].tolist() == files and table["row"].tolist() == [0, 1, 2, 3, 4]
    assert (table["error"] != "").tolist() == [False, True, False, False, False]
    assert table.dtypes.to_dict() == expected.dtypes.to_dict()
    pd.testing.assert_frame_equal(table, expected, **FLOATS)


@on_ray_cluster
@needs_ray
def test_stop_returns_the_batches_so_far_and_a_rerun_completes(ray_instance, local, tmp_path):
    """`stop`, set by `on_rows` after the first batch, ends the Ray run there; the rerun resumes."""
    import threading

    bundle, expected = local
    out = tmp_path / "results.csv"
    stop, seen = threading.Event(), []

    def on_rows(rows, maps):
        seen.append(sorted({row["image"] for row in rows}))
        stop.set()

    partial = evaluate(
        bundle,
        f"shapes:{N}",
        engine="ray",
        out=out,
        engine_options={"workers": 1},
        on_rows=on_rows,
        stop=stop,
        **KWARGS,
    )
    assert not partial.complete and not out.exists() and len(seen) == 1
    assert sorted(set(partial.table["image"])) == seen[0] and len(seen[0]) == BATCH
    assert sorted(partial.maps) == partial.table["row"].tolist()
    table, summary = evaluate(bundle, f"shapes:{N}", engine="ray", out=out, engine_options={"workers": 1}, **KWARGS)
    assert_same_as_local(table, summary, expected)


def test_cli_passes_the_engine_and_its_options(monkeypatch, tmp_path):
    """`--engine ray --address --workers` reach `evaluate` (the engine itself is tested above;
    an actor's start costs seconds); the model is loaded on the CPU and `--device` goes to the actors."""
    cli = importlib.import_module("xcam_widgets.cli")

    calls = []
    monkeypatch.setattr(
        cli,
        "evaluate",
        lambda *args, **kwargs: calls.append((args, kwargs)) or EvaluationResult(pd.DataFrame(), pd.DataFrame()),
    )
    argv = [
        "evaluate",
        "--model",
        "shapes_gap",
        "--random-weights",
        "--images",
        "shapes:4",
        "--no-progress",
        "--out",
        str(tmp_path / "r.csv"),
    ]
    assert main(argv + ["--engine", "ray", "--address", "ray://head:10001", "--workers", "3", "--device", "cuda"]) == 0
    args, kwargs = calls[-1]
    assert kwargs["engine"] == "ray" and kwargs["device"] == "cuda"
    assert kwargs["engine_options"] == {"address": "ray://head:10001", "workers": 3}
    assert next(args[0].model.parameters()).device.type == "cpu"
    assert main(argv) == 0
    assert calls[-1][1]["engine"] == "local" and calls[-1][1]["engine_options"] is None


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    bundle = random_bundle()
    with pytest.raises(ImportError, match=r"pip install xcam-widgets\[ray\]"):
        evaluate(bundle, "shapes:2", engine="ray", **{**KWARGS, "methods": ["gradcam"]})
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate",
                "--model",
                "shapes_gap",
                "--random-weights",
                "--images",
                "shapes:2",
                "--engine",
                "ray",
                "--no-progress",
            ]
        )
    assert exit_info.value.code == 2
    assert "pip install xcam-widgets[ray]" in capsys.readouterr().err


def test_engine_options_are_checked(capsys):
    assert ENGINES == ("local", "ray")
    bundle = random_bundle()
    cases = [
        (dict(engine="local", engine_options={"workers": 2}), "engine='ray' only"),
        (dict(engine="ray", engine_options={"wokers": 2}), "unknown option"),
        (dict(engine="ray", engine_options={"workers": 0}), "workers"),
        (dict(engine="ray", engine_options={"max_retries": -1}), "max_retries"),
        (dict(engine="ray", engine_options={"gpus_per_worker": -1}), "gpus_per_worker"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            evaluate(bundle, "shapes:2", **{**KWARGS, **kwargs})
    with pytest.raises(SystemExit) as exit_info:  # --address without --engine ray
        main(["evaluate", "--model", "shapes_gap", "--random-weights", "--images", "shapes:2", "--address", "auto"])
    assert exit_info.value.code == 2 and "engine='ray' only" in capsys.readouterr().err


class FakeCluster:
    """`ray.cluster_resources()` of a cluster that does not need to exist."""

    def __init__(self, **resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


@pytest.mark.parametrize(
    "resources,options,device,expected",
    [
        ({"CPU": 32.0, "GPU": 4.0}, {}, None, (1.0, 4)),  # one actor per GPU, each holding one
        ({"CPU": 32.0, "GPU": 4.0}, {"gpus_per_worker": 0.5}, None, (0.5, 8)),  # two actors share a GPU
        ({"CPU": 32.0, "GPU": 4.0}, {}, "cpu", (0.0, 32)),  # device="cpu": no GPU asked for, one actor per CPU
        ({"CPU": 8.0}, {"cpus_per_worker": 2}, None, (0.0, 4)),
        ({"CPU": 8.0, "GPU": 2.0}, {"workers": 3}, None, (1.0, 3)),  # an explicit count wins
        ({"CPU": 1.0}, {"cpus_per_worker": 4}, None, (0.0, 1)),  # never fewer than one actor
    ],
)
def test_actor_pool_follows_the_cluster(resources, options, device, expected):
    from xcam_widgets.evaluation.ray import check_options, pool_size

    assert pool_size(FakeCluster(**resources), check_options(options), device) == expected
