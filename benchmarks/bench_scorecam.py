#!/usr/bin/env python
"""Score-CAM's opt-in `top_channels=N` against the exact method, the peers and a floor, in one run.

    .venv/bin/python benchmarks/bench_scorecam.py [--threads 1] [--photos chelsea ...] [--shapes 100] [--out PATH]
                                                  [--device cpu|cuda]
    .venv/bin/python benchmarks/bench_scorecam.py --from-json benchmarks/results/scorecam_cpu.json  # report only

Two models, each at its default layer, the target class given to every implementation:
  * EfficientNet-Lite0, layer `features` (1,280 channels, 7×7), on the bundled photos, top-1 class;
  * `shapes_vgg` at its default layer, on `--shapes` held-out shapes images, the true label.
Per image, each timed once, in this order:
  exact     `xw.explain(..., method="scorecam", batch_size=32)`: K masked passes;
  top-N     the same with `top_channels=N`: N masked passes;
  pgc       pytorch-grad-cam's `ScoreCAM` (`batch_size = 32`): hooks, forward, K masked passes, map;
  torchcam  torchcam's `ScoreCAM(batch_size=32)`: hooks, the user's forward, K masked passes;
  floor     `model(batch)` under `torch.no_grad()` for K passes, and for N passes, in batches of 32.
Times are wall and CPU seconds of the process (all threads). With `--device cuda` the models, inputs, peers and
floor run on the GPU, each timed interval starts and ends with `torch.cuda.synchronize()`, an untimed run on the
first photo loads the kernels, and the verdict reads wall time (CPU seconds are the host's).
Fidelity is Pearson's r and Spearman's ρ over the pixels of the displayed maps (ReLU, bilinear upsampling to the
input, min-max scaling) against our exact map.
torchcam's layer-sized map goes through our `display_map`; pytorch-grad-cam's map is already ReLU, min-max scaled
and bilinearly resized (OpenCV, half-pixel centres, as ours): it differs by an affine scale that r and ρ ignore.

The ranking was chosen by measurement. The library scores the channels with the largest activation mass
Σ_xy ReLU(A_k); on the photos the alternative Σ_xy ReLU(G_k ⊙ A_k) is evaluated from the exact run: a channel's
masked score does not depend on which other channels are scored, so the softmax of the exact scores over
any subset gives that subset's map without re-running the model.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from _common import RESULTS, machine_markdown  # puts the checkout on sys.path
from _scorecam_report import BATCH_SIZE, PEERS, markdown
from pytorch_grad_cam import ScoreCAM as PgcScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from scipy import stats
from torch import nn
from torchcam.methods import ScoreCAM as TorchcamScoreCAM  # noqa: E402

import xcam_widgets as xw  # noqa: E402
from xcam_widgets.evaluation.sources import open_images  # noqa: E402
from xcam_widgets.maps import display_map  # noqa: E402
from xcam_widgets.shapes.constants import HELDOUT_SEED  # noqa: E402

PHOTO_TOPS = (32, 64, 128)
SHAPES_TOPS = (8, 16, 32)
Seconds = tuple[float, float]  # (wall, CPU)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work: a CUDA interval timed without it ends at the last launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, Seconds]:
    """fn()'s result and its (wall, CPU) seconds, the device's queue drained before the start and the stop;
    CPU time sums this process's threads."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    synchronize(device)
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def correlations(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(Pearson r, Spearman ρ with tied ranks averaged) over the pixels; NaN where a map is constant."""
    x, y = a.detach().flatten().double().cpu().numpy(), b.detach().flatten().double().cpu().numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(stats.pearsonr(x, y)[0]), float(stats.spearmanr(x, y)[0])


def floor_seconds(model: nn.Module, x: torch.Tensor, passes: int) -> Seconds:
    """Bare `model(batch)` for `passes` copies of x in batches of BATCH_SIZE: what no Score-CAM can undercut."""
    full = x.expand(BATCH_SIZE, *x.shape[1:]).contiguous()

    def run() -> None:
        with torch.no_grad():
            for start in range(0, passes, BATCH_SIZE):
                model(full[: min(BATCH_SIZE, passes - start)])

    return timed(run, x.device)[1]


def pgc_map(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> torch.Tensor:
    """pytorch-grad-cam's Score-CAM map `[1, H, W]`; its tqdm bars are drawn (and timed), their text discarded."""
    with contextlib.redirect_stderr(io.StringIO()), PgcScoreCAM(model, [model.get_submodule(layer)]) as cam:
        cam.batch_size = BATCH_SIZE  # read by its get_cam_weights; its default is 16
        result = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
    if result is None:  # its __exit__ swallows an IndexError
        raise RuntimeError("pytorch-grad-cam's ScoreCAM returned no map (an IndexError inside it)")
    return torch.from_numpy(result)


def torchcam_map(model: nn.Module, layer: str, x: torch.Tensor, target: int) -> torch.Tensor:
    """torchcam's Score-CAM map at the layer's size `[1, h, w]` (ReLU, min-max scaled)."""
    with TorchcamScoreCAM(model, layer, batch_size=BATCH_SIZE, input_shape=tuple(x.shape[1:])) as extractor:
        with torch.no_grad():
            model(x)  # torchcam needs the user's forward pass; it is part of the cost
        return extractor(class_idx=target)[0]


def subset_raw(activations: torch.Tensor, exact_weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The raw map `[1, h, w]` of scoring only `chosen` channels: the exact softmax renormalised over them."""
    weights = torch.zeros_like(exact_weights)
    weights[chosen] = exact_weights[chosen] / exact_weights[chosen].sum()
    return (weights[:, None, None] * activations).sum(0)[None]


def ranking_simulation(model: nn.Module, x: torch.Tensor, layer: str, exact: Any, top: int) -> tuple[float, Any]:
    """Display r of top-N ranked by Σ ReLU(G ⊙ A); the raw map of the library's ranking, to check the simulation."""
    cap = xw.capture(model, x, layer, int(exact.classes[0]))
    A, G, weights = cap.activations[layer][0], cap.gradients[layer][0], exact.weights[0]
    size = tuple(x.shape[2:])
    by_gradient = (G * A).clamp(min=0).sum((1, 2)).argsort(descending=True)[:top]
    by_mass = A.clamp(min=0).sum((1, 2)).argsort(descending=True, stable=True)[:top]
    gradient_r = correlations(display_map(subset_raw(A, weights, by_gradient), size), exact.map)[0]
    return gradient_r, subset_raw(A, weights, by_mass)


def bench_image(
    model: nn.Module, layer: str, x: torch.Tensor, target: int, channels: int, tops: tuple[int, ...], simulate: bool
) -> dict[str, Any]:
    """Every timed run on one image, with fidelity to the exact map."""

    def explain(**options: Any) -> Any:
        return xw.explain(model, x, layer, method="scorecam", target=target, batch_size=BATCH_SIZE, **options)

    exact, exact_s = timed(explain, x.device)
    row: dict[str, Any] = {"class": target, "passes": channels, "exact": exact_s, "runs": {}}
    for top in tops:
        approx, seconds = timed(partial(explain, top_channels=top), x.device)
        r, rho = correlations(approx.map, exact.map)
        run = {"passes": top, "time": seconds, "r": r, "rho": rho}
        if simulate:
            run["gradient_r"], mass_raw = ranking_simulation(model, x, layer, exact, top)
            run["simulation_check_r"] = correlations(mass_raw, approx.raw)[0]
        row["runs"][f"top-{top}"] = run
    size = tuple(x.shape[2:])
    for peer, make in zip(PEERS, (pgc_map, torchcam_map)):
        try:
            peer_map, seconds = timed(partial(make, model, layer, x, target), x.device)
        except Exception as err:  # a peer that cannot run on this model is reported, not fatal
            row["runs"][peer] = {"passes": channels, "error": f"{type(err).__name__}: {err}"}
            continue
        shown = peer_map if peer_map.shape[-2:] == size else display_map(peer_map, size)
        r, rho = correlations(shown, exact.map)
        row["runs"][peer] = {"passes": channels, "time": seconds, "r": r, "rho": rho}
    row["floor"] = floor_seconds(model, x, channels)
    for name, run in row["runs"].items():
        run["floor"] = floor_seconds(model, x, run["passes"]) if name.startswith("top-") else row["floor"]
    return row


def default_layer_of(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[str, tuple[int, int, int]]:
    layers = xw.candidate_layers(model, input_shape)
    layer = xw.default_layer(layers, model)
    return layer, next(info.shape for info in layers if info.name == layer)


def run_photos(names: list[str], device: torch.device) -> dict:
    model, preprocess, _ = xw.load_model("efficientnet_lite0", device=device)
    layer, shape = default_layer_of(model, (3, 224, 224))
    rows = []
    for i, name in enumerate(names):
        x = preprocess(xw.sample_image(name))[None].to(device)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        if i == 0 and device.type == "cuda":  # untimed: the first call of each kernel loads it (lazy loading)
            bench_image(model, layer, x, target, shape[0], PHOTO_TOPS, simulate=False)
        rows.append({"image": name, **bench_image(model, layer, x, target, shape[0], PHOTO_TOPS, simulate=True)})
        print(f"{name}: {json.dumps(rows[-1], default=str)}", flush=True)
    return {"layer": layer, "channels": shape[0], "rows": rows}


def run_shapes(count: int, device: torch.device) -> dict:
    model, preprocess, _ = xw.load_model("shapes_vgg", device=device)
    layer, shape = default_layer_of(model, (3, 64, 64))
    batch = open_images(f"shapes:{count}:{HELDOUT_SEED}", preprocess).take(range(count))
    if batch.x is None or batch.labels is None:
        raise RuntimeError("the shapes source gave no image tensors or no labels")
    xs = batch.x.to(device)
    bench_image(model, layer, xs[:1], int(batch.labels[0]), shape[0], SHAPES_TOPS, False)  # warm-up, untimed
    rows = []
    for i in range(count):
        target = int(batch.labels[i])
        rows.append({"image": i, **bench_image(model, layer, xs[i : i + 1], target, shape[0], SHAPES_TOPS, False)})
        if i % 10 == 9:
            print(f"shapes {i + 1}/{count}", flush=True)
    return {"layer": layer, "channels": shape[0], "grid": f"{shape[1]}×{shape[2]}", "rows": rows}


def device_name(device: torch.device) -> str:
    """The device in words, with the TF32 switches where they apply (PyTorch's defaults unless changed)."""
    if device.type != "cuda":
        return "the CPU"
    tf32 = f"{torch.backends.cudnn.allow_tf32} / {torch.backends.cuda.matmul.allow_tf32}"
    return f"CUDA ({torch.cuda.get_device_name(device)}; TF32 for convolutions / matmuls: {tf32})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=list(xw.SAMPLE_IMAGES), choices=xw.SAMPLE_IMAGES)
    parser.add_argument("--shapes", type=int, default=100, help="shapes images (held-out seed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/scorecam_<device>.md)")
    parser.add_argument("--from-json", type=Path, help="measure nothing: rewrite the report from a saved .json")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        out = args.out or RESULTS / f"scorecam_{saved.get('device', 'cpu')}.md"
        out.write_text(markdown(saved))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    args.out = args.out or RESULTS / f"scorecam_{args.device}.md"
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="torchcam")
    start, machine_before = time.perf_counter(), machine_markdown()
    started = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    shapes = run_shapes(args.shapes, device)  # minutes at most: a broken peer shows before the long part
    photos = run_photos(args.photos, device)
    report = {
        "started": started,
        "minutes": (time.perf_counter() - start) / 60,
        "command": f"benchmarks/bench_scorecam.py --threads {args.threads} --photos {' '.join(args.photos)} "
        f"--shapes {args.shapes}" + (f" --device {args.device}" if device.type != "cpu" else ""),
        "device": args.device,
        "device_name": device_name(device),
        "machine_before": machine_before,
        "machine_after": machine_markdown(),
        "photos": photos,
        "shapes": shapes,
    }
    args.out.write_text(markdown(report))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
