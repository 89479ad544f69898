#!/usr/bin/env python
"""How fast each Explorer control answers, against a forward + gradient floor in the same run.

    .venv/bin/python benchmarks/bench_latency.py [--repeats 5] [--threads 1] [--models efficientnet_lite0,resnet50]
                                                 [--device cpu|cuda] [--out PATH]

The Explorer is built with `background=False`, so setting a control's value returns once the new
view is drawn (figure updates included; no browser). Each timed change is a median of `--repeats`:
  * display   the opacity slider: a restyle, nothing recomputed;
  * method    a switch to another gradient method (Grad-CAM++, already computed for the conservation
              bars) and to one not yet computed (EigenGrad-CAM), for a class just shown;
  * layer     a switch to a layer whose gradient this class has not needed yet;
  * class     a switch to a class never shown on this image.
Floors, same model and image, same run:
  * forward + gradient   a plain forward with a hook on the layer, then `autograd.grad` to it;
  * gradient             `autograd.grad` to the layer from a kept forward pass (`retain_graph`).
Targets (issue 15): class ≤ 1.5 × gradient + 15 ms; layer ≤ 30 ms + that layer's gradient;
method ≤ 10 ms; display ≤ 5 ms. Models have random weights (nothing is downloaded). With `--device cuda`
the model, hence the Explorer's Session and the floors, run on the GPU, and every timed interval starts
and ends with `torch.cuda.synchronize()`, so queued kernels are counted where they were launched.
Writes benchmarks/results/latency_<device>.md (or --out) and a .json beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from _common import RESULTS, load_average, machine_markdown  # puts the checkout on sys.path
from torch import nn

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.widgets.explorer import Explorer  # noqa: E402

LAYERS = {"efficientnet_lite0": ("features", "features.stage5"), "resnet50": ("layer4", "layer3")}


def widgets_in(widget: Any) -> list[Any]:
    """`widget` and every widget nested in it."""
    return [widget] + [w for child in getattr(widget, "children", ()) for w in widgets_in(child)]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


class SentBytes:
    """Bytes the Explorer's widgets send to the page (JSON of each comm message), counted per change."""

    def __init__(self, explorer: Explorer):
        self.total = 0
        for widget in widgets_in(explorer):
            self._wrap(widget)

    def _wrap(self, widget: Any) -> None:
        comm = getattr(widget, "comm", None)
        if comm is None or getattr(comm, "_counted", False):
            return
        send = comm.send

        def counted(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
            self.total += len(json.dumps(data, default=str)) + sum(len(memoryview(b)) for b in buffers or ())
            send(data, metadata, buffers)

        comm.send, comm._counted = counted, True


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work: a CUDA interval timed without it ends at the last launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of fn(), with the device's queue drained before the start and before the stop."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def timed(change: Callable[[], None], bytes_sent: SentBytes, device: torch.device) -> tuple[float, int]:
    before = bytes_sent.total
    return seconds(change, device), bytes_sent.total - before


def floors(model: nn.Module, x: torch.Tensor, layer: str, classes: list[int]) -> dict[str, float]:
    """Medians (ms) of a forward + gradient to `layer`, and of the gradient alone from a kept pass,
    on the device of `x` (the model's)."""
    module = model.get_submodule(layer)
    store: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: store.append(o))

    def forward_and_gradient(c: int) -> None:
        store.clear()
        torch.autograd.grad(model(x)[0, c], store[0])

    def gradient_from_kept_pass(c: int) -> None:
        torch.autograd.grad(out[0, c], store[0], retain_graph=True)

    try:  # the first sample of each list is a warm-up
        forward_gradient = [seconds(partial(forward_and_gradient, c), x.device) for c in [classes[0], *classes]]
        store.clear()
        out = model(x)
    finally:
        handle.remove()
    gradient = [seconds(partial(gradient_from_kept_pass, c), x.device) for c in [classes[0], *classes]]
    return {"forward + gradient": median_ms(forward_gradient[1:]), "gradient": median_ms(gradient[1:])}


