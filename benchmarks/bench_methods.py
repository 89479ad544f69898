#!/usr/bin/env python
"""Speed of `xw.explain` against the floor, pytorch-grad-cam and torchcam, all in one run.

    .venv/bin/python benchmarks/bench_methods.py [--quick] [--device cpu|cuda] [--out PATH]

Gradient methods (XGrad-CAM, Grad-CAM) on resnet50 `layer4` and vgg16 `features.29`, batch 1 and 8:
  * floor     one forward with a forward hook on the layer + `torch.autograd.grad` of the target
              logit w.r.t. the hooked output; no map, no checks. Nothing can be faster.
  * xcam      `xw.explain(model, x, layer, method=..., target=c)`, the whole call.
  * pgc       pytorch-grad-cam: construct the CAM (hooks), call it, release the hooks.
  * torchcam  torchcam: construct the extractor (hooks), run the forward, call the extractor,
              remove the hooks (torchcam needs the user's forward, so it is timed too).
Ablation-CAM on the same layers, batch 1, `batch_size=32` for both xcam and pytorch-grad-cam.

Timings are medians and inter-quartile ranges over repeats after a warm-up; the gradient
implementations of one (model, batch) are interleaved repeat by repeat (rotating the order) so
that a change in machine load hits all of them alike. Ratios are between medians of the same run.
See benchmarks/README.md for the columns. Only files under benchmarks/ are written.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from _common import RESULTS, core_count, cpu_model, load_average, package_version  # puts the checkout on sys.path
from pytorch_grad_cam import AblationCAM, GradCAM, XGradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from torch import nn
from torchcam import methods as torchcam_methods  # noqa: E402

import xcam_widgets as xw  # noqa: E402

LAYERS = {"resnet50": "layer4", "vgg16": "features.29"}
GRADIENT_METHODS = ("xgradcam", "gradcam")
PGC_CLASSES = {"xgradcam": XGradCAM, "gradcam": GradCAM}
TORCHCAM_CLASSES = {"xgradcam": torchcam_methods.XGradCAM, "gradcam": torchcam_methods.GradCAM}
# The targets.
FLOOR_TARGET = 1.10  # xcam gradient methods: median <= 1.10 x the floor's median
ABLATION_TARGETS = {"vgg16": 20.0, "resnet50": 100.0}  # pgc median / xcam median, at least
ABLATION_BATCH_SIZE = 32


# --------------------------------------------------------------------------------------------
# Machine and memory
# --------------------------------------------------------------------------------------------

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak resident set size of the process during one call, from /proc (outside the timed
    region: a write before, a read after). Where VmHWM cannot be reset, the peak is the process's
    high-water mark since start (`ru_maxrss`), which only grows; `resettable` says which."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = _reset_peak_rss() and _status_kib("VmHWM") is not None

    def before(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.resettable:
            _reset_peak_rss()
        return _mib(_status_kib("VmRSS"))

    def after(self) -> tuple[float, float | None]:
        if self.resettable:
            peak = _mib(_status_kib("VmHWM"))
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        cuda = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        return peak, cuda


def _mib(kib: int | None) -> float:
    return float("nan") if kib is None else kib / 1024


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    peak_rss_mib: float
    delta_rss_mib: float
    peak_cuda_mib: float | None


@dataclass
class Row:
    """One implementation on one (model, layer, batch): its samples and what they summarise to."""

    kind: str  # "gradient" or "ablation"
    model: str
    layer: str
    batch: int
    method: str  # xgradcam / gradcam / ablationcam / "-" for the floor
    impl: str  # floor / xcam / pgc / torchcam
    samples: list[Sample] = field(default_factory=list)
    agreement_r: float | None = None  # Pearson r of the map against xcam's map of the same method

    @property
    def times(self) -> np.ndarray:
        return np.array([s.seconds for s in self.samples])

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def iqr(self) -> float:
        if len(self.samples) < 2:
            return float("nan")
        q1, q3 = np.percentile(self.times, [25, 75])
        return float(q3 - q1)

    @property
    def peak_rss(self) -> float:
        return max(s.peak_rss_mib for s in self.samples)

    @property
    def delta_rss(self) -> float:
        return max(s.delta_rss_mib for s in self.samples)

    @property
    def peak_cuda(self) -> float | None:
        values = [s.peak_cuda_mib for s in self.samples if s.peak_cuda_mib is not None]
        return max(values) if values else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn: Callable[[], Any], device: torch.device, memory: MemoryProbe) -> tuple[Sample, Any]:
    base = memory.before()
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    seconds = time.perf_counter() - start
    peak, cuda = memory.after()
    return Sample(seconds, peak, max(0.0, peak - base), cuda), out


def measure_interleaved(
    runners: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device, memory: MemoryProbe
) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    """Warm every runner up, then time them repeat by repeat in a rotating order."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    names = list(runners)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    outputs: dict[str, Any] = {}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            sample, outputs[name] = timed_call(runners[name], device, memory)
            samples[name].append(sample)
    return samples, outputs


