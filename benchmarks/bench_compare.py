"""`xw.compare`: which similarity measure finds the images whose evidence moved, and what a comparison costs.

1. Truth known: `shapes_shortcut` (A: trained with its label's corner mark, looks at the mark) against
   `shapes_gap` (B: same architecture, trained without the mark, looks at the shape), XGrad-CAM at
   `features.block4`, target the label, on N held-out images with the mark ("shapes_shortcut:N:SEED:label")
   and the same N images without it ("shapes_shortcut:N:SEED:none"). The evidence moved on the marked
   ones. Ranked from least to most similar: the share of marked images on the first page (24) and
   the AUROC for "marked" (the probability that a marked image is less similar than an unmarked one;
   ties count half), per measure; and, to check why Spearman over the whole map fails, Spearman over
   the cells in either map's hottest 25 % only ("spearman_hot", not a measure of the table).
2. Cost: `xw.compare(A, B, images)` against `xw.evaluate(A, images)` + `xw.evaluate(B, images)` with the
   same settings, interleaved, median of the repeats; the ratio is compare / (A + B), also per repeat;
   and inside each compare call, its total against its own two runner calls (the overhead alone).

Usage: python benchmarks/bench_compare.py [--n 96] [--repeats 5] [--json benchmarks/results/compare_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import xcam_widgets as xw
from xcam_widgets.compare import runner as compare_runner
from xcam_widgets.compare.similarity import MEASURES, hottest, ranks

SHORTCUT, CLEAN = "shapes_shortcut", "shapes_gap"
PAGE = 24
HOT_PERCENT = 25.0


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney: P(score of a positive > score of a negative), ties half (average ranks)."""
    r = ranks(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def hot_spearman(a: np.ndarray, b: np.ndarray, top: float = HOT_PERCENT) -> float:
    """Spearman's ρ over the cells in either map's hottest `top` % only: a check of why Spearman over the
    whole map fails (not a measure of the table)."""
    a, b = a.astype(float).ravel(), b.astype(float).ravel()
    cells = np.union1d(hottest(a, top), hottest(b, top))
    ra, rb = ranks(a[cells]), ranks(b[cells])
    return float(np.corrcoef(ra, rb)[0, 1])


def truth_known(n: int, seed: int) -> dict[str, Any]:
    a, b = xw.load_model(SHORTCUT, device="cpu"), xw.load_model(CLEAN, device="cpu")
    tables = []
    for marks in ("label", "none"):
        result = xw.compare(a, b, f"shapes_shortcut:{n}:{seed}:{marks}", metrics=("energy",), progress=False)
        hot = [hot_spearman(result.maps_a[row], result.maps_b[row]) for row in result.table["row"]]
        tables.append(result.table.assign(marked=marks == "label", spearman_hot=hot))
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    marked = table["marked"].to_numpy()
    measures: dict[str, Any] = {}
    for name in (*MEASURES, "spearman_hot"):
        values = table[name].to_numpy(dtype=float)
        first = np.argsort(values, kind="stable")[:PAGE]
        measures[name] = {
            "first_page_precision": float(marked[first].mean()),
            "auroc_marked": auroc(-values, marked),
            "median_marked": float(np.median(values[marked])),
            "median_unmarked": float(np.median(values[~marked])),
        }
    accuracy = {
        f"{model}_{'marked' if m else 'unmarked'}": float(table.loc[table["marked"] == m, f"correct_{ab}"].mean())
        for model, ab in ((SHORTCUT, "a"), (CLEAN, "b"))
        for m in (True, False)
    }
    energy = {
        f"energy_{'marked' if m else 'unmarked'}_{ab}": float(table.loc[table["marked"] == m, f"energy_{ab}"].mean())
        for ab in ("a", "b")
        for m in (True, False)
    }
    return {"images": 2 * n, "seed": seed, "measures": measures, "accuracy": accuracy, "energy_in_shape": energy}


def cost(n: int, seed: int, repeats: int, metrics: tuple[str, ...] | None) -> dict[str, Any]:
    a, b = xw.load_model(SHORTCUT, device="cpu"), xw.load_model(CLEAN, device="cpu")
    images = f"shapes_shortcut:{n}:{seed}:label"
    options: dict[str, Any] = dict(methods=("xgradcam",), metrics=metrics, progress=False)
    times: dict[str, list[float]] = {"compare": [], "evaluate_a": [], "evaluate_b": []}
    for _ in range(repeats):
        for key, run in (
            ("evaluate_a", lambda: xw.evaluate(a, images, **options)),
            ("evaluate_b", lambda: xw.evaluate(b, images, **options)),
            ("compare", lambda: xw.compare(a, b, images, **options)),
        ):
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in times.items()}
    per_repeat = [c / (ta + tb) for c, ta, tb in zip(times["compare"], times["evaluate_a"], times["evaluate_b"])]
    return {
        "images": n,
        "metrics": list(metrics) if metrics else "runner defaults",
        "repeats": repeats,
        "median_s": median,
        "ratio": median["compare"] / (median["evaluate_a"] + median["evaluate_b"]),
        "ratio_per_repeat": per_repeat,
        "inside_compare": inside(a, b, images, options, repeats),
        "all_s": times,
    }


def inside(a: Any, b: Any, images: str, options: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Within each `compare` call, its total time against the time of the two runner calls it makes
    (timed by wrapping `evaluate` where `compare` looks it up): the overhead of the comparison alone,
    free of the load drifting between separate calls."""
    spent: list[float] = []
    original = compare_runner.evaluate

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    ratios, overheads = [], []
    compare_runner.evaluate = timed  # type: ignore[assignment]
    try:
        for _ in range(repeats):
            spent.clear()
            start = time.perf_counter()
            xw.compare(a, b, images, **options)
            total = time.perf_counter() - start
            ratios.append(total / sum(spent))
            overheads.append(total - sum(spent))
    finally:
        compare_runner.evaluate = original  # type: ignore[assignment]
    median_overhead = statistics.median(overheads)
    return {"ratio_median": statistics.median(ratios), "overhead_s_median": median_overhead, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load_before = Path("/proc/loadavg").read_text().strip() if os.path.exists("/proc/loadavg") else "n/a"
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, torch threads 1".strip(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "loadavg_before": load_before,
        "truth_known": truth_known(args.n, args.seed),
        "cost_energy": cost(args.n, args.seed + 1, args.repeats, ("energy",)),
        "cost_defaults": cost(max(args.n // 3, 8), args.seed + 2, max(args.repeats // 2, 2), None),
    }
    results["loadavg_after"] = Path("/proc/loadavg").read_text().strip() if os.path.exists("/proc/loadavg") else "n/a"
    text = json.dumps(results, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
