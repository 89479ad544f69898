#!/usr/bin/env python
"""Throughput of the dataset runner: the local engine against the Ray engine with 1 and 2 workers.

    .venv/bin/python benchmarks/bench_ray.py [--images 64] [--small 16] [--quick] [--out PATH]

On the shapes benchmark ("shapes:N", the `shapes_vgg` net: its trained weights if present, else
random weights), methods gradcam, xgradcam (gradient) and ablationcam (perturbation), every metric
(diagnostics, Average Drop, deletion and insertion with 50 steps, pointing, energy), batches of 8.

Each configuration runs on `--small` and on `--images` images, so that its fixed cost
(starting actors, shipping the model, planning) and its steady-state cost per image separate:
per image = (T_large - T_small) / (large - small), fixed = T_small - small x per image. Ray's own
start (`ray.init` of a local instance) is timed apart. The configurations are interleaved over
`--repeats` rounds (default 3) and the medians reported. Configurations:

  local, 1 thread    the local engine, torch.set_num_threads(1)
  local, 2 threads   the local engine, torch.set_num_threads(2) (this machine's cores)
  ray, 1 worker      engine="ray", 1 actor with 1 CPU (1 torch thread)
  ray, 2 workers     engine="ray", 2 actors with 1 CPU each

It also counts, per image and method, the images that go through the whole network (a forward
pre-hook on its first block) and through its head only (the tails that the true drops and
Ablation-CAM run), and times resnet50's forward on this CPU: the inputs of the ImageNet projection
in the report. Writes benchmarks/results/ray_cpu.md (or --out) and a .json beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import core_count, cpu_model, load_average, package_version  # also puts the checkout on sys.path

ROOT = Path(__file__).resolve().parents[1]

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.evaluation import evaluate, evaluate_batch, open_images  # noqa: E402
from xcam_widgets.shapes import nets  # noqa: E402

METHODS = ("gradcam", "xgradcam", "ablationcam")
COUNTED = (*METHODS, "scorecam")  # model passes are also counted for Score-CAM (K masked inputs per image)
MODEL = "shapes_vgg"
BATCH = 8

# The ImageNet projection: what is assumed (no GPU was available), in one place.
IMAGENET_VAL = 50_000
PROJECTED_METHODS = 7
RESNET50_CHANNELS = 2048  # K at layer4: Score-CAM's masked inputs per image
ASSUMED_GPU_IMAGES_PER_S = 2500.0  # resnet50 fp32 (TF32) forward, large batches, one A100-class GPU
ASSUMED_EFFICIENCY = 0.9  # of N GPUs: JPEG decoding in the actor, Ray's per-batch overhead, the last batches
ASSUMED_JPEG_MS = 8.0  # decode + resize + crop of one ImageNet JPEG on one CPU core
PROJECTED_GPUS = (1, 2, 4, 8, 16, 32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images of the large run (default 64)")
    parser.add_argument("--small", type=int, default=16, help="images of the small run (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="8 and 16 images, 4 steps, 1 repeat: checks the script")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray_cpu.md")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="measure nothing: rewrite --out from a saved .json"
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        args.out.write_text(report(json.loads(args.from_json.read_text())))
        print(f"wrote {args.out}")
        return 0
    large, small, steps, repeats = (16, 8, 4, 1) if args.quick else (args.images, args.small, 50, args.repeats)
    started = time.perf_counter()
    machine = machine_info(" ".join(["python", *sys.argv]))
    bundle, weights = shapes_bundle()
    images = {n: f"shapes:{n}" for n in (small, large)}
    kwargs = dict(methods=list(METHODS), layers=nets.CAM_LAYER, batch_size=BATCH, steps=steps, progress=False)

    counts = model_passes(bundle, steps)
    print("model passes per image:", counts, flush=True)
    resnet = resnet50_forward()
    print("resnet50 forward on this CPU:", resnet, flush=True)

    import ray

    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="warning")
    ray_init = time.perf_counter() - t
    print(f"ray.init: {ray_init:.1f} s", flush=True)
    configs = {
        "local, 1 thread": ("local", 1),
        "local, 2 threads": ("local", 2),
        "ray, 1 worker": ("ray", 1),
        "ray, 2 workers": ("ray", 2),
    }
    samples: dict[str, dict[int, list[float]]] = {name: {small: [], large: []} for name in configs}
    tables = {}
    try:
        # Repeats interleave the configurations, so that a change in the machine's load hits them alike.
        for repeat in range(repeats):
            for name, (engine, k) in configs.items():
                torch.set_num_threads(k if engine == "local" else 1)
                options = {"engine_options": {"workers": k}} if engine == "ray" else {}
                for n in (small, large):
                    t = time.perf_counter()
                    tables[(name, n)] = evaluate(bundle, images[n], engine=engine, **options, **kwargs).table
                    samples[name][n].append(time.perf_counter() - t)
                    seconds = samples[name][n][-1]
                    print(f"repeat {repeat + 1}/{repeats}, {name}, {n} images: {seconds:.1f} s", flush=True)
    finally:
        t = time.perf_counter()
        ray.shutdown()
        ray_shutdown = time.perf_counter() - t
    runs = {name: {n: statistics.median(v) for n, v in by_n.items()} for name, by_n in samples.items()}

    differences = {
        f"{name}, {n} images": d
        for (name, n), table in tables.items()
        if (d := _difference(table, tables[("local, 1 thread", n)])) is not None
    }
    for key, difference in differences.items():
        print(f"differs from the local engine: {key}: {difference}", flush=True)
    machine["load average at end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    machine["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    result = {
        "machine": machine,
        "weights": weights,
        "methods": METHODS,
        "batch_size": BATCH,
        "steps": steps,
        "small": small,
        "large": large,
        "runs": {k: {str(n): v for n, v in r.items()} for k, r in runs.items()},
        "samples": {k: {str(n): v for n, v in r.items()} for k, r in samples.items()},
        "ray_init_s": ray_init,
        "ray_shutdown_s": ray_shutdown,
        "model_passes": counts,
        "resnet50": resnet,
        "differences": differences,
        "repeats": repeats,
        "quick": args.quick,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.write_text(report(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def shapes_bundle() -> tuple[xw.ModelBundle, str]:
    if nets.weights_path(MODEL).is_file():
        return xw.load_model(MODEL, device="cpu"), "trained (shipped weights)"
    torch.manual_seed(0)
    return xw.load_model(MODEL, pretrained=False, device="cpu"), "random (seed 0): the trained weights were missing"


def model_passes(bundle: xw.ModelBundle, steps: int, n: int = 4) -> dict[str, dict[str, float]]:
    """Per image and method, with every metric: images through the whole network and through its head."""
    model = bundle.model
    counts = {"full": 0, "head": 0}

    def counter(key):
        def hook(module, args):
            if type(args[0]) is torch.Tensor:  # not the proxies of torch.fx tracing the tail
                counts[key] += args[0].shape[0]

        return hook

    handles = [
        model.features.block1.register_forward_pre_hook(counter("full")),
        model.classifier[0].register_forward_pre_hook(counter("head")),
    ]  # a leaf: traced tails call it too
    batch = open_images(f"shapes:{n}", bundle.preprocess).take(range(n))
    out = {}
    try:
        for method in COUNTED:
            counts.update(full=0, head=0)
            evaluate_batch(bundle, batch, [method], [nets.CAM_LAYER], steps=steps)
            out[method] = {"full": counts["full"] / n, "head_only": (counts["head"] - counts["full"]) / n}
    finally:
        for handle in handles:
            handle.remove()
    return out


def resnet50_forward(batch: int = 8, repeats: int = 3) -> dict[str, float]:
    """resnet50 (random weights) forward, batch 8 at 224 px, on this CPU: median s and images/s."""
    import torchvision

    torch.set_num_threads(os.cpu_count() or 1)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(batch, 3, 224, 224)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    median = sorted(times)[len(times) // 2]
    return {"batch": batch, "threads": torch.get_num_threads(), "median_s": median, "images_per_s": batch / median}


def _difference(table, local) -> str | None:
    """None where `table` equals the local engine's `local` (rtol 1e-3, atol 1e-4), else what differs."""
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(table, local, rtol=1e-3, atol=1e-4)
        return None
    except AssertionError as err:
        return " ".join(str(err).split())[:300]


