#!/usr/bin/env python
"""Cost of `sanity_check` on EfficientNet-Lite0: the split path against the naive one, in one run.

    .venv/bin/python benchmarks/bench_sanity.py [--blocks 3] [--threads 2] [--out PATH]

Every gradient method (one capture per step serves them all) on the bundled photo "chelsea":
  * naive  `split=False`: a full forward and backward of the model at every step;
  * split  `split=True` (the default): a step whose randomised layers all run after the CAM layer,
           and every random-logit step, re-runs only the network after the layer, on the captured
           activations (`xcam_widgets.split`); other steps are as naive.
Cases: the full check (all three checks, every layer) at the default layer `features.head` and at
`features.stage5`, after which a third of the layers lie; `steps="key"` (verdict step and full
cascade) and `steps="tail"` (the Explorer's strip) at those layers. Each case runs `--blocks`
blocks of naive, split, split, naive (ABBA, so that a drift in machine load hits both alike); the
ratio is the naive median over the split median. Similarities are compared between the two paths
as a check. Writes benchmarks/results/sanity_cpu.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import RESULTS, machine_markdown  # puts the checkout on sys.path

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.methods import METHODS, REGISTRY  # noqa: E402
from xcam_widgets.sanity import sanity_check  # noqa: E402
from xcam_widgets.sanity.randomise import execution_order, working_copy  # noqa: E402
from xcam_widgets.sanity.recompute import MapEngine  # noqa: E402

GRADIENT = tuple(m for m in METHODS if not REGISTRY[m].uses_model)
CASES = (  # (layer, steps, checks)
    ("features.head", "all", ("cascading", "independent", "random_logit")),
    ("features.stage5", "all", ("cascading", "independent", "random_logit")),
    ("features.head", "key", ("cascading", "independent", "random_logit")),
    ("features.stage5", "key", ("cascading", "independent", "random_logit")),
    ("features.stage5", "tail", ("cascading",)),
)


def run_case(model: torch.nn.Module, x: torch.Tensor, layer: str, steps: str, checks: tuple[str, ...], split: bool):
    start = time.perf_counter()
    result = sanity_check(model, x, layer, methods=GRADIENT, checks=checks, steps=steps, split=split)
    return time.perf_counter() - start, result


def gradient_step_ms(model: torch.nn.Module, x: torch.Tensor, layer: str, repeats: int) -> tuple[float, float]:
    """Median milliseconds of what the split path changes, (A, G) for one map set with no layer
    before the CAM layer randomised: a full forward and backward against the tail's alone."""
    work = working_copy(model)
    names = [lay.name for lay in execution_order(work, x, layer)]
    engines = [MapEngine(work, x, layer, None, {}, split, names) for split in (False, True)]
    assert engines[1].tail is not None, "the tail could not be traced"
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for i, engine in enumerate(engines):
            start = time.perf_counter()
            engine.activations_and_gradients(engine.scorer, set())
            times[i].append(1000 * (time.perf_counter() - start))
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=3, help="ABBA blocks per case")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (1 resists a loaded machine)")
    parser.add_argument("--out", type=Path, default=RESULTS / "sanity_cpu.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = xw.load_model("efficientnet_lite0", device="cpu")
    x = bundle.preprocess(xw.sample_image("chelsea"))[None]
    machine_start = machine_markdown()
    began = time.perf_counter()
    lines = []
    for layer, steps, checks in CASES:
        order = (False, True, True, False) * args.blocks
        times: dict[bool, list[float]] = {False: [], True: []}
        results = {}
        for split in order:
            seconds, results[split] = run_case(bundle.model, x, layer, steps, checks, split)
            times[split].append(seconds)
            print(f"{layer} steps={steps} split={split}: {seconds:.2f} s", file=sys.stderr, flush=True)
        fast, naive = results[True], results[False]
        worst = max(abs(a[m] - b[m]) for a, b in zip(fast.rows, naive.rows) for m in fast.measures)
        map_sets = len({(r["check"], r["step"]) for r in fast.rows})
        # the split path serves every set whose randomised layers all follow the CAM layer (None: none randomised)
        cheap = len({(r["check"], r["step"]) for r in fast.rows if r["after_layer"] is not False})
        lines.append(
            f"| `{layer}` | {steps} | {', '.join(checks)} | {len(fast.layers)} ({fast.layers_after} after) | "
            f"{map_sets} ({cheap}) | {statistics.median(times[False]):.2f} | {statistics.median(times[True]):.2f} | "
            f"{statistics.median(times[False]) / statistics.median(times[True]):.2f}x | {worst:.1e} |"
        )
    steps = []
    for layer in ("features.head", "features.stage5"):
        naive_ms, split_ms = gradient_step_ms(bundle.model, x, layer, repeats=20)
        steps.append(f"| `{layer}` | {naive_ms:.1f} | {split_ms:.1f} | {naive_ms / split_ms:.1f}x |")
    wall = time.perf_counter() - began
    text = f"""# Sanity checks: cost of the split path on CPU

Generated by `benchmarks/bench_sanity.py --blocks {args.blocks} --threads {args.threads}` on \
{dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}, {wall:.0f} s in all.

All {len(GRADIENT)} gradient methods ({", ".join(GRADIENT)}) on EfficientNet-Lite0, one 224x224 photo
(`xw.sample_image("chelsea")`), seed 0, 3 random classes. *naive* re-runs the whole model (one
forward and one backward) at every step; *split* re-runs only the network after the CAM layer for
every step whose randomised layers all lie after it, and for the random-logit steps. Times are
medians in seconds over {2 * args.blocks} runs per path, run in blocks of naive, split, split,
naive (ABBA); the ratio is the naive median over the split median. "map sets" counts the (check,
step) pairs computed, the original maps included (in brackets those the split path serves). The
last column is the largest difference between the two paths' similarities (Spearman and SSIM).

## Machine at the start

{machine_start}

## Machine at the end

{machine_markdown()}

## Results

| layer | steps | checks | layers (after) | map sets (split-served) | naive s | split s | ratio | max diff |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}

## The part the split path changes

(A, G) for one map set, median of 20 interleaved runs in milliseconds: a full forward and
backward pass against the network after the CAM layer alone, on the captured activations.

| layer | full pass ms | tail ms | ratio |
|---|---|---|---|
{chr(10).join(steps)}

## Reading

The split path replaces one part of a map set: the forward and backward pass that gives (A, G)
(second table). The rest of a map set, the eight maps from (A, G), their display at the image's
size and two similarities each, is the same on both paths and costs about as much again. And the
split path serves only the sets whose randomised layers all follow the CAM layer. So a full check
gains little at the default layer `features.head`, which only the classifier follows, more where
a third of the layers follow (`features.stage5`), and most in the views that stay after the layer:
`steps="tail"` (the Explorer's strip), `steps="key"` and the random-logit check. The numbers are
the same on both paths (last column). Runs use the torch thread count stated above: with two
threads on this shared two-core machine, other processes made one configuration's time vary more
than tenfold between runs, which swamps the ratio; one thread resists that.
"""
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