# --------------------------------------------------------------------------------------------
# The implementations
# --------------------------------------------------------------------------------------------


def floor_runner(model: nn.Module, layer_module: nn.Module, x: torch.Tensor, target: int) -> Callable[[], Any]:
    """One forward with a forward hook on the layer, then autograd.grad of the target logit(s)
    w.r.t. the hooked output. No checks, no map: the least any gradient CAM has to do."""

    def run() -> torch.Tensor:
        store: dict[str, torch.Tensor] = {}
        handle = layer_module.register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
        try:
            logits = model(x)
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(logits[:, target].sum(), store["A"])
        return grad

    return run


def xcam_runner(model: nn.Module, layer: str, x: torch.Tensor, method: str, target: int, **options: Any):
    def run() -> Any:
        return xw.explain(model, x, layer, method=method, target=target, **options)

    return run


def pgc_runner(cls: type, model: nn.Module, layer_module: nn.Module, x: torch.Tensor, target: int, **kwargs: Any):
    targets = [ClassifierOutputTarget(target) for _ in range(x.shape[0])]

    def run() -> np.ndarray:
        # pytorch-grad-cam's AblationCAM draws tqdm bars on stderr; they are still drawn (and
        # timed), only their text is discarded.
        with contextlib.redirect_stderr(io.StringIO()), cls(model=model, target_layers=[layer_module], **kwargs) as cam:
            return cam(input_tensor=x, targets=targets)

    return run


def torchcam_runner(cls: type, model: nn.Module, layer: str, x: torch.Tensor, target: int):
    def run() -> list[torch.Tensor]:
        with cls(model, layer) as extractor:
            scores = model(x)  # torchcam needs the user's forward pass; it is part of the cost
            return extractor(class_idx=target, scores=scores)

    return run


# --------------------------------------------------------------------------------------------
# Agreement of the maps (outside the timed region, on the last timed call's outputs)
# --------------------------------------------------------------------------------------------


def as_maps(output: Any, size: tuple[int, int]) -> np.ndarray | None:
    """`[B, H, W]` float64 maps at the input size from any implementation's output."""
    if isinstance(output, np.ndarray):
        maps = torch.from_numpy(output)
    elif isinstance(output, list) and output and isinstance(output[0], torch.Tensor):  # torchcam
        maps = output[0].detach()
    elif hasattr(output, "map"):  # xcam Explanation
        maps = output.map.detach()
    else:
        return None
    maps = maps.float().cpu()
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps.double().numpy()


