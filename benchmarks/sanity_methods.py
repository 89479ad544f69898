#!/usr/bin/env python
"""Sanity checks of every method on EfficientNet-Lite0 and shapes_vgg: the results table.

    .venv/bin/python benchmarks/sanity_methods.py [--shapes-images 200] [--samples N] [--threads 2] [--out PATH]

For each method, `xw.sanity.sanity_check(..., checks=("cascading", "random_logit"), steps="key",
random_classes=1, seed=0)`: the similarity of each image's map to its original once every layer
after the CAM layer is randomised (the verdict step) and after the full cascade (every layer), and
between the map for the target (top-1) class and the map for one random other class. Mean over
images with a Student-t 95 % interval; NaN similarities (a constant map) are left out and counted.

Models and layers:
  * EfficientNet-Lite0 on the four bundled photos (`xw.SAMPLE_IMAGES`), at `features.head`
    (1280 channels, the default layer), except the Score-CAM family (Score-CAM, SS-CAM, IS-CAM),
    which needs one forward pass per channel (and per sample) and runs at `features.stage4`
    (80 channels, 14x14) to keep the run bounded on a CPU;
  * shapes_vgg on `--shapes-images` held-out shapes images at `features.block4`.
`--samples` sets SS-CAM's and IS-CAM's samples (default: theirs, 8 and 10) to bound a run.
Writes benchmarks/results/sanity_methods.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from pathlib import Path
from typing import Any

import scipy.stats
import torch
from _common import RESULTS, machine_markdown  # puts the checkout on sys.path

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.methods import METHODS, REGISTRY  # noqa: E402
from xcam_widgets.sanity import THRESHOLD, sanity_check  # noqa: E402
from xcam_widgets.shapes.dataset import make_shapes  # noqa: E402

SCORE_FAMILY = ("scorecam", "sscam", "iscam")
SHAPES_HELDOUT_SEED = 10_000_019  # the shapes nets' held-out images: not a training seed
LAYERS = {"efficientnet_lite0": "features.head", "shapes_vgg": "features.block4"}
SCORE_LAYERS = {"efficientnet_lite0": "features.stage4", "shapes_vgg": "features.block4"}
MEASURES = ("spearman", "ssim")


def interval(values: list[float]) -> str:
    """`mean [low, high]` with a Student-t 95 % interval, NaNs left out (and counted)."""
    kept = [v for v in values if not math.isnan(v)]
    dropped = len(values) - len(kept)
    if not kept:
        return "n/a"
    mean = sum(kept) / len(kept)
    if len(kept) < 2:
        return f"{mean:.2f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1))
    half = float(scipy.stats.t.ppf(0.975, len(kept) - 1)) * sd / math.sqrt(len(kept))
    note = f" ({dropped} NaN)" if dropped else ""
    return f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]{note}"


def images(name: str, count: int) -> torch.Tensor:
    bundle = xw.load_model(name, device="cpu")
    if name == "shapes_vgg":
        return bundle.preprocess(make_shapes(count, seed=SHAPES_HELDOUT_SEED).images)
    return torch.stack([bundle.preprocess(xw.sample_image(photo)) for photo in xw.SAMPLE_IMAGES])


def check_method(
    model: torch.nn.Module, x: torch.Tensor, name: str, method: str, samples: int | None
) -> dict[str, Any]:
    layer = SCORE_LAYERS[name] if method in SCORE_FAMILY else LAYERS[name]
    options = {method: {"samples": samples}} if samples is not None and method in ("sscam", "iscam") else None
    start = time.perf_counter()
    try:
        result = sanity_check(
            model,
            x,
            layer,
            methods=method,
            checks=("cascading", "random_logit"),
            steps="key",
            random_classes=1,
            seed=0,
            options=options,
        )
    except ValueError as error:  # a method undefined here (CAM without a GAP -> linear head)
        return {"method": method, "layer": layer, "error": str(error).split(";")[0]}
    seconds = time.perf_counter() - start
    verdict = result.verdicts[method]
    record: dict[str, Any] = {
        "method": method,
        "layer": layer,
        "seconds": seconds,
        "after": result.layers_after,
        "layers": len(result.layers),
        "verdict": verdict,
    }
    steps = {"after": result.layers_after, "full": len(result.layers)}
    for key, step in steps.items():
        rows = [r for r in result.rows if r["check"] == "cascading" and r["step"] == step]
        record.update({f"{key}_{m}": interval([r[m] for r in rows]) for m in MEASURES})
    rows = [r for r in result.rows if r["check"] == "random_logit"]
    record.update({f"logit_{m}": interval([r[m] for r in rows]) for m in MEASURES})
    print(f"{name} {method}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return record


def outcome(passes: bool | None) -> str:
    return {True: "pass", False: "**fail**", None: "n/a"}[passes]


def markdown_table(name: str, records: list[dict[str, Any]], count: int) -> str:
    head = (
        "| method | layer | after the CAM layer: ρ | SSIM | full cascade: ρ | SSIM | random logit: ρ | SSIM "
        "| cascading | random logit | s |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [f"### {name} ({count} images)\n", head]
    for r in records:
        title = REGISTRY[r["method"]].title
        if "error" in r:
            lines.append(f"| {title} | `{r['layer']}` | {r['error']} |  |  |  |  |  |  |  |  |")
            continue
        lines.append(
            f"| {title} | `{r['layer']}` ({r['after']} of {r['layers']} layers after) | {r['after_spearman']} | "
            f"{r['after_ssim']} | {r['full_spearman']} | {r['full_ssim']} | {r['logit_spearman']} | "
            f"{r['logit_ssim']} | {outcome(r['verdict'].passes_cascading)} | "
            f"{outcome(r['verdict'].passes_random_logit)} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes-images", type=int, default=200)
    parser.add_argument("--samples", type=int, default=None, help="samples of SS-CAM and IS-CAM (default: theirs)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS / "sanity_methods.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began, machine_start = time.perf_counter(), machine_markdown()
    sections = []
    for name in ("efficientnet_lite0", "shapes_vgg"):
        model = xw.load_model(name, device="cpu").model
        x = images(name, args.shapes_images)
        records = [check_method(model, x, name, method, args.samples) for method in args.methods]
        sections.append(markdown_table(name, records, x.shape[0]))
    wall = time.perf_counter() - began
    samples_flag = "" if args.samples is None else f" --samples {args.samples}"
    samples_note = "" if args.samples is None else f"SS-CAM and IS-CAM use `samples={args.samples}`, not 8 and 10. "
    text = f"""# Sanity checks of every method: results

