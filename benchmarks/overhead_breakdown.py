#!/usr/bin/env python
"""Where a gradient map's time goes beyond the floor: each part of `xw.explain` switched off in turn.

    python benchmarks/overhead_breakdown.py --device cuda [--model vgg16] [--batch 1]

The floor is `bench_methods.py`'s (hook, forward, `autograd.grad`). Each variant replaces one part of
`xw.explain` by the least that still gives a map, and the time it saves is that part's cost:

  no input check     `prepare_input` only moves x to the model's device (no isfinite read-back)
  no score check     the score is not read back for NaN after the backward pass
  no display map     `display_map` returns the raw map (no upsampling, no min-max scaling)
  no state guard     `evaluation_mode` only enables grad (no walk over modules and parameters)
  all four off       every part above at once

Medians over `--repeats` interleaved rounds (the order rotates) after a warm-up, timed with a device
synchronisation at the end. Writes nothing; prints a table. Not a correctness tool: the variants
exist only inside this process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import xcam_widgets as xw  # noqa: E402

# The modules, not the functions of the same names that the package exports.
capture_module = importlib.import_module("xcam_widgets.capture")
explain_module = importlib.import_module("xcam_widgets.explain")

LAYERS = {"resnet50": "layer4", "vgg16": "features.29"}


@contextlib.contextmanager
def grad_only(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    with torch.enable_grad():
        yield model


SWITCHES: dict[str, list[tuple[Any, str, Any]]] = {
    "no input check": [(explain_module, "prepare_input", lambda model, x: x)],
    "no score check": [(capture_module, "check_finite_scores", lambda score: None)],
    "no display map": [(explain_module, "display_map", lambda raw, size: raw)],
    "no state guard": [(explain_module, "evaluation_mode", grad_only), (capture_module, "evaluation_mode", grad_only)],
}
SWITCHES["all four off"] = [patch for patches in SWITCHES.values() for patch in patches]


@contextlib.contextmanager
def patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--model", choices=tuple(LAYERS), default="vgg16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).to(device).eval()
    layer = LAYERS[args.model]
    module = model.get_submodule(layer)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)

    def floor() -> None:
        store = {}
        handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
        try:
            logits = model(x)
        finally:
            handle.remove()
        torch.autograd.grad(logits[:, 1].sum(), store["A"])

    def variant(patches: list[tuple[Any, str, Any]]) -> Callable[[], None]:
        def run() -> None:
            with patched(patches):
                xw.explain(model, x, layer, method="xgradcam", target=1)

        return run

    runners = {"floor": floor, "xcam": variant([]), **{name: variant(p) for name, p in SWITCHES.items()}}
    for fn in runners.values():
        for _ in range(5):
            timed(fn, device)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for rep in range(args.repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(runners[name], device))
    medians = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.model} `{layer}`, batch {args.batch}, {args.size} px, {where}, median of {args.repeats} rounds")
    print("| variant | median ms | x floor | saved vs xcam, ms |\n|---|---:|---:|---:|")
    for name, value in medians.items():
        saved = "" if name in ("floor", "xcam") else f"{medians['xcam'] - value:.2f}"
        print(f"| {name} | {value:.2f} | {value / medians['floor']:.3f} | {saved} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