def min_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest per-image Pearson r between two `[B, H, W]` map batches (NaN for a flat map)."""
    values = []
    for x, y in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        if x.std() == 0 or y.std() == 0:
            values.append(float("nan"))
        else:
            values.append(float(np.corrcoef(x, y)[0, 1]))
    return min(values) if values else float("nan")


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def build_model(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)  # random weights: nothing to download
    return model.to(device).eval()


def pick_target(model: nn.Module, x: torch.Tensor) -> int:
    """The top-1 class of image 0, passed as a fixed int to every implementation. Its logit is
    then positive for image 0, so pytorch-grad-cam's Ablation-CAM (which divides by S_c) and
    ours (which divides by |S_c|) agree in sign."""
    with torch.no_grad():
        return int(model(x[:1]).argmax(dim=1)[0])


def bench_gradient(
    model_name: str,
    model: nn.Module,
    batch: int,
    size: int,
    args: argparse.Namespace,
    device: torch.device,
    memory: MemoryProbe,
) -> list[Row]:
    layer = LAYERS[model_name]
    layer_module = dict(model.named_modules())[layer]
    torch.manual_seed(batch)
    x = torch.randn(batch, 3, size, size, device=device)
    target = pick_target(model, x)
    runners: dict[str, Callable[[], Any]] = {"floor": floor_runner(model, layer_module, x, target)}
    for method in GRADIENT_METHODS:
        runners[f"xcam/{method}"] = xcam_runner(model, layer, x, method, target)
        runners[f"pgc/{method}"] = pgc_runner(PGC_CLASSES[method], model, layer_module, x, target)
        runners[f"torchcam/{method}"] = torchcam_runner(TORCHCAM_CLASSES[method], model, layer, x, target)
    log(
        f"gradient  {model_name:8s} {layer:11s} batch {batch}: target class {target}, "
        f"{len(runners)} implementations x ({args.warmup} warm-up + {args.repeats} repeats)"
    )
    samples, outputs = measure_interleaved(runners, args.repeats, args.warmup, device, memory)
    rows = []
    for name, runs in samples.items():
        impl, _, method = name.partition("/")
        row = Row("gradient", model_name, layer, batch, method or "-", impl, runs)
        if impl in ("pgc", "torchcam"):
            ours, theirs = as_maps(outputs[f"xcam/{method}"], (size, size)), as_maps(outputs[name], (size, size))
            row.agreement_r = min_pearson(ours, theirs)
        rows.append(row)
        log(f"    {name:18s} median {1e3 * row.median:9.1f} ms  IQR {1e3 * row.iqr:8.1f} ms")
    return rows


def bench_ablation(
    model_name: str, model: nn.Module, size: int, args: argparse.Namespace, device: torch.device, memory: MemoryProbe
) -> list[Row]:
    layer = LAYERS[model_name]
    layer_module = dict(model.named_modules())[layer]
    torch.manual_seed(1)
    x = torch.randn(1, 3, size, size, device=device)
    target = pick_target(model, x)
    ours_fn = xcam_runner(model, layer, x, "ablationcam", target, batch_size=ABLATION_BATCH_SIZE)
    pgc_fn = pgc_runner(AblationCAM, model, layer_module, x, target, batch_size=ABLATION_BATCH_SIZE)
    log(
        f"ablation  {model_name:8s} {layer:11s} batch 1: target class {target}; xcam {args.warmup} warm-up + "
        f"{args.repeats} repeats, pytorch-grad-cam light warm-up + {args.ablation_repeats} repeats"
    )

    rows = []
    ours = Row("ablation", model_name, layer, 1, "ablationcam", "xcam")
    for _ in range(args.warmup):
        ours_fn()
    for _ in range(args.repeats):
        sample, ours_out = timed_call(ours_fn, device, memory)
        ours.samples.append(sample)
    log(f"    {'xcam/ablationcam':18s} median {ours.median:9.3f} s   IQR {ours.iqr:8.3f} s")
    rows.append(ours)

    # A full pytorch-grad-cam run is (channels / 32) forwards of the whole model on 32 images,
    # minutes on a CPU; its warm-up is one such forward, which warms the same kernels and buffers.
    theirs = Row("ablation", model_name, layer, 1, "ablationcam", "pgc")
    forward_s = float("nan")
    with torch.no_grad():
        for _ in range(max(1, args.warmup)):
            synchronize(device)
            start = time.perf_counter()
            model(x.expand(ABLATION_BATCH_SIZE, *x.shape[1:]))
            synchronize(device)
            forward_s = time.perf_counter() - start
    channels = ours_out.contributions.shape[1]
    forwards = -(-channels // ABLATION_BATCH_SIZE)
    log(
        f"    pytorch-grad-cam: {channels} channels -> {forwards} forwards of {ABLATION_BATCH_SIZE} images, "
        f"~{forward_s:.1f} s each now: expect ~{forwards * forward_s / 60:.1f} min per run"
    )
    for rep in range(args.ablation_repeats):
        sample, pgc_out = timed_call(pgc_fn, device, memory)
        theirs.samples.append(sample)
        log(f"    {'pgc/ablationcam':18s} run {rep + 1}/{args.ablation_repeats}: {sample.seconds:9.1f} s")
    theirs.agreement_r = min_pearson(as_maps(ours_out, (size, size)), as_maps(pgc_out, (size, size)))
    log(f"    {'pgc/ablationcam':18s} median {theirs.median:9.3f} s   IQR {theirs.iqr:8.3f} s")
    rows.append(theirs)
    return rows


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f", none: str = "–") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return none
    return format(value, spec)


def find(rows: list[Row], **keys: Any) -> Row | None:
    return next((r for r in rows if all(getattr(r, k) == v for k, v in keys.items())), None)


def paired_ratio(row: Row, base: Row) -> float:
    """Median over repeats of row/base, each pair timed in the same round of the interleaved loop
    (seconds apart), so that slow drifts of the machine's load cancel."""
    pairs = [a.seconds / b.seconds for a, b in zip(row.samples, base.samples)]
    return float(np.median(pairs)) if pairs else float("nan")