def machine_info(command: str) -> dict[str, Any]:
    return {
        "CPU": f"{cpu_model()} ({platform.machine()})",
        "cores available": core_count(),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "python": platform.python_version(),
        **{name: package_version(name) for name in ("torch", "ray", "pandas")},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load average at start": load_average(),
        "command": command,
    }


def _equality(differences: dict[str, str]) -> str:
    if not differences:
        return "**yes**."
    import re

    found = []
    for key, message in differences.items():
        column = re.search(r'column name="([^"]+)"', message)
        share = re.search(r"values are different \(([0-9.]+) %\)", message)
        name, percent = column.group(1) if column else "?", share.group(1) if share else "?"
        found.append(f"{key}: `{name}` in {percent} % of the rows")
    ray_ok = not any(key.startswith("ray") for key in differences)
    return (
        "**no**, "
        + "; ".join(found)
        + "."
        + (
            " Every Ray table equals it; the local engine with 2 threads does not: another thread count changes "
            "float sums, and a near-tie in a map's pixel order changes the deletion / insertion curve."
            if ray_ok
            else ""
        )
    )


def split(runs: dict[int, float], small: int, large: int) -> tuple[float, float]:
    """(seconds per image in steady state, fixed seconds) from the small and the large run."""
    per_image = (runs[large] - runs[small]) / (large - small)
    return per_image, runs[small] - small * per_image


