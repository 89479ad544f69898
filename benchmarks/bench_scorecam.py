#!/usr/bin/env python
"""Score-CAM's opt-in `top_channels=N` against the exact method, the peers and a floor, in one run.

    .venv/bin/python benchmarks/bench_scorecam.py [--threads 1] [--photos chelsea ...] [--shapes 100] [--out PATH]
    .venv/bin/python benchmarks/bench_scorecam.py --from-json benchmarks/results/scorecam_cpu.json  # report only

Two models, each at its default layer, the target class given to every implementation:
  * EfficientNet-Lite0, layer `features` (1,280 channels, 7×7), on the bundled photos, top-1 class;
  * `shapes_vgg` at its default layer, on `--shapes` held-out shapes images, the true label.
Per image, each timed once, in this order:
  exact     `xw.explain(..., method="scorecam", batch_size=32)`: K masked passes;
  top-N     the same with `top_channels=N`: N masked passes;
  pgc       pytorch-grad-cam's `ScoreCAM` (`batch_size = 32`): hooks, forward, K masked passes, map;
  torchcam  torchcam's `ScoreCAM(batch_size=32)`: hooks, the user's forward, K masked passes;
  floor     `model(batch)` under `torch.no_grad()` for K passes, and for N passes, in batches of 32.
Times are wall and CPU seconds of the process (all threads). Fidelity is Pearson's r and Spearman's ρ over the
pixels of the displayed maps (ReLU, bilinear upsampling to the input, min-max scaling) against our exact map.
torchcam's layer-sized map goes through our `display_map`; pytorch-grad-cam's map is already ReLU, min-max scaled
and bilinearly resized (OpenCV, half-pixel centres, as ours): it differs by an affine scale that r and ρ ignore.

The ranking was chosen by measurement. The library scores the channels with the largest activation mass
Σ_xy ReLU(A_k); on the photos the alternative Σ_xy ReLU(G_k ⊙ A_k) is evaluated from the exact run: a channel's
masked score does not depend on which other channels are scored, so the softmax of the exact scores over
any subset gives that subset's map without re-running the model.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from _common import RESULTS, machine_markdown, package_version  # puts the checkout on sys.path
from pytorch_grad_cam import ScoreCAM as PgcScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from scipy import stats
from torch import nn
from torchcam.methods import ScoreCAM as TorchcamScoreCAM  # noqa: E402

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.evaluation.sources import open_images  # noqa: E402
from xcam_widgets.maps import display_map  # noqa: E402
from xcam_widgets.shapes.constants import HELDOUT_SEED  # noqa: E402

BATCH_SIZE = 32
PHOTO_TOPS = (32, 64, 128)
SHAPES_TOPS = (8, 16, 32)
PEERS = ("pytorch-grad-cam", "torchcam")
TARGET_SPEEDUP, TARGET_R = 10.0, 0.95
Seconds = tuple[float, float]  # (wall, CPU)


def timed(fn: Callable[[], Any]) -> tuple[Any, Seconds]:
    """fn()'s result and its (wall, CPU) seconds; CPU time sums this process's threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def correlations(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(Pearson r, Spearman ρ with tied ranks averaged) over the pixels; NaN where a map is constant."""
    x, y = a.flatten().double().numpy(), b.flatten().double().numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(stats.pearsonr(x, y)[0]), float(stats.spearmanr(x, y)[0])


def floor_seconds(model: nn.Module, x: torch.Tensor, passes: int) -> Seconds:
    """Bare `model(batch)` for `passes` copies of x in batches of BATCH_SIZE: what no Score-CAM can undercut."""
    full = x.expand(BATCH_SIZE, *x.shape[1:]).contiguous()

    def run() -> None:
        with torch.no_grad():
            for start in range(0, passes, BATCH_SIZE):
                model(full[: min(BATCH_SIZE, passes - start)])

    return timed(run)[1]


def pgc_map(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> torch.Tensor:
    """pytorch-grad-cam's Score-CAM map `[1, H, W]`; its tqdm bars are drawn (and timed), their text discarded."""
    with contextlib.redirect_stderr(io.StringIO()), PgcScoreCAM(model, [model.get_submodule(layer)]) as cam:
        cam.batch_size = BATCH_SIZE  # read by its get_cam_weights; its default is 16
        result = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
    if result is None:  # its __exit__ swallows an IndexError
        raise RuntimeError("pytorch-grad-cam's ScoreCAM returned no map (an IndexError inside it)")
    return torch.from_numpy(result)


def torchcam_map(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> torch.Tensor:
    """torchcam's Score-CAM map at the layer's size `[1, h, w]` (ReLU, min-max scaled)."""
    with TorchcamScoreCAM(model, layer, batch_size=BATCH_SIZE, input_shape=tuple(x.shape[1:])) as extractor:
        with torch.no_grad():
            model(x)  # torchcam needs the user's forward pass; it is part of the cost
        return extractor(class_idx=target)[0]


def subset_raw(activations: torch.Tensor, exact_weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The raw map `[1, h, w]` of scoring only `chosen` channels: the exact softmax renormalised over them."""
    weights = torch.zeros_like(exact_weights)
    weights[chosen] = exact_weights[chosen] / exact_weights[chosen].sum()
    return (weights[:, None, None] * activations).sum(0)[None]


def ranking_simulation(model: nn.Module, x: torch.Tensor, layer: str, exact: Any, top: int) -> tuple[float, Any]:
    """Display r of top-N ranked by Σ ReLU(G ⊙ A); the raw map of the library's ranking, to check the simulation."""
    cap = xw.capture(model, x, layer, int(exact.classes[0]))
    A, G, weights = cap.activations[layer][0], cap.gradients[layer][0], exact.weights[0]
    size = tuple(x.shape[2:])
    by_gradient = (G * A).clamp(min=0).sum((1, 2)).argsort(descending=True)[:top]
    by_mass = A.clamp(min=0).sum((1, 2)).argsort(descending=True, stable=True)[:top]
    gradient_r = correlations(display_map(subset_raw(A, weights, by_gradient), size), exact.map)[0]
    return gradient_r, subset_raw(A, weights, by_mass)


def bench_image(
    model: nn.Module, layer: str, x: torch.Tensor, target: int, channels: int, tops: tuple[int, ...], simulate: bool
) -> dict[str, Any]:
    """Every timed run on one image, with fidelity to the exact map."""

    def explain(**options: Any) -> Any:
        return xw.explain(model, x, layer, method="scorecam", target=target, batch_size=BATCH_SIZE, **options)

    exact, exact_s = timed(explain)
    row: dict[str, Any] = {"class": target, "passes": channels, "exact": exact_s, "runs": {}}
    for top in tops:
        approx, seconds = timed(lambda top=top: explain(top_channels=top))
        r, rho = correlations(approx.map, exact.map)
        run = {"passes": top, "time": seconds, "r": r, "rho": rho}
        if simulate:
            run["gradient_r"], mass_raw = ranking_simulation(model, x, layer, exact, top)
            run["simulation_check_r"] = correlations(mass_raw, approx.raw)[0]
        row["runs"][f"top-{top}"] = run
    size = tuple(x.shape[2:])
    for peer, make in zip(PEERS, (pgc_map, torchcam_map)):
        try:
            peer_map, seconds = timed(lambda make=make: make(model, layer, x, target))
        except Exception as err:  # a peer that cannot run on this model is reported, not fatal
            row["runs"][peer] = {"passes": channels, "error": f"{type(err).__name__}: {err}"}
            continue
        shown = peer_map if peer_map.shape[-2:] == size else display_map(peer_map, size)
        r, rho = correlations(shown, exact.map)
        row["runs"][peer] = {"passes": channels, "time": seconds, "r": r, "rho": rho}
    row["floor"] = floor_seconds(model, x, channels)
    for name, run in row["runs"].items():
        run["floor"] = floor_seconds(model, x, run["passes"]) if name.startswith("top-") else row["floor"]
    return row


def summary(rows: list[dict]) -> list[dict]:
    """Per run: medians and worst cases over the images of speed-up (our exact / run), r, ρ and × floor."""
    out = []
    for name in rows[0]["runs"]:
        runs = [(row, row["runs"][name]) for row in rows if "time" in row["runs"].get(name, {})]
        if not runs:
            continue
        speed = [[row["exact"][i] / run["time"][i] for row, run in runs] for i in (0, 1)]
        r, rho = [run["r"] for _, run in runs], [run["rho"] for _, run in runs]
        out.append(
            {
                "run": name,
                "images": len(runs),
                "undefined_r": sum(not np.isfinite(v) for v in r),
                "median_time": [float(np.median([run["time"][i] for _, run in runs])) for i in (0, 1)],
                "median_speedup": [float(np.median(s)) for s in speed],
                "worst_speedup": [float(min(s)) for s in speed],
                "median_r": float(np.nanmedian(r)),
                "worst_r": float(np.nanmin(r)),
                "median_rho": float(np.nanmedian(rho)),
                "worst_rho": float(np.nanmin(rho)),
                "median_x_floor": [
                    float(np.median([run["time"][i] / run["floor"][i] for _, run in runs])) for i in (0, 1)
                ],
            }
        )
    exact_x_floor = [float(np.median([row["exact"][i] / row["floor"][i] for row in rows])) for i in (0, 1)]
    exact_time = [float(np.median([row["exact"][i] for row in rows])) for i in (0, 1)]
    return [{"run": "exact", "images": len(rows), "median_time": exact_time, "median_x_floor": exact_x_floor}, *out]


def meets(entry: dict, which: str) -> bool:
    return min(entry[f"{which}_speedup"]) >= TARGET_SPEEDUP and entry[f"{which}_r"] >= TARGET_R


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def photo_table(rows: list[dict]) -> list[str]:
    lines = [
        "| photo (class) | run | wall / CPU (s) | floor wall / CPU (s) | × floor wall / CPU | speed-up wall / CPU "
        "| display r | display ρ | r if ranked by Σ ReLU(G⊙A) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        (ew, ec), (fw, fc) = row["exact"], row["floor"]
        head = f"| {row['image']} ({row['class']})"
        floor = f"{fw:.1f} / {fc:.1f} | {ew / fw:.2f} / {ec / fc:.2f}"
        lines.append(f"{head} | exact | {ew:.1f} / {ec:.1f} | {floor} | 1 | 1 | 1 | – |")
        for name, run in row["runs"].items():
            if "error" in run:
                lines.append(f"{head} | {name} | {run['error']} | | | | | | |")
                continue
            (w, c), (fw, fc) = run["time"], run["floor"]
            lines.append(
                f"{head} | {name} | {w:.1f} / {c:.1f} | {fw:.1f} / {fc:.1f} | {w / fw:.2f} / {c / fc:.2f} | "
                f"{ew / w:.1f}× / {ec / c:.1f}× | {fmt(run['r'])} | {fmt(run['rho'])} | "
                f"{fmt(run.get('gradient_r', float('nan')))} |"
            )
    return lines


def summary_table(entries: list[dict], digits: int) -> list[str]:
    lines = [
        "| run | images | median wall / CPU (s) | median × floor wall / CPU | speed-up wall / CPU: median | worst "
        "| r: median | worst | ρ: median | worst | target met: median / worst |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        (tw, tc), (xw_, xc) = e["median_time"], e["median_x_floor"]
        start = f"| {e['run']} | {e['images']} | {tw:.{digits}f} / {tc:.{digits}f} | {xw_:.2f} / {xc:.2f}"
        if e["run"] == "exact":
            lines.append(f"{start} | 1 | 1 | 1 | 1 | 1 | 1 | – |")
            continue
        (mw, mc), (ww, wc) = e["median_speedup"], e["worst_speedup"]
        undefined = f" ({e['undefined_r']} undefined)" if e["undefined_r"] else ""
        met = "–" if e["run"] in PEERS else " / ".join("yes" if meets(e, w) else "no" for w in ("median", "worst"))
        lines.append(
            f"{start} | {mw:.1f}× / {mc:.1f}× | {ww:.1f}× / {wc:.1f}× | {fmt(e['median_r'])} | "
            f"{fmt(e['worst_r'])}{undefined} | {fmt(e['median_rho'])} | {fmt(e['worst_rho'])} | {met} |"
        )
    return lines


def verdict(entries: list[dict]) -> str:
    tops = [e for e in entries if e["run"].startswith("top-")]
    at_median = [e["run"] for e in tops if meets(e, "median")]
    at_worst = [e["run"] for e in tops if meets(e, "worst")]
    (ew, ec), peers = entries[0]["median_time"], []
    for e in entries[1:]:
        if e["run"] in PEERS:
            (w, c) = e["median_time"]
            peers.append(f"{e['run']} {w:.3g} / {c:.3g} s ({w / ew:.2f}× / {c / ec:.2f}× ours)")
    return (
        f"target met (speed-up ≥ {TARGET_SPEEDUP:.0f}× in wall and CPU time, r ≥ {TARGET_R}) at the median by "
        f"{', '.join(at_median) or 'no N'}, in the worst case by {', '.join(at_worst) or 'no N'}; median exact "
        f"{ew:.3g} s wall / {ec:.3g} s CPU, peers (wall / CPU) {', '.join(peers) or 'not run'}"
    )


def ranking_sentence(rows: list[dict]) -> str:
    """The worst display r over the photos per N, ranked by activation mass (the library) and by Σ ReLU(G ⊙ A)."""
    tops = [name for name in rows[0]["runs"] if name.startswith("top-")]
    pairs = [f"{name} {min(row['runs'][name]['r'] for row in rows):.3f} / " for name in tops]
    pairs = [p + f"{min(row['runs'][name]['gradient_r'] for row in rows):.3f}" for p, name in zip(pairs, tops)]
    return f"Worst display r over the photos, ranked by activation mass / by Σ ReLU(G ⊙ A): {', '.join(pairs)}."


def markdown(report: dict) -> str:
    photos, shapes = report["photos"], report["shapes"]
    photo_summary, shapes_summary = summary(photos["rows"]), summary(shapes["rows"])
    checks = [run.get("simulation_check_r", 1.0) for row in photos["rows"] for run in row["runs"].values()]
    k_cpu = [row[key][1] for row in photos["rows"] for key in ("exact", "floor")] + [
        run["time"][1]
        for row in photos["rows"]
        for run in row["runs"].values()
        if run["passes"] == row["passes"] and "time" in run
    ]
    fewest = min(int(name[4:]) for name in shapes["rows"][0]["runs"] if name.startswith("top-"))
    lines = [
        "# Score-CAM: exact vs `top_channels=N`, the peers and a floor (CPU)",
        "",
        f"**Verdict** (issue 15, item 3: ≥ {TARGET_SPEEDUP:.0f}× faster than exact with displayed-map Pearson "
        f"r ≥ {TARGET_R}, on EfficientNet-Lite0 `features`). EfficientNet-Lite0, {len(photos['rows'])} photos: "
        f"{verdict(photo_summary)}. shapes_vgg `{shapes['layer']}`, {len(shapes['rows'])} images: "
        f"{verdict(shapes_summary)}.",
        "",
        f"Run {report['started']} (took {report['minutes']:.1f} min) with `{report['command']}`. pytorch-grad-cam "
        f"{package_version('grad-cam')}, torchcam {package_version('torchcam')}. `batch_size={BATCH_SIZE}` for "
        "every implementation. Each figure is one timed run; speed-up is our exact time / the run's time on the "
        "same image (below 1: slower than our exact). × floor is the run's time (wall / CPU) over the time of bare "
        "`model(batch)` calls, under `torch.no_grad()`, for the same number of masked passes (K for exact and the "
        "peers, N for top-N) in batches of 32, measured right after on the same image. r is Pearson's, ρ "
        "Spearman's, between the run's displayed map and our exact one (see the script's docstring: torchcam's "
        "layer-sized map goes through our `display_map`; pytorch-grad-cam's own upsampled map is used as is). "
        "Worst = the smallest speed-up, r or ρ over the images.",
        "",
        "Machine when the run started:",
        "",
        report["machine_before"],
        "",
        "Machine when it ended:",
        "",
        report["machine_after"],
        "",
        f"## EfficientNet-Lite0, layer `{photos['layer']}` ({photos['channels']} channels, 7×7), 224×224, top-1 class",
        "",
        *summary_table(photo_summary, 1),
        "",
        *photo_table(photos["rows"]),
        "",
        f"top-N runs N of the {photos['channels']} masked passes, so its speed-up is at most {photos['channels']}/N "
        f"(10× for N = {photos['channels'] // 10}), less its fixed costs.",
        "",
        "The last column simulates ranking by Σ ReLU(G ⊙ A) instead of the library's activation mass, from the "
        "exact run's scores (see the script's docstring); the same simulation of the library's own ranking matches "
        f"its real top-N run with raw-map r ≥ {min(checks):.6f}. {ranking_sentence(photos['rows'])} Activation "
        "mass was chosen by this measurement (better in the worst case, and it needs no gradient).",
        "",
        f"## shapes_vgg, layer `{shapes['layer']}` ({shapes['channels']} channels, {shapes['grid']}), 64×64, "
        f"{len(shapes['rows'])} images `shapes:{len(shapes['rows'])}:{HELDOUT_SEED}`, their true label",
        "",
        *summary_table(shapes_summary, 3),
        "",
        "r is undefined where the exact map is constant (all zero after ReLU); such images are left out of r and ρ. "
        f"With {shapes['channels']} channels the speed-up of top-N is at most {shapes['channels']}/N passes "
        f"({shapes['channels'] // fewest}× for N = {fewest}), less the fixed cost of a call on a 64×64 input, so "
        "the 10× target cannot be met on this layer by any N; it is stated for EfficientNet-Lite0.",
        "",
        "Notes. Wall times move with the machine's load (compare the load averages at the start and the end); "
        "CPU seconds move less, so read the speed-ups in CPU time first; the verdict asks for both. CPU seconds "
        "still move with contention for the shared cores: the runs of all K passes on EfficientNet-Lite0 (exact, "
        f"peers, floor) took {min(k_cpu):.1f}–{max(k_cpu):.1f} CPU s. "
        "pytorch-grad-cam builds its masks with `UpsamplingBilinear2d` (align_corners=True) and divides by "
        "max − min + 1e-8; ours and torchcam's use align_corners=False (torchcam scales the channel before "
        "upsampling). Those mask differences are the likely reason its maps differ from ours more than torchcam's.",
        "",
    ]
    return "\n".join(lines) + "\n"


def default_layer_of(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[str, tuple[int, int, int]]:
    layers = xw.candidate_layers(model, input_shape)
    layer = xw.default_layer(layers, model)
    return layer, next(info.shape for info in layers if info.name == layer)


def run_photos(names: list[str]) -> dict:
    model, preprocess, _ = xw.load_model("efficientnet_lite0", device="cpu")
    layer, shape = default_layer_of(model, (3, 224, 224))
    rows = []
    for name in names:
        x = preprocess(xw.sample_image(name))[None]
        with torch.no_grad():
            target = int(model(x).argmax(1))
        rows.append({"image": name, **bench_image(model, layer, x, target, shape[0], PHOTO_TOPS, simulate=True)})
        print(f"{name}: {json.dumps(rows[-1], default=str)}", flush=True)
    return {"layer": layer, "channels": shape[0], "rows": rows}


def run_shapes(count: int) -> dict:
    model, preprocess, _ = xw.load_model("shapes_vgg", device="cpu")
    layer, shape = default_layer_of(model, (3, 64, 64))
    batch = open_images(f"shapes:{count}:{HELDOUT_SEED}", preprocess).take(range(count))
    bench_image(model, layer, batch.x[:1], int(batch.labels[0]), shape[0], SHAPES_TOPS, False)  # warm-up, untimed
    rows = []
    for i in range(count):
        target = int(batch.labels[i])
        rows.append({"image": i, **bench_image(model, layer, batch.x[i : i + 1], target, shape[0], SHAPES_TOPS, False)})
        if i % 10 == 9:
            print(f"shapes {i + 1}/{count}", flush=True)
    return {"layer": layer, "channels": shape[0], "grid": f"{shape[1]}×{shape[2]}", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=list(xw.SAMPLE_IMAGES), choices=xw.SAMPLE_IMAGES)
    parser.add_argument("--shapes", type=int, default=100, help="shapes images (held-out seed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "scorecam_cpu.md")
    parser.add_argument("--from-json", type=Path, help="measure nothing: rewrite the report from a saved .json")
    args = parser.parse_args()
    if args.from_json:
        args.out.write_text(markdown(json.loads(args.from_json.read_text())))
        return
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="torchcam")
    start, machine_before = time.perf_counter(), machine_markdown()
    started = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    shapes = run_shapes(args.shapes)  # minutes at most: a broken peer shows before the long part
    photos = run_photos(args.photos)
    report = {
        "started": started,
        "minutes": (time.perf_counter() - start) / 60,
        "command": f"benchmarks/bench_scorecam.py --threads {args.threads} --photos {' '.join(args.photos)} "
        f"--shapes {args.shapes}",
        "machine_before": machine_before,
        "machine_after": machine_markdown(),
        "photos": photos,
        "shapes": shapes,
    }
    args.out.write_text(markdown(report))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
