"""Memory over many calls: 1,000 `explain` calls and 300 Explorer state changes.

Records RSS, live tensor count (and CUDA memory where a GPU is used) at checkpoints and writes
`benchmarks/results/leaks_<device>.md`. Run: `.venv/bin/python benchmarks/leaks.py [--device cuda]`.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from _common import RESULTS, live_tensors, machine_info, rss_mb
from torch import nn

import xcam_widgets as xw

METHODS = ("xgradcam", "gradcam", "gradcam++", "ablationcam", "eigencam", "layercam")


def small_vgg(classes: int = 5) -> nn.Module:
    """conv → ReLU → max-pool → conv → ReLU → flatten → linear, for 16×16 inputs."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 8 * 8, classes),
    )


def sample(device: str) -> tuple[float, int, float]:
    cuda = torch.cuda.memory_allocated() / 2**20 if device == "cuda" else 0.0
    return rss_mb(), live_tensors(), cuda


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=300)
    args = parser.parse_args()
    torch.manual_seed(0)
    torchvision_model = torchvision.models.resnet18(weights=None, num_classes=10).eval().to(args.device)
    x = torch.randn(2, 3, 64, 64, device=args.device)
    rows = []
    for i in range(args.calls + 1):
        if i % 100 == 0:
            rows.append(("explain", i, *sample(args.device)))
        if i < args.calls:
            method = METHODS[i % len(METHODS)]
            options = {"batch_size": 256} if "batch_size" in xw.REGISTRY[method].options else {}
            xw.explain(torchvision_model, x, "layer3", method=method, target=i % 10, **options)
    net = small_vgg().eval().to(args.device)
    explorer = xw.Explorer(net, torch.randn(3, 16, 16, device=args.device), background=False)
    layers = [o[1] for o in explorer.layer.options]
    for i in range(args.changes + 1):
        if i % 50 == 0:
            rows.append(("explorer", i, *sample(args.device)))
        if i < args.changes:
            explorer.layer.value = layers[i % len(layers)]
            explorer.target.value = i % 5
            explorer.method.value = METHODS[i % len(METHODS)]
    out = RESULTS / f"leaks_{args.device}.md"
    out.parent.mkdir(exist_ok=True)
    info = machine_info()
    lines = [
        f"# Memory over repeated use ({args.device})",
        "",
        f"Machine: {info['CPU']}, {info['torch threads']} torch threads, load {info['load average (1/5/15 min)']}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}. explain: resnet18 (random weights) `layer3`, "
        f"batch 2 at 64×64, cycling {', '.join(METHODS)}. "
        "Explorer: a tiny VGG-style net, layer/class/method changed each step.",
        "",
        "| phase | step | RSS (MB) | live tensors | CUDA allocated (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {p} | {i} | {r:.1f} | {t} | {c:.1f} |" for p, i, r, t, c in rows]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