def report(r: dict[str, Any]) -> str:
    small, large = r["small"], r["large"]
    m = r["machine"]
    lines = ["# Dataset runner: local engine against Ray on the CPU", ""]
    if r["quick"]:
        lines += ["> **Quick run** (`--quick`): a check that the script works, not figures.", ""]
    cores = m["cores available"]
    loads = [float(x) for x in (m["load average at start"].split(" / ")[0], m["load average at end"].split(" / ")[0])]
    if max(loads) > cores:
        lines += [
            f"> **Shared machine**: 1-minute load average {loads[0]:.2f} at the start and {loads[1]:.2f} at "
            f"the end, on {cores} cores: other jobs ran during the benchmark, so every time below is "
            "inflated and noisy; the ratios between configurations are the useful part.",
            "",
        ]
    lines += ["## Machine", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in m.items()] + [""]
    lines += [
        "## Workload",
        "",
        f"- `{MODEL}` ({r['weights']}), layer `{nets.CAM_LAYER}`; methods {', '.join(r['methods'])}.",
        f"- every metric: diagnostics (with the true drops), Average Drop / Increase, deletion and insertion "
        f"({r['steps']} steps), pointing, energy; batches of {r['batch_size']} images.",
        f"- each configuration on {small} and on {large} images (`shapes:{small}`, `shapes:{large}`): "
        f"steady state = (T{large} - T{small}) / {large - small} per image, fixed = T{small} - {small} x that.",
        f"- Ray: a local instance (`ray.init(num_cpus={cores})`) started once, before all runs (idle during the "
        "local ones); each Ray `evaluate` call then starts its own actors (a process each, torch, xcam-widgets, "
        "the model).",
        f"- {r['repeats']} interleaved round(s) of all configurations; the times are medians (the range of "
        f"T{large} is shown).",
        "- every table equal to the local engine's with 1 thread (rtol 1e-3, atol 1e-4): "
        + _equality(r["differences"]),
        "",
        "## Throughput",
        "",
        f"| configuration | T{small} s | T{large} s | T{large} range s | steady s/image | steady images/s | "
        f"fixed s | end-to-end images/s ({large}) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in r["runs"].items():
        runs = {int(k): v for k, v in runs.items()}
        spread = r["samples"][name][str(large)]
        per_image, fixed = split(runs, small, large)
        rate = f"{1 / per_image:.2f}" if per_image > 0 else "n/a (noise)"
        lines.append(
            f"| {name} | {runs[small]:.1f} | {runs[large]:.1f} | {min(spread):.1f}–{max(spread):.1f} | "
            f"{per_image:.3f} | {rate} | {fixed:.1f} | {large / runs[large]:.2f} |"
        )
    lines += [
        "",
        f"Ray's own start: `ray.init` of a local instance took **{r['ray_init_s']:.1f} s** and "
        f'`ray.shutdown` {r["ray_shutdown_s"]:.1f} s; `evaluate(..., engine="ray")` without a running Ray pays '
        "that start on top of the fixed cost above (it starts a local Ray and shuts it down).",
        "",
        *reading(r),
        "",
        "## Model passes per image (measured)",
        "",
        "Images through the whole network, and through its head only (the true drops and Ablation-CAM run "
        f"the network after the layer), per image and method, with every metric and {r['steps']} steps:",
        "",
        "| method | whole network | head only |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v['full']:.0f} | {v['head_only']:.0f} |" for k, v in r["model_passes"].items()]
    rn = r["resnet50"]
    lines += [
        "",
        f"resnet50 forward on this CPU (random weights, batch {rn['batch']}, 224 px, {rn['threads']} "
        f"threads): {rn['median_s']:.2f} s per batch, **{rn['images_per_s']:.1f} images/s** (median of 3).",
        "",
    ]
    return "\n".join(lines + projection(r)) + "\n"


def reading(r: dict[str, Any]) -> list[str]:
    """What the table says about Ray's overhead, in words."""
    small, large = r["small"], r["large"]
    runs = {name: {int(k): v for k, v in v.items()} for name, v in r["runs"].items()}
    local_s, local_fixed = split(runs["local, 1 thread"], small, large)
    one_s, one_fixed = split(runs["ray, 1 worker"], small, large)
    two_s, two_fixed = split(runs["ray, 2 workers"], small, large)
    lines = [
        "Reading (the local engine with 1 thread is the baseline: on this VM torch's 2 threads are slower than 1 "
        "on these small tensors):",
        f"- steady state: Ray with 1 worker runs {local_s / one_s:.2f} x the local speed (its per-batch cost, "
        "a task and a part file of JSON rows and float16 maps, is lost in the noise); with 2 workers "
        f"{local_s / two_s:.2f} x, on 2 cores that other jobs also used.",
        f"- fixed: {one_fixed:.0f} s (1 worker) and {two_fixed:.0f} s (2 workers) per `evaluate` call to start the "
        f"actors (a process, torch, xcam-widgets and the model each), plus {r['ray_init_s']:.0f} s for `ray.init` "
        "when the call starts Ray itself.",
    ]
    if two_s < local_s:
        breakeven = (two_fixed + r["ray_init_s"] - local_fixed) / (local_s - two_s)
        lines.append(
            "- so on this machine Ray with 2 workers, Ray's start included, beats the local engine from about "
            f"{breakeven:.0f} images of this workload on; below that it only adds its start."
        )
    return lines


def projection(r: dict[str, Any]) -> list[str]:
    """ImageNet's validation set, 7 methods, resnet50 `layer4`, on N GPUs: from the measured pass
    counts and Ray overheads, and the assumed GPU throughput (module constants)."""
    passes = r["model_passes"]
    single = max(passes["gradcam"]["full"], passes["xgradcam"]["full"])  # a single-pass method with every metric
    score_extra = passes["scorecam"]["full"] - single  # Score-CAM's masked inputs: K of the shapes layer
    shapes_k = nets.WIDTHS[-1]
    per_image = PROJECTED_METHODS * single + 1  # + the top-1 pass that picks the class (no labels in a folder)
    forwards = IMAGENET_VAL * per_image
    with_score = forwards + IMAGENET_VAL * RESNET50_CHANNELS * score_extra / shapes_k
    gpu = ASSUMED_GPU_IMAGES_PER_S
    cpu = r["resnet50"]["images_per_s"]
    runs = {name: {int(k): v for k, v in v.items()} for name, v in r["runs"].items()}
    local_s, _ = split(runs["local, 1 thread"], r["small"], r["large"])
    ray_s, ray_fixed = split(runs["ray, 1 worker"], r["small"], r["large"])
    overhead_per_batch = (ray_s - local_s) * r["batch_size"]
    batch_gpu_s = 32 * per_image / gpu  # a batch of 32 ImageNet images on one GPU
    lines = [
        "## Projection: ImageNet validation (50,000 images), 7 methods, N GPUs",
        "",
        "> **Since measured on a GPU:** `evaluate_cuda.md` (`bench_evaluate.py`) timed the runner itself on an "
        "H100 (resnet50 `layer4`, JPEGs decoded, every metric but localisation): 0.134 s per image for the 7 "
        "single-pass methods, which projects to 2.1 h on one such GPU and 18 min on 8, against 4.6 h and 36 min "
        "below. That file's projection replaces this one; this one stays as the cross-check from pass counts.",
        "",
        "Nothing here ran on a GPU. **Measured** (above, on this machine): the model passes per image and "
        "method, Ray's start and fixed costs, its per-batch overhead, resnet50's forward speed on this CPU. "
        "**Assumed**: the GPU's speed and the rest, in the list below (constants at the top of the script).",
        "",
        "Model: resnet50 at `layer4` (K = 2048 channels), `target='top1'` (a folder of images), every metric "
        f"but the localisation ones (no masks), {r['steps']} deletion / insertion steps, batches of 32.",
        "",
        "Cost model, per image and method (the pass counts are the shapes net's, measured, and do not depend "
        "on the network except where they scale with K):",
        f"- **{single:.0f} whole-network forward passes** (measured for Grad-CAM / XGrad-CAM with every metric: "
        "the explanation, Average Drop, deletion and insertion with steps + 1 each, the diagnostics); "
        "the 7 methods are taken to be single-pass ones like these (Grad-CAM, XGrad-CAM, Grad-CAM++, HiResCAM, "
        "LayerCAM, Eigen-CAM, CAM).",
        "- head-only passes (the K true drops of the diagnostics, Ablation-CAM's K ablations): on resnet50 the "
        "head after `layer4` is average pooling and one linear layer, so they are **taken as free** (assumed).",
        "- backward passes run from the logit down to `layer4` only: **taken as free** on resnet50 (assumed).",
        f"- so {per_image:.0f} forward passes per image for the 7 methods (+1 for the top-1 class), "
        f"{forwards / 1e6:.1f} M resnet50 forwards for the 50,000 images.",
        "",
        "Assumptions:",
        f"- one GPU runs resnet50's fp32 forward at **{gpu:,.0f} images/s** in the metrics' large chunks "
        f"(A100-class, TF32; assumed, not measured: an H100 may give twice that, an older card half). "
        f"This CPU measured {cpu:.1f} images/s, so the assumed GPU is {gpu / cpu:,.0f} x this 2-core VM.",
        f"- N GPUs give {ASSUMED_EFFICIENCY:.0%} of N x one GPU: batches are independent and the rows are tiny, "
        f"but each actor decodes its JPEGs between GPU calls ({ASSUMED_JPEG_MS:.0f} ms per image and core, "
        f"assumed: {32 * ASSUMED_JPEG_MS / 1000:.2f} s per batch of 32 against {batch_gpu_s:.1f} s of GPU work) "
        "and the last batches leave GPUs idle.",
        f"- Ray's per-batch overhead, measured here as the steady-state difference between Ray with 1 worker and "
        f"the local engine with 1 thread: {overhead_per_batch:+.2f} s per batch of {r['batch_size']} on this "
        "loaded CPU (noise of the same order); against the GPU batch time it is negligible.",
        f"- start: Ray ({r['ray_init_s']:.0f} s here) plus the actors and the model "
        f"({ray_fixed:.0f} s here); on a cluster, taken as 2 minutes, once.",
        "",
        "| GPUs | 7 single-pass methods | with Score-CAM as one of the 7 |",
        "|---:|---:|---:|",
    ]
    for n in PROJECTED_GPUS:
        t = forwards / (gpu * n * ASSUMED_EFFICIENCY) + 120
        t_score = with_score / (gpu * n * ASSUMED_EFFICIENCY) + 120
        lines.append(f"| {n} | {_duration(t)} | {_duration(t_score)} |")
    lines += [
        "",
        f"Score-CAM runs the whole network on K masked inputs per image ({score_extra:.0f} extra passes measured "
        f"on the shapes net's K = {shapes_k}; {RESNET50_CHANNELS:,} on resnet50): those alone cost "
        f"{RESNET50_CHANNELS / single:.0f} x a single-pass method with all its metrics, so one such method "
        "dominates the bill.",
        f"On this 2-core CPU the 7 single-pass methods would take about "
        f"{_duration(forwards / cpu)} (at the measured {cpu:.1f} resnet50 images/s): the Ray engine is for GPUs and "
        "clusters; on a laptop it only adds its start.",
    ]
    return lines


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


if __name__ == "__main__":
    sys.exit(main())
