"""Memory over many calls: 1,000 `explain` calls and 300 Explorer state changes.

Records RSS, live tensor count (and CUDA memory where a GPU is used) at checkpoints and writes
`benchmarks/results/leaks_<device>.md`. Run: `.venv/bin/python benchmarks/leaks.py [--device cuda]`.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import xcam_widgets as xw  # noqa: E402
from conftest import TinyVGGNet  # noqa: E402
from test_robustness import live_tensors, rss_mb  # noqa: E402

METHODS = ("xgradcam", "gradcam", "gradcam++", "ablationcam", "eigencam", "layercam")


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
    torchvision_model = __import__("torchvision").models.resnet18(weights=None, num_classes=10).eval().to(args.device)
    x = torch.randn(2, 3, 64, 64, device=args.device)
    rows = []
    for i in range(args.calls + 1):
        if i % 100 == 0:
            rows.append(("explain", i, *sample(args.device)))
        if i < args.calls:
            method = METHODS[i % len(METHODS)]
            options = {"batch_size": 256} if "batch_size" in xw.REGISTRY[method].options else {}
            xw.explain(torchvision_model, x, "layer3", method=method, target=i % 10, **options)
    net = TinyVGGNet().eval().to(args.device)
    explorer = xw.Explorer(net, torch.randn(3, 16, 16, device=args.device), background=False)
    layers = [o[1] for o in explorer.layer.options]
    for i in range(args.changes + 1):
        if i % 50 == 0:
            rows.append(("explorer", i, *sample(args.device)))
        if i < args.changes:
            explorer.layer.value = layers[i % len(layers)]
            explorer.target.value = i % 5
            explorer.method.value = METHODS[i % len(METHODS)]
    out = Path(__file__).parent / "results" / f"leaks_{args.device}.md"
    out.parent.mkdir(exist_ok=True)
    lines = [
        f"# Memory over repeated use ({args.device})", "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}. explain: resnet18 (random weights) `layer3`, "
        f"batch 2 at 64×64, cycling {', '.join(METHODS)}. Explorer: a tiny VGG-style net, layer/class/method changed each step.",
        "", "| phase | step | RSS (MB) | live tensors | CUDA allocated (MB) |", "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {p} | {i} | {r:.1f} | {t} | {c:.1f} |" for p, i, r, t, c in rows]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
