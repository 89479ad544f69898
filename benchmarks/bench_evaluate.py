#!/usr/bin/env python
"""Per-image cost of the dataset runner on ImageNet-sized work, and the ImageNet projection from it.

    python benchmarks/bench_evaluate.py --device cuda [--images 96] [--small 32] [--out PATH]

The local engine (`xw.evaluate`, one process: the Ray engine runs the same code in each actor)
evaluates resnet50 (random weights: nothing to download) at `layer4` on a folder of JPEGs the
script writes (random crops of the sample photos, 500x375 like an average ImageNet photo,
quality 90), so the timed work includes decoding, resizing and cropping each file. Every
metric that needs no masks (diagnostics, Average Drop, deletion, insertion with 50 steps),
`target="top1"`, batches of 32.

  * 7 single-pass methods (Grad-CAM, XGrad-CAM, Grad-CAM++, HiResCAM, LayerCAM, Eigen-CAM,
    CAM) in one `evaluate` call, on `--small` and on `--images` images;
  * Score-CAM alone (K = 2048 masked inputs per image) on `--score-small` and `--score-images`.

per image = (T_large - T_small) / (large - small) separates the steady state from the fixed cost
(first batch's cuDNN autotuning, the model's move). The projection to ImageNet's 50,000 validation
images on N GPUs divides the measured per-image cost by N x an assumed efficiency. Writes
benchmarks/results/evaluate_<device>.md and a .json beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import core_count, cpu_model, package_version  # also puts the checkout on sys.path

ROOT = Path(__file__).resolve().parents[1]

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.evaluation import evaluate  # noqa: E402

SINGLE_PASS = ("gradcam", "xgradcam", "gradcam++", "hirescam", "layercam", "eigencam", "cam")
METRICS = ("diagnostics", "average_drop", "deletion", "insertion")
PHOTO_SIZE = (500, 375)
IMAGENET_VAL = 50_000
ASSUMED_EFFICIENCY = 0.9  # of N GPUs: the last batches leave GPUs idle; Ray's per-batch cost (see ray_cpu.md)
ASSUMED_CLUSTER_START_S = 120.0  # Ray on a cluster, actors, the model on each GPU: once
PROJECTED_GPUS = (1, 2, 4, 8, 16, 32)


def write_photos(folder: Path, count: int, seed: int = 0) -> None:
    """`count` JPEGs: random crops of the sample photos, resized to an ImageNet-like 500x375."""
    generator = torch.Generator().manual_seed(seed)
    photos = [xw.sample_image(name) for name in xw.SAMPLE_IMAGES]
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = (int(s * (0.6 + 0.4 * torch.rand(1, generator=generator).item())) for s in (w, h))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        crop = photo.crop((left, top, left + cw, top + ch)).resize(PHOTO_SIZE)
        crop.save(folder / f"photo{i:05d}.jpg", quality=90)


def timed_evaluate(
    bundle: xw.ModelBundle, files: list[Path], methods: tuple[str, ...], args: argparse.Namespace, batch_size: int
) -> dict[str, float]:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    table, _ = evaluate(
        bundle,
        [str(f) for f in files],
        list(methods),
        args.layer,
        target="top1",
        metrics=list(METRICS),
        batch_size=batch_size,
        device=device,
        progress=False,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert len(table) == len(files) * len(methods) and table["score"].notna().all()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {"images": len(files), "seconds": seconds, "peak_cuda_mib": peak}


def forward_speed(bundle: xw.ModelBundle, device: torch.device, batch: int, repeats: int = 5) -> float:
    """Images per second of the bare model's forward under `no_grad`, median of `repeats`."""
    x = torch.randn(batch, 3, bundle.input_size, bundle.input_size, device=device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            bundle.model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first is a warm-up
                times.append(time.perf_counter() - start)
    return batch / sorted(times)[len(times) // 2]


def split(small: dict[str, float], large: dict[str, float]) -> tuple[float, float]:
    """(per image, fixed) seconds from two runs of different sizes."""
    per_image = (large["seconds"] - small["seconds"]) / (large["images"] - small["images"])
    return per_image, small["seconds"] - small["images"] * per_image


def machine_info(device: torch.device) -> dict[str, str]:
    return {
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "CPU": f"{cpu_model()}, {core_count()} cores",
        "torch / torchvision": f"{torch.__version__} / {package_version('torchvision')}",
        "TF32 (cuDNN convolutions / matmul)": (
            f"{torch.backends.cudnn.allow_tf32} / {torch.backends.cuda.matmul.allow_tf32}"
        ),
        "python": platform.python_version(),
        "xcam-widgets": xw.__version__,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
    }


def report(r: dict[str, Any]) -> str:
    single, single_fixed = r["single_pass"]["per_image_s"], r["single_pass"]["fixed_s"]
    methods, model, layer = r["methods"], r["model"], r["layer"]
    lines = [
        "# Dataset runner on ImageNet-sized work: per-image cost and the ImageNet projection",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in r["info"].items()],
        "",
        "## Measured",
        "",
        f"{model} (random weights) at `{layer}`, JPEGs of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} decoded by the runner, "
        f"metrics {', '.join(METRICS)} (50 steps), `target='top1'`, the local engine in one process.",
        "",
        "| run | images | seconds | peak CUDA MiB |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (("single_pass", f"{len(methods)} single-pass methods"), ("scorecam", "Score-CAM")):
        for run in r[key]["runs"]:
            lines.append(f"| {label} | {run['images']} | {run['seconds']:.1f} | {run['peak_cuda_mib']:.0f} |")
    lines += [
        "",
        f"- {len(methods)} single-pass methods ({', '.join(methods)}), every metric: **{single:.3f} s per image** "
        f"({single / len(methods):.3f} s per image and method), fixed {single_fixed:.1f} s.",
    ]
    if r["scorecam"]["runs"]:
        lines.append(
            f"- Score-CAM, every metric: **{r['scorecam']['per_image_s']:.3f} s per image**, "
            f"fixed {r['scorecam']['fixed_s']:.1f} s."
        )
    lines += [
        f"- {model}'s bare forward (`no_grad`, batch {r['forward_batch']}): "
        f"**{r['forward_images_per_s']:.0f} images/s**; "
        f"the {len(methods)} methods with their metrics cost {r['passes_per_image']:.0f} such forwards per image.",
        "",
        f"## Projection: ImageNet validation ({IMAGENET_VAL:,} images), {len(methods)} methods, "
        "N devices like this one",
        "",
        "Measured here: the per-image costs above. Assumed:",
        f"- N GPUs give {ASSUMED_EFFICIENCY:.0%} of N x one GPU. Batches are independent and the rows are small; "
        "the last batches leave GPUs idle; Ray's per-batch overhead measured on the CPU (`ray_cpu.md`) is "
        "hundredths of a second against seconds of GPU work per batch.",
        "- Each Ray actor decodes its own JPEGs on its own CPU core, as the measured process did: "
        "one core per GPU suffices.",
        f"- Start: {ASSUMED_CLUSTER_START_S / 60:.0f} min once (Ray on a cluster, actors, the model on each GPU).",
        "- The same GPU model in every node.",
        "",
        f"| GPUs | {len(methods)} single-pass methods | with Score-CAM as one of the {len(methods)} |",
        "|---:|---:|---:|",
    ]
    score = r["scorecam"].get("per_image_s")
    for gpus in PROJECTED_GPUS:
        seven = ASSUMED_CLUSTER_START_S + IMAGENET_VAL * single / (gpus * ASSUMED_EFFICIENCY)
        cell = "–"
        if score is not None:
            mixed = single * (len(methods) - 1) / len(methods) + score
            cell = duration(ASSUMED_CLUSTER_START_S + IMAGENET_VAL * mixed / (gpus * ASSUMED_EFFICIENCY))
        lines.append(f"| {gpus} | {duration(seven)} | {cell} |")
    return "\n".join(lines) + "\n"


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--small", type=int, default=32)
    parser.add_argument("--score-images", type=int, default=16, help="0 skips Score-CAM")
    parser.add_argument("--score-small", type=int, default=8)
    parser.add_argument("--methods", default=",".join(SINGLE_PASS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="measure nothing: rewrite the report")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "benchmarks" / "results" / f"evaluate_{args.device}.md"
    if args.from_json:
        out.write_text(report(json.loads(args.from_json.read_text())))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    methods = tuple(m for m in args.methods.split(",") if m)
    torch.manual_seed(0)
    bundle = xw.load_model(args.model, pretrained=False, device=device)
    result: dict[str, Any] = {
        "info": machine_info(device),
        "methods": methods,
        "model": args.model,
        "layer": args.layer,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_photos(folder, max(args.images, args.score_images))
        files = sorted(folder.glob("*.jpg"))
        timed_evaluate(bundle, files[:2], methods[:1], args, 2)  # warm-up: cuDNN, lazy imports
        for key, chosen, small, large, batch in (
            ("single_pass", methods, args.small, args.images, 32),
            ("scorecam", ("scorecam",), args.score_small, args.score_images, 8),
        ):
            if large == 0:
                result[key] = {"runs": []}
                continue
            runs = [timed_evaluate(bundle, files[:n], chosen, args, batch) for n in (small, large)]
            per_image, fixed = split(*runs)
            result[key] = {"runs": runs, "per_image_s": per_image, "fixed_s": fixed}
            print(f"{key}: {runs}, {per_image:.3f} s per image", flush=True)
    result["forward_batch"] = 256 if device.type == "cuda" else 8
    result["forward_images_per_s"] = forward_speed(bundle, device, result["forward_batch"])
    result["passes_per_image"] = result["single_pass"]["per_image_s"] * result["forward_images_per_s"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.write_text(report(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