def verdicts(rows: list[Row]) -> list[tuple[str, str, str, str]]:
    """(check, measured, target, PASS/FAIL) for every target of the issue that this run covers.
    The verdict uses the ratio of medians; the paired ratio is shown beside it."""
    out = []
    for row in rows:
        if row.kind == "gradient" and row.impl == "xcam":
            floor = find(rows, kind="gradient", model=row.model, batch=row.batch, impl="floor")
            ratio = row.median / floor.median
            out.append(
                (
                    f"xcam {row.method}, {row.model} `{row.layer}`, batch {row.batch}",
                    f"{ratio:.3f} x floor (paired: {paired_ratio(row, floor):.3f})",
                    f"<= {FLOOR_TARGET:.2f} x floor",
                    "PASS" if ratio <= FLOOR_TARGET else "FAIL",
                )
            )
        if row.kind == "ablation" and row.impl == "xcam":
            pgc = find(rows, kind="ablation", model=row.model, impl="pgc")
            speedup = pgc.median / row.median
            goal = ABLATION_TARGETS[row.model]
            out.append(
                (
                    f"xcam ablationcam, {row.model} `{row.layer}`, batch 1",
                    f"{speedup:.0f} x faster than pytorch-grad-cam",
                    f">= {goal:.0f} x",
                    "PASS" if speedup >= goal else "FAIL",
                )
            )
    return out