def measure(name: str, repeats: int, device: torch.device) -> dict[str, Any]:
    bundle = xw.load_model(name, pretrained=False, device=device)  # the Session runs where the model is
    shown, other = LAYERS[name]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    explorer = Explorer(bundle, background=False)
    synchronize(device)
    built = time.perf_counter() - start
    if explorer.session.x.device.type != device.type:
        raise RuntimeError(f"the Session's input is on {explorer.session.x.device}, not {device}")
    explorer.layer.value = shown
    sent = SentBytes(explorer)
    top = {p.index for p in explorer.session.predictions(explorer.top_k)}
    fresh = iter(c for c in range(len(bundle.categories) or 1000) if c not in top)
    samples: dict[str, list[tuple[float, int]]] = {
        k: [] for k in ("display", "method (cached)", "method (computed)", "layer", "class")
    }

    def record(key: str, value: tuple[float, int]) -> None:
        if i > 0:  # the first round is a warm-up
            samples[key].append(value)

    for i in range(repeats + 1):
        opacity = 0.4 + 0.1 * (i % 2)
        record("class", timed(lambda: setattr(explorer.target, "value", next(fresh)), sent, device))
        record("display", timed(partial(setattr, explorer.opacity, "value", opacity), sent, device))
        record("method (cached)", timed(lambda: setattr(explorer.method, "value", "gradcam++"), sent, device))
        record("method (computed)", timed(lambda: setattr(explorer.method, "value", "eigengradcam"), sent, device))
        explorer.method.value = "xgradcam"
        record("layer", timed(lambda: setattr(explorer.layer, "value", other), sent, device))
        explorer.layer.value = shown
        assert explorer.status.value == "", explorer.status.value
    x = explorer.session.x
    classes = [next(fresh) for _ in range(repeats)]
    floor = floors(bundle.model, x, shown, classes)
    floor["gradient, other layer"] = floors(bundle.model, x, other, classes)["gradient"]
    result = {
        "model": name,
        "layer": shown,
        "other layer": other,
        "built s": built,
        "graph MiB": explorer.session.graph_bytes / 2**20,
        "floors ms": floor,
        "changes ms": {k: median_ms([t for t, _ in v]) for k, v in samples.items()},
        "bytes per change": {k: int(statistics.median([b for _, b in v])) for k, v in samples.items()},
    }
    if device.type == "cuda":
        result["peak CUDA MiB"] = torch.cuda.max_memory_allocated(device) / 2**20
    explorer.close()
    return result


def targets(r: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(change, measured ms, target ms) of the issue's targets."""
    f, c = r["floors ms"], r["changes ms"]
    return [
        ("class", c["class"], 1.5 * f["gradient"] + 15),
        ("layer", c["layer"], 30 + f["gradient, other layer"]),
        ("method (cached)", c["method (cached)"], 10),
        ("method (computed)", c["method (computed)"], 10),
        ("display", c["display"], 5),
    ]


def device_line(device: torch.device) -> str:
    """The device the model ran on, in words, with the TF32 switches where they apply."""
    if device.type != "cuda":
        return "the CPU"
    tf32 = f"{torch.backends.cudnn.allow_tf32} / {torch.backends.cuda.matmul.allow_tf32}"
    return f"CUDA ({torch.cuda.get_device_name(device)}; TF32 for convolutions / matmuls: {tf32})"


def report(results: list[dict[str, Any]], info: str, args: argparse.Namespace) -> str:
    device = torch.device(args.device)
    where = "the CPU" if device.type == "cpu" else f"CUDA ({torch.cuda.get_device_name(device)})"
    lines = [
        f"# Explorer latency on {where} ({dt.date.today().isoformat()})",
        "",
        "`.venv/bin/python benchmarks/bench_latency.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out")
        + "`",
        "",
        "Explorer built with `background=False`: each figure is the time from setting a control's value to",
        "the drawn view (no browser). Medians of the repeats; ratios against floors measured in the same run.",
        "Random weights, input 224×224, one image.",
        "",
        f"Model, Session and floors on {device_line(device)}"
        + ("; every timed interval starts and ends with `torch.cuda.synchronize()`." if device.type == "cuda" else "."),
        "",
        "Machine at the start of the run:",
        "",
        info,
        "",
    ]
    for r in results:
        f, sent = r["floors ms"], r["bytes per change"]
        peak = (
            f" Peak CUDA memory allocated (Explorer and floors): {r['peak CUDA MiB']:.0f} MiB."
            if "peak CUDA MiB" in r
            else ""
        )
        lines += [
            f"## {r['model']}, layer `{r['layer']}` (layer switch: to `{r['other layer']}`)",
            "",
            f"Floors: forward + gradient to `{r['layer']}` {f['forward + gradient']:.1f} ms; gradient alone "
            f"{f['gradient']:.1f} ms (to `{r['other layer']}`: {f['gradient, other layer']:.1f} ms). "
            f"Kept forward pass: {r['graph MiB']:.0f} MiB. Explorer built in {r['built s']:.1f} s.{peak}",
            "",
            "| change | median | × forward + gradient | × gradient | bytes sent | target | met |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, measured, target in targets(r):
            lines.append(
                f"| {name} | {measured:.1f} ms | {measured / f['forward + gradient']:.2f} | "
                f"{measured / f['gradient']:.2f} | {sent[name]:,} | ≤ {target:.1f} ms | "
                f"{'yes' if measured <= target else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/latency_<device>.md)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    args.out = args.out or RESULTS / f"latency_{args.device}.md"
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine_markdown()
    results = []
    for name in args.models.split(","):
        print(f"{name}…", flush=True)
        results.append(measure(name, args.repeats, device))
        print(json.dumps(results[-1], indent=1), flush=True)
    text = report(results, info + f"\n- load average at the end: {load_average()}", args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