Generated by `benchmarks/sanity_methods.py --shapes-images {args.shapes_images}{samples_flag} \
--threads {args.threads}` on \
{dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}, {wall:.0f} s in all.

Per method: Spearman's ρ of the raw maps and SSIM of the displayed maps, each image's map against
its original, once every parameterised layer after the CAM layer is randomised (the verdict step),
and after the full cascade (every layer, output to input, re-initialised as `reset_parameters()`
does, seed 0); and the random-logit similarity between the top-1 class's map and one random other
class's map. Mean over images with a Student-t 95 % interval. A method passes a check when its
mean similarity is below {THRESHOLD} for both measures (Cohen's bound of a large correlation; no
paper fixes a pass mark). Lower is better for every similarity column.

EfficientNet-Lite0: the four bundled photos ({", ".join(xw.SAMPLE_IMAGES)}), so its intervals are
wide. Its Score-CAM family runs at `features.stage4` (80 channels) instead of the default
`features.head` (1280 channels), which would need 16x the forward passes. {samples_note}
shapes_vgg: held-out images of `make_shapes` (seed {SHAPES_HELDOUT_SEED}). CAM is defined only on
a GAP -> linear head, which shapes_vgg lacks.

Rows that coincide do so by identities, not by chance. At a GAP -> linear layer (`features.head`)
G = W_c / Z is constant over space and the same for every input: CAM, Grad-CAM, XGrad-CAM and
HiResCAM give one map up to scale, and Smooth Grad-CAM++ (noisy copies of the input) equals
Grad-CAM++. Where A >= 0 (after a ReLU or ReLU6, as at both layers here), Element-wise Grad-CAM,
ReLU(G ⊙ A), equals LayerCAM, ReLU(G) ⊙ A. A t-interval on 4 images can reach past ±1.

## Machine at the start

{machine_start}

## Machine at the end

{machine_markdown()}

## Results

{(chr(10) * 2).join(sections)}
"""
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
