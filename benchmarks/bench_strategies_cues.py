#!/usr/bin/env python
"""Strategy discovery (`xw.discover`) on cues at random positions: the sticker and tag nets and their clean contrasts.

    .venv/bin/python benchmarks/bench_strategies_cues.py [--images 600] [--out PATH]

Data (`shapes/cues.py`). For each cue kind (sticker, tag) the cue net `shapes_KIND` (trained with its label's
cue on 85% of images) and its clean contrast `shapes_KIND_clean` (trained with a random class's cue) are run
(`xw.evaluate`, XGrad-CAM at `features.block4`, target top-1) on the same held-out images of two specs:
  * "half" (`shapes_KIND:N:SEED:half`): the label's cue on a random half of the images, as on a validation
    set drawn like the training set: a predicted-class group mixes cued and uncued images;
  * "mixed" (`shapes_KIND:N:SEED:mixed`): a random class's cue on a random half, as in bench_strategies.py's
    mixed data: the cue net's group k mixes images it predicts from a k cue and images it predicts from a k shape.
Truth: within predicted class k (the group), the image "carries the cue" when its cue names k. The cue sits at
a random place off the shape, so only features that follow it can group its images: the latent channel shares
(over the whole map, `latent_all`, or its hottest 10%, `latent_top`) against the stored maps (`spatial`).

Measured per feature kind × algorithm (spectral, kmeans, agglomerative; k from the eigengap), with
bench_strategies.py's `quality`: each group's best F1 among its rank-1 and rank-2 clusters, the median over
groups (targets: cue net ≥ 0.85, clean net ≤ 0.70), the base rate and whole-group F1 beside it, and the AUROC
of the rows' cluster ranking score, pooled over groups. The display embedding is "spectral" (not scored).
Appends its section to benchmarks/results/strategies_cpu.md (replacing an earlier one) and writes
strategies_cpu.cues.json (the run's figures, beside the md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, machine_info, machine_markdown
from bench_strategies import CUES_SECTION, FEATURE_KINDS, quality

import xcam_widgets as xw
from xcam_widgets.evaluation.specs import shapes_from_spec
from xcam_widgets.shapes.constants import CUE_MODELS
from xcam_widgets.strategies import compute_latents
from xcam_widgets.strategies.clustering import ALGORITHMS
from xcam_widgets.strategies.images import image_access, model_source
from xcam_widgets.strategies.selection import select_rows

SEED = 7
DATASETS = ("half", "mixed")
FAILED = dict.fromkeys(("median_f1", "median_whole_group_f1", "median_base_rate", "auroc"), float("nan"))
SECTION = CUES_SECTION


def run_quality(n: int) -> list[dict]:
    out = []
    for name, (kind, classes) in CUE_MODELS.items():
        role = "cue" if classes == "label" else "clean"
        bundle = xw.load_model(name)
        for data in DATASETS:
            spec = f"shapes_{kind}:{n}:{SEED}:{data}"
            batch = shapes_from_spec(spec)
            cues = batch.cues.numpy()  # type: ignore[attr-defined]
            result = xw.evaluate(bundle, spec, methods="xgradcam", target="top1", metrics=["energy"], progress=False)
            rows = select_rows(result.table, None, None, "predicted")[0]
            started = time.perf_counter()
            latents = compute_latents(rows, bundle.model, model_source(bundle, image_access(batch, None, {}))[1])
            latent_s = time.perf_counter() - started
            predicted = result.table["predicted"].to_numpy()
            cued = cues[result.table["image"].to_numpy()] >= 0
            for features in FEATURE_KINDS:
                for algorithm in ALGORITHMS:
                    try:
                        d = xw.discover(result, features=features, algorithm=algorithm, latents=latents, images=batch,
                                        display="spectral", seed=0)  # fmt: skip
                    except ValueError as err:  # a failure of discover is a finding: keep it, measure the rest
                        q = {**FAILED, "error": str(err)}
                    else:
                        q = quality(d, cues, np.asarray(rows["image"]))
                    out.append(
                        {"kind": kind, "data": data, "model": name, "role": role, "features": features,
                         "algorithm": algorithm, "accuracy": float(result.table["correct"].mean()),
                         "prediction_is_cue": float((predicted == cues[result.table["image"].to_numpy()])[cued].mean()),
                         "latent_seconds": latent_s, **q}
                    )  # fmt: skip
                    print({k: v for k, v in out[-1].items() if k != "f1_by_group"}, flush=True)
    return out


def verdicts(rows: list[dict]) -> list[str]:
    """Per cue kind and data set: the feature × algorithm choices meeting both targets."""
    out = []
    for kind, data in dict.fromkeys((r["kind"], r["data"]) for r in rows):
        by_choice: dict[tuple[str, str], dict[str, float]] = {}
        for r in rows:
            if (r["kind"], r["data"]) == (kind, data):
                by_choice.setdefault((r["features"], r["algorithm"]), {})[r["role"]] = r["median_f1"]
        meet = [f"{f} + {a}" for (f, a), v in by_choice.items() if v["cue"] >= 0.85 and v["clean"] <= 0.70]
        failed = [r for r in rows if (r["kind"], r["data"]) == (kind, data) and "error" in r]
        out.append(f"- {kind} / {data}: both targets met by {', '.join(meet) if meet else 'no choice'}")
        out += [
            f"  - `xw.discover` failed on {r['model']}, {r['features']} + {r['algorithm']}: {r['error']}"
            for r in failed
        ]
    return out


def by_feature_kind(rows: list[dict]) -> list[str]:
    """The median F1 of each feature kind over cue kinds, data sets and algorithms, per role."""
    out = ["", "Median F1 per feature kind (over cue kinds, data sets and algorithms):", ""]
    for features in FEATURE_KINDS:
        parts = []
        for role in ("cue", "clean"):
            f1 = [r["median_f1"] for r in rows if r["features"] == features and r["role"] == role and "error" not in r]
            auroc = [r["auroc"] for r in rows if r["features"] == features and r["role"] == role]
            parts.append(f"{role} nets F1 {np.median(f1):.3f}, AUROC {np.nanmedian(auroc):.3f} ({len(f1)} runs)")
        out.append(f"- {features}: " + "; ".join(parts))
    return out


def markdown(rows: list[dict], info: dict, n: int, loads: tuple[str, str], seconds: float) -> str:
    lines = [
        SECTION,
        "",
        "Written by `benchmarks/bench_strategies_cues.py` (see its docstring for the data and the truth).",
        machine_markdown(info),
        f"- /proc/loadavg before {loads[0]}, after {loads[1]}; {seconds:.0f} s in all",
        "",
        f"{n} held-out images per spec (seed {SEED}), XGrad-CAM at `features.block4`, groups by predicted class.",
        "`half`: the label's cue on half the images; `mixed`: a random class's cue on half. Median F1 over",
        'groups of the best rank-1/rank-2 cluster for "carries the group\'s cue"; targets: cue nets ≥ 0.85,',
        "clean nets ≤ 0.70. `whole`: the F1 of taking the whole group; `base`: the share carrying the cue.",
        "On `half` a clean net's `whole` is about 0.70 by construction (half of each group is cued), so `half` is a",
        "weak test of the clean target; `mixed` (a group about 10% cued for a clean net) is the stricter one.",
        "",
        "| cue | data | model | features | algorithm | median F1 | whole-group F1 | base | AUROC | k per group |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['data']} | {r['model']} ({r['role']}) | {r['features']} | {r['algorithm']} | "
            f"{r['median_f1']:.3f} | {r['median_whole_group_f1']:.3f} | {r['median_base_rate']:.3f} | "
            f"{r['auroc']:.3f} | {r.get('k_by_group', 'failed')} |"
        )
    lines += ["", *verdicts(rows), *by_feature_kind(rows), "", "Models on the data:", ""]
    seen = {(r["data"], r["model"]): r for r in rows}
    for (data, model), r in seen.items():
        lines.append(
            f"- {data} / {model}: accuracy {r['accuracy']:.3f}, cued images predicted as their cue "
            f"{r['prediction_is_cue']:.3f}, latent vectors in {r['latent_seconds']:.1f} s"
        )
    return "\n".join([*lines, ""])


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of `path` (from its heading to the next "## " heading or the end),
    or append it."""
    text = path.read_text() if path.is_file() else ""
    start = text.find(SECTION)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = text.find("\n## ", start + len(SECTION))
    path.write_text(text[:start] + section + (text[end + 1 :] if end >= 0 else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--out", type=Path, default=RESULTS / "strategies_cpu.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = machine_info()
    before, started = " ".join(Path("/proc/loadavg").read_text().split()[:3]), time.perf_counter()
    rows = run_quality(args.images)
    after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    section = markdown(rows, info, args.images, (before, after), time.perf_counter() - started)
    write_section(args.out, section)
    args.out.with_suffix(".cues.json").write_text(json.dumps({"machine": info, "quality": rows}, indent=1))
    print(section)


if __name__ == "__main__":
    main()