def render(
    rows: list[Row], info: dict[str, str], args: argparse.Namespace, device: torch.device, rss_resettable: bool
) -> str:
    cuda = device.type == "cuda"
    lines = ["# Method benchmark: xcam-widgets against the floor, pytorch-grad-cam and torchcam", ""]
    if args.quick:
        lines += [
            "> **Quick run** (`--quick`): few repeats and a subset of the cases. A check that the script works, "
            "not reference figures; see the load average below.",
            "",
        ]
    loaded = overloaded(info, "load average (1/5/15 min) at start") or overloaded(
        info, "load average (1/5/15 min) at end"
    )
    if loaded:
        lines += [
            f"> **Loaded machine**: a 1-minute load average of {loaded} on {info.get('cores available')} cores. Other "
            "processes took CPU time during the run, so the times and their ratios are not reference figures.",
            "",
        ]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += [
        "",
        "## Targets (from the issue)",
        "",
        f"- Gradient methods (`xw.explain`, XGrad-CAM and Grad-CAM): median time at most {FLOOR_TARGET:.2f} x "
        "the floor's median, measured in the same run.",
        f"- Ablation-CAM: at least {ABLATION_TARGETS['vgg16']:.0f} x faster than pytorch-grad-cam's AblationCAM on "
        f"vgg16 `features.29`, and at least {ABLATION_TARGETS['resnet50']:.0f} x on resnet50 `layer4` "
        f"(batch 1, `batch_size={ABLATION_BATCH_SIZE}` for both).",
        "",
        "| check | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {m} | {t} | **{v}** |" for c, m, t, v in verdicts(rows)]

    rss_note = "" if rss_resettable else " (process high-water mark since start: only grows)"
    cuda_head, cuda_sep = (" peak CUDA MiB |", "---:|") if cuda else ("", "")
    grad = [r for r in rows if r.kind == "gradient"]
    if grad:
        lines += [
            "",
            "## Gradient methods",
            "",
            f"Times in milliseconds over {args.repeats} repeats after {args.warmup} warm-up call(s); "
            f"peak RSS{rss_note}.",
            "",
            "| model | layer | batch | method | implementation | median ms | IQR ms | x floor | x pgc | "
            "peak RSS MiB | Δ RSS MiB |" + cuda_head + " map r vs xcam |",
            "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|" + cuda_sep + "---:|",
        ]
        for row in grad:
            floor = find(grad, model=row.model, batch=row.batch, impl="floor")
            pgc = find(grad, model=row.model, batch=row.batch, impl="pgc", method=row.method)
            cells = [
                row.model,
                f"`{row.layer}`",
                str(row.batch),
                row.method,
                row.impl,
                fmt(1e3 * row.median),
                fmt(1e3 * row.iqr),
                fmt(row.median / floor.median, ".3f"),
                fmt(row.median / pgc.median, ".3f") if pgc else "–",
                fmt(row.peak_rss, ".0f"),
                fmt(row.delta_rss, ".0f"),
            ]
            if cuda:
                cells.append(fmt(row.peak_cuda, ".0f"))
            cells.append(fmt(row.agreement_r, ".4f"))
            lines.append("| " + " | ".join(cells) + " |")

    abl = [r for r in rows if r.kind == "ablation"]
    if abl:
        lines += [
            "",
            "## Ablation-CAM",
            "",
            f"Batch 1, `batch_size={ABLATION_BATCH_SIZE}`. Times in seconds; xcam over {args.repeats} repeats after "
            f"{args.warmup} warm-up call(s), pytorch-grad-cam over {args.ablation_repeats} repeat(s) after a warm-up "
            f"forward of the model on {ABLATION_BATCH_SIZE} images.",
            "",
            "| model | layer | implementation | repeats | median s | IQR s | pgc / xcam | target | "
            "peak RSS MiB | Δ RSS MiB |" + cuda_head + " map r vs xcam |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + cuda_sep + "---:|",
        ]
        for row in abl:
            pgc = find(abl, model=row.model, impl="pgc")
            speedup = pgc.median / row.median if row.impl == "xcam" else 1.0
            cells = [
                row.model,
                f"`{row.layer}`",
                row.impl,
                str(len(row.samples)),
                fmt(row.median, ".3f"),
                fmt(row.iqr, ".3f"),
                fmt(speedup, ".1f"),
                f">= {ABLATION_TARGETS[row.model]:.0f}" if row.impl == "xcam" else "",
                fmt(row.peak_rss, ".0f"),
                fmt(row.delta_rss, ".0f"),
            ]
            if cuda:
                cells.append(fmt(row.peak_cuda, ".0f"))
            cells.append(fmt(row.agreement_r, ".4f"))
            lines.append("| " + " | ".join(cells) + " |")

    lines += [
        "",
        "## What is timed",
        "",
        "- **floor**: one forward with a forward hook on the layer, then `torch.autograd.grad` of the summed "
        "target logits with respect to the hooked output. No map, no checks.",
        "- **xcam**: the whole `xw.explain(model, x, layer, method=..., target=c)` call (input checks, hooks, "
        "forward, gradient, weights, contributions, upsampled map).",
        "- **pgc**: pytorch-grad-cam: building the CAM object (hooks), calling it (forward, `backward()`, "
        "NumPy map resized to the input with OpenCV), releasing the hooks.",
        "- **torchcam**: building the extractor (hooks), the user's forward, the extractor call (gradient, "
        "map at the layer's resolution, not upsampled), removing the hooks.",
        "- The target is a fixed class `c` (the top-1 class of image 0), the same for every implementation; "
        "weights are random (`weights=None`), inputs are `torch.randn`, the model is in eval mode.",
        "- `map r vs xcam`: the smallest per-image Pearson correlation between that implementation's map and "
        "xcam's map of the same method (both at the input size), from the last timed call.",
        "",
        "Full details: `benchmarks/README.md`.",
        "",
    ]
    return "\n".join(lines)


def overloaded(info: dict[str, str], key: str) -> str | None:
    """The 1-minute load average under `key` when it exceeds the core count, else None."""
    try:
        first = float(info[key].split("/")[0])
        return f"{first:.2f}" if first > float(info["cores available"]) else None
    except (KeyError, ValueError):
        return None


