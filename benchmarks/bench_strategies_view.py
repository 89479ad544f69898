#!/usr/bin/env python
"""The Strategies view's Python side at 50,000 points: building it, and the figure's JSON payload.

    .venv/bin/python benchmarks/bench_strategies_view.py [--points 50000] [--repeats 5] [--out PATH]

A synthetic `Discovery` (10 classes, 4 clusters each, Gaussian blobs in 2-D; no prototype crops) and a
stand-in Gallery (its table: class, correct, energy) are drawn three ways, each timed `--repeats` times
(median) in the same process:

- floor: a bare `go.FigureWidget` with one `Scattergl` trace of the same x, y;
- figure: the view's scatter (`scatter_figure`: one trace, colours by cluster, row as hover data);
- view: the whole `StrategiesView` (points joined to the table, colour and group menus, the first
  group's cluster cards with their mean maps), and a change of colour mode (class, then energy).

The payload is the figure's JSON (`to_json()`, plotly's base64 typed arrays), as the page receives it.
The browser's draw time (issue 21 asks for <= 300 ms) is not measured here. Writes
benchmarks/results/strategies_view_cpu.md with the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xcam_widgets.strategies import Discovery  # noqa: E402
from xcam_widgets.strategies.view_model import colours, points_frame  # noqa: E402
from xcam_widgets.widgets.strategies_view import StrategiesView, scatter_figure  # noqa: E402

CLASSES, PER_CLASS = 10, 4


def synthetic(n: int, seed: int = 0) -> tuple[Discovery, pd.DataFrame]:
    """A Discovery of `n` rows in CLASSES groups of PER_CLASS clusters each, and the run's table."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, CLASSES, n)
    cluster = group * PER_CLASS + rng.integers(0, PER_CLASS, n)
    centres = rng.normal(0, 20, (CLASSES * PER_CLASS, 2))
    xy = centres[cluster] + rng.normal(0, 1, (n, 2))
    rows = np.arange(n)
    assignments = pd.DataFrame(
        {"row": rows, "group": group, "cluster": cluster, "x": xy[:, 0], "y": xy[:, 1], "score": 0.5, "empty": False}
    )
    ids = np.arange(CLASSES * PER_CLASS)
    sizes = np.bincount(cluster, minlength=len(ids))
    clusters = pd.DataFrame(
        {
            "cluster": ids,
            "group": ids // PER_CLASS,
            "group_name": [f"class {g}" for g in ids // PER_CLASS],
            "size": sizes,
            "rank": ids % PER_CLASS + 1,
            "score": rng.uniform(0, 1, len(ids)),
        }
    )
    groups = pd.DataFrame(
        {
            "group": np.arange(CLASSES),
            "group_name": [f"class {g}" for g in range(CLASSES)],
            "size": np.bincount(group, minlength=CLASSES),
            "status": "clustered",
            "suggested_k": PER_CLASS,
            "k": PER_CLASS,
            "eigenvalues": [[] for _ in range(CLASSES)],
        }
    )
    maps = {int(c): rng.uniform(0, 1, (16, 16)) for c in ids}
    discovery = Discovery(
        assignments, clusters, groups, maps, {int(c): [] for c in ids}, {int(c): [] for c in ids}, "",
        {"error": 0}, "xgradcam", "features.block4", "predicted", "spatial", "spectral", 0,
        rows=pd.DataFrame(), maps=None, access=None,
    )  # fmt: skip
    table = pd.DataFrame(
        {"row": rows, "class": group, "correct": rng.uniform(0, 1, n) < 0.9, "energy": rng.uniform(0, 1, n)}
    )
    return discovery, table


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return ", ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(build: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The median seconds of `repeats` builds, and the last thing built."""
    times, built = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        built = build()
        times.append(time.perf_counter() - start)
        if hasattr(built, "close"):
            built.close()
    return statistics.median(times), built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/strategies_view_cpu.md")
    args = parser.parse_args()
    load_before = loadavg()
    discovery, table = synthetic(args.points)
    gallery = SimpleNamespace(_lock=threading.RLock(), table=SimpleNamespace(frame=table), bundle=SimpleNamespace())
    a = discovery.assignments
    x, y, rows = a["x"].to_numpy(), a["y"].to_numpy(), a["row"].to_numpy()
    points = points_frame(discovery, table)

    floor_s, floor = timed(lambda: go.FigureWidget(data=[go.Scattergl(x=x, y=y, mode="markers")]), args.repeats)
    figure_s, figure = timed(lambda: scatter_figure(x, y, rows, colours(points, "cluster")), args.repeats)

    def whole() -> StrategiesView:
        view = StrategiesView(gallery, discovery, background=False)
        return view

    view_s, view = timed(whole, args.repeats)
    live = StrategiesView(gallery, discovery, background=False)
    recolour_times = []
    for mode in ("class", "energy", "cluster") * args.repeats:
        start = time.perf_counter()
        live.colour.value = mode
        recolour_times.append(time.perf_counter() - start)
    assert len(live.figure.data) == 1 and live.status.value.startswith(f"{args.points} rows")
    recolour_s = statistics.median(recolour_times)
    floor_bytes, figure_bytes = len(floor.to_json()), len(figure.to_json())
    live.close()
    load_after = loadavg()

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node() or 'host'} · {platform.machine()} · {os.cpu_count()} cores"
    machine += f" · Python {platform.python_version()}"
    load = load_before, load_after
    lines = [
        "# Strategies view, Python side (`benchmarks/bench_strategies_view.py`)",
        "",
        f"{stamp} · {machine} · /proc/loadavg (1, 5, 15 min) before: {load[0]}; after: {load[1]}",
        "",
        f"{args.points:,} synthetic points ({CLASSES} classes × {PER_CLASS} clusters), median of {args.repeats} "
        "builds in one process. The floor is a bare `go.FigureWidget` with one `Scattergl` trace of the same x, y.",
        "",
        "| what | seconds | × floor | figure JSON |",
        "|---|---|---|---|",
        f"| floor: bare FigureWidget + Scattergl | {floor_s:.3f} | 1.00 | {floor_bytes / 1e6:.2f} MB |",
        f"| the view's scatter (`scatter_figure`, coloured by cluster) | {figure_s:.3f} | {figure_s / floor_s:.2f} "
        f"| {figure_bytes / 1e6:.2f} MB |",
        f"| the whole `StrategiesView` (menus, {PER_CLASS} cluster cards) | {view_s:.3f} | "
        f"{view_s / floor_s:.2f} | – |",
        f"| a change of colour mode (median over class, energy, cluster) | {recolour_s:.3f} | "
        f"{recolour_s / floor_s:.2f} | – |",
        "",
        "The figure JSON holds x and y as float32 and the colour as float32 (plotly's base64 typed arrays), "
        "the row as int32 hover data: one trace for all points. The floor sends x and y as float64.",
        "",
        "Not measured: the browser's draw (issue 21 asks for <= 300 ms at 50,000 points in the browser "
        "benchmark); no browser ran for this file.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
