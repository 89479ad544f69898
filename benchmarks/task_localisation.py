#!/usr/bin/env python
"""Which CAM method localises a segmentation or a detection target: the share of each displayed map's
energy that falls on the explained shape, on the shapes nets, whose masks and boxes are known.

    .venv/bin/python benchmarks/task_localisation.py [--images 40] [--out PATH]

For `shapes_seg`: each true shape of `make_shapes(N, seed=5, pair_fraction=1.0)`, explained as
("segment", c) (its class's logits over every pixel predicted as it) and as the predicted region under
the shape's middle pixel; energy = Σ map over the true mask / Σ map. For `shapes_det`: every detection,
explained as ("detection", i); energy = Σ map inside its box / Σ map. Maps at `features.block4`, displayed
(ReLU, upsampled to 64×64, scaled). A blank map (all zero after the ReLU) is counted apart. This is what the
Explorer's default method for these tasks was chosen from.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, machine_markdown  # puts the checkout on sys.path

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.shapes.dataset import make_shapes  # noqa: E402
from xcam_widgets.shapes.nets import preprocess  # noqa: E402
from xcam_widgets.task_views import region_key, target_of  # noqa: E402

LAYER = "features.block4"
METHODS = ("gradcam", "xgradcam", "hirescam", "gradcam-elementwise", "layercam")


def energy(model, x: torch.Tensor, method: str, key, output, inside: torch.Tensor) -> float:
    """Σ map over `inside` / Σ map of the displayed map; NaN for a blank map."""
    shown = xw.explain(model, x, LAYER, method=method, target=target_of(key, output)).map[0]
    total = float(shown.sum())
    return float(shown[inside].sum()) / total if total > 0 else float("nan")


def segmentation_rows(images: int) -> dict[tuple[str, str], list[float]]:
    seg = xw.load_model("shapes_seg", device="cpu")
    data = make_shapes(images, seed=5, pair_fraction=1.0)
    found: dict[tuple[str, str], list[float]] = {}
    for i in range(images):
        x = preprocess(data.images[i])[None]
        with torch.no_grad():
            output = seg.model(x)
        for shape in data.labels[i].tolist():
            mask = data.masks[i, shape]
            rows, cols = mask.nonzero(as_tuple=True)
            middle = len(rows) // 2
            keys = {"segment": ("segment", shape), "region": region_key(output, int(rows[middle]), int(cols[middle]))}
            for kind, key in keys.items():
                if key[1] != shape:  # the net predicts another class there: not this shape's region
                    continue
                for method in METHODS:
                    found.setdefault((f"shapes_seg, {kind}", method), []).append(
                        energy(seg.model, x, method, key, output, mask)
                    )
    return found


def detection_rows(images: int) -> dict[tuple[str, str], list[float]]:
    det = xw.load_model("shapes_det", device="cpu")
    data = make_shapes(images, seed=5, pair_fraction=1.0)
    found: dict[tuple[str, str], list[float]] = {}
    for i in range(images):
        x = preprocess(data.images[i])[None]
        with torch.no_grad():
            output = det.model(x)
        for index, box in enumerate(output[0]["boxes"].tolist()):
            inside = torch.zeros(64, 64, dtype=torch.bool)
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            inside[y1:y2, x1:x2] = True
            for method in METHODS:
                found.setdefault(("shapes_det, detection", method), []).append(
                    energy(det.model, x, method, ("detection", index), output, inside)
                )
    return found


def markdown(found: dict[tuple[str, str], list[float]], images: int, started: str) -> str:
    lines = [
        "# Which method localises a segmentation or detection target (shapes nets, CPU)",
        "",
        f"Run {started} with `benchmarks/task_localisation.py --images {images}`: {images} two-shape images "
        f"(`make_shapes({images}, seed=5, pair_fraction=1.0)`), layer `{LAYER}`. Energy = share of the displayed "
        "map's sum on the explained shape (its true mask for segmentation, its box for a detection); a "
        "shape covers about 5 % of the image, a box about 10 %. See the script's docstring.",
        "",
        machine_markdown(),
        "",
        "| model, target | method | targets | energy: median | mean | blank maps |",
        "|---|---|---|---|---|---|",
    ]
    for (target, method), values in found.items():
        v = np.array(values)
        median, mean, blank = np.nanmedian(v), np.nanmean(v), int(np.isnan(v).sum())
        lines.append(f"| {target} | {method} | {len(v)} | {median:.2f} | {mean:.2f} | {blank} |")
    lines += [
        "",
        "A detection's score is one cell of the detector's grid, so its gradient is non-zero only near that "
        "cell. Grad-CAM and XGrad-CAM turn it into one weight per channel for the whole layer, and the map then "
        "lights up every place where those channels fire, the other shape included; HiResCAM, element-wise "
        "Grad-CAM and LayerCAM weigh each position by its own gradient and keep the target's locality. The "
        "Explorer therefore opens segmentation and detection models with HiResCAM (XGrad-CAM stays the default "
        "for classifiers).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULTS / "task_localisation_cpu.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    found = {**segmentation_rows(args.images), **detection_rows(args.images)}
    args.out.write_text(markdown(found, args.images, started))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