def machine_info(args: argparse.Namespace, device: torch.device, threads: int, load_start: str) -> dict[str, str]:
    info = {
        "CPU": f"{cpu_model()} ({platform.machine()})",
        "cores available": str(core_count()),
        "torch threads": f"{threads} intra-op, {torch.get_num_interop_threads()} inter-op",
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch / torchvision": f"{torch.__version__} / {torchvision.__version__}",
        "grad-cam / torchcam": f"{package_version('grad-cam')} / {package_version('torchcam')}",
        "xcam-widgets": xw.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load average (1/5/15 min) at start": load_start,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 repeats, batch 1 only, Ablation-CAM on vgg16 only with 1 pytorch-grad-cam run",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Markdown report (default benchmarks/results/methods_<device>.md); a .json with "
        "every sample is written next to it",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per gradient case (default 5, quick 2)"
    )
    parser.add_argument(
        "--ablation-repeats",
        type=int,
        default=None,
        help="timed pytorch-grad-cam Ablation-CAM runs per model (default 3, quick 1)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="warm-up calls per implementation (default 1)")
    parser.add_argument("--batches", type=str, default=None, help="comma-separated batch sizes (default 1,8; quick 1)")
    parser.add_argument("--models", type=str, default="resnet50,vgg16", help="models for the gradient methods")
    parser.add_argument(
        "--ablation-models",
        type=str,
        default=None,
        help="models for Ablation-CAM (default resnet50,vgg16; quick vgg16; 'none' to skip)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: the core count)")
    parser.add_argument(
        "--size", type=int, default=224, help="input side (default 224; other values only for smoke tests)"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: re-write the Markdown report from a .json this script saved",
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.ablation_repeats = args.ablation_repeats or (1 if args.quick else 3)
    args.batches = [int(b) for b in (args.batches or ("1" if args.quick else "1,8")).split(",")]
    args.models = [m for m in args.models.split(",") if m]
    # Quick: vgg16 only. pytorch-grad-cam's run is the cost here, and on vgg16 `features.29` (512
    # channels, 16 forwards) it is cheaper than on resnet50 `layer4` (2048 channels, 64 forwards);
    # it is also the case where xcam re-runs a tail rather than using the GAP-linear closed form.
    ablation = args.ablation_models or ("vgg16" if args.quick else "resnet50,vgg16")
    args.ablation_models = [] if ablation == "none" else [m for m in ablation.split(",") if m]
    for name in args.models + args.ablation_models:
        if name not in LAYERS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(LAYERS)}")
    if min(args.repeats, args.ablation_repeats, *args.batches) < 1 or args.warmup < 0:
        parser.error("repeats and batch sizes must be >= 1, warm-up >= 0")
    args.out_given = args.out is not None
    args.out = args.out or RESULTS / f"methods_{args.device}.md"
    return args


def rerender(path: Path, out: Path | None) -> int:
    """Re-write the Markdown report of a saved run (after a change to the report's layout)."""
    raw = json.loads(path.read_text())
    rows = [
        Row(
            **{k: v for k, v in r.items() if k in Row.__dataclass_fields__ and k != "samples"},
            samples=[Sample(**s) for s in r["samples"]],
        )
        for r in raw["rows"]
    ]
    saved = raw["args"]
    args = argparse.Namespace(
        quick=saved["quick"],
        repeats=saved["repeats"],
        warmup=saved["warmup"],
        ablation_repeats=saved["ablation_repeats"],
    )
    device = torch.device(saved["device"])
    out = out or path.with_suffix(".md")
    out.write_text(render(rows, raw["info"], args, device, raw.get("rss_resettable", True)))
    log(f"wrote {out} from {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        return rerender(args.from_json, args.out if args.out_given else None)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    threads = args.threads or core_count()
    torch.set_num_threads(threads)
    load_start = load_average()
    info = machine_info(args, device, threads, load_start)
    memory = MemoryProbe(device)
    log(
        f"bench_methods: {'quick' if args.quick else 'full'} run on {info['device']}, {info['CPU']}, "
        f"{threads} threads, load {load_start}"
    )

    rows: list[Row] = []
    started = time.perf_counter()
    for model_name in dict.fromkeys(args.models + args.ablation_models):
        model = build_model(model_name, device)
        if model_name in args.models:
            for batch in args.batches:
                rows += bench_gradient(model_name, model, batch, args.size, args, device, memory)
        if model_name in args.ablation_models:
            rows += bench_ablation(model_name, model, args.size, args, device, memory)
        del model
    info["load average (1/5/15 min) at end"] = load_average()
    info["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    if args.size != 224:
        info["input size"] = f"{args.size}x{args.size} (smoke test, not the benchmark's 224x224)"

    report = render(rows, info, args, device, memory.resettable)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    raw = {
        "info": info,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": [
            {
                **{k: v for k, v in asdict(r).items() if k != "samples"},
                "median_s": r.median,
                "iqr_s": r.iqr,
                "samples": [asdict(s) for s in r.samples],
            }
            for r in rows
        ],
        "verdicts": verdicts(rows),
        "rss_resettable": memory.resettable,
    }
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    log("")
    for check, measured, target, verdict in verdicts(rows):
        log(f"{verdict}  {check}: {measured} (target {target})")
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
