"""The `xcam` command line.

    xcam evaluate --model shapes_gap --images shapes:100 --methods gradcam,xgradcam \\
        --layers features.block4 --out results.csv

`evaluate` runs `xcam_widgets.evaluation.evaluate`, writes the per-image table to `--out` (with
`<stem>.summary.csv`, `<stem>.maps.npz`, `<stem>.meta.json` and the batches in `<stem>.parts/`)
and prints the summary: mean [95% CI] per metric (rows) and method × layer (columns). An image
that cannot be read becomes rows with an `error` (`--strict`: stop at it instead). The same command
run again after an interruption computes only what is missing; an `--out` from another evaluation
is replaced only with `--overwrite`. Bad arguments exit with status 2 and a message that names the argument.
Ctrl-C exits with status 130 and says what stays: the finished batches in `<stem>.parts/`, which the
same command resumes from.

    xcam evaluate ... --engine ray [--address ray://head:10001] [--workers 8] --out results.csv

runs the same evaluation on a pool of Ray actors (`pip install xcam-widgets[ray]`): on the cluster
at `--address`, or on a local Ray started for the run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import torch

from .checks import positive_int
from .evaluation import ENGINES, METRICS, evaluate, run_paths
from .evaluation.arguments import check_device
from .evaluation.table import SANITY_METRICS
from .methods import METHODS
from .models import load_model

INTERRUPTED = 130  # the shell's status for a command ended by SIGINT (128 + 2)
RANDOM_WEIGHTS_SEED = 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcam", description="xcam-widgets: class activation maps for PyTorch.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ev = commands.add_parser(
        "evaluate",
        help="evaluate CAM methods x layers on a dataset",
        description="Faithfulness, localisation and axiom diagnostics of CAM methods x layers over a dataset.",
    )
    ev.add_argument("--model", required=True, help="a model name (xw.available_models()), e.g. shapes_gap")
    ev.add_argument(
        "--images",
        required=True,
        help="a folder, an image file, 'shapes:N[:SEED]' (the shapes benchmark) or "
        "'shapes_shortcut:N[:SEED[:MARKS]]'; "
        "an existing path wins",
    )
    ev.add_argument(
        "--methods",
        type=_names,
        default=["gradcam", "xgradcam"],
        help=f"comma-separated methods (default gradcam,xgradcam); any of {','.join(METHODS)}",
    )
    ev.add_argument(
        "--layers",
        type=_names,
        default=None,
        help="comma-separated dotted layer names (default: the model's default CAM layer)",
    )
    ev.add_argument(
        "--metrics",
        type=_names,
        default=None,
        help=f"comma-separated subset of {','.join(METRICS)} (default: all that apply "
        f"but the costly sanity checks {','.join(SANITY_METRICS)})",
    )
    ev.add_argument(
        "--target",
        type=_target,
        default=None,
        help="'label' (the true class, the default where known), 'top1' (default elsewhere), a class index, "
        "or 'segmentation' (a segmentation model such as shapes_seg)",
    )
    ev.add_argument(
        "--out", default=None, help="CSV path for the per-image table; the summary goes to <stem>.summary.csv"
    )
    ev.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (default: resume it if it is this evaluation, else stop)",
    )
    ev.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first image that cannot be read (default: record it in the error column)",
    )
    ev.add_argument("--batch-size", type=_positive, default=32, help="images per batch (default 32)")
    ev.add_argument(
        "--chunk-size", type=_positive, default=256, help="model inputs per pass inside the metrics (default 256)"
    )
    ev.add_argument("--steps", type=_positive, default=50, help="deletion / insertion steps (default 50)")
    ev.add_argument(
        "--tolerance",
        type=_non_negative,
        default=None,
        help="pointing-game tolerance in px (default: 15 px at 224 px, scaled to the image)",
    )
    ev.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: CUDA if available)")
    ev.add_argument(
        "--random-weights",
        action="store_true",
        help="use randomly initialised weights (no download), seeded: the same in every run, so a rerun resumes",
    )
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="'local' (this process, the default) or 'ray' (a pool of Ray actors; pip install xcam-widgets[ray])",
    )
    ev.add_argument(
        "--address",
        default=None,
        help="with --engine ray: a Ray cluster's address, e.g. auto or ray://head:10001 (default: start a local Ray)",
    )
    ev.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="with --engine ray: Ray actors (default: one per GPU of the cluster, else one per CPU)",
    )
    ev.set_defaults(run=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `xcam` command line with `argv` (default `sys.argv[1:]`); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args, parser)
    except KeyboardInterrupt:  # Ctrl-C: say what stays instead of a traceback
        print(f"\nxcam {args.command}: interrupted. {_what_was_kept(getattr(args, 'out', None))}", file=sys.stderr)
        return INTERRUPTED


def _what_was_kept(out: str | None) -> str:
    """What an interrupted `evaluate` leaves: the finished batches in `out`'s parts, which a rerun resumes."""
    if out is None:
        return "Nothing was kept: without --out no batch is written (pass --out to make a run resumable)."
    parts = run_paths(out).parts
    if any(parts.glob("batch-*.npz")):  # a part file per finished batch
        return f"The finished batches stay in {parts}: the same command resumes from them."
    return "No batch had finished: a rerun starts from the beginning."


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    ray = args.engine == "ray"
    engine_options = {
        name: value for name, value in (("address", args.address), ("workers", args.workers)) if value is not None
    }
    try:  # with Ray, --device names the actors' device, which this machine need not have
        check_device(args.device, here=not ray)
    except (ValueError, TypeError) as err:
        parser.exit(2, f"xcam evaluate: error: --device: {err}\n")
    try:  # with Ray, the model is loaded here on the CPU, shipped to the actors and moved to --device there
        with torch.random.fork_rng(devices=[]):  # seeded random weights: a rerun's fingerprint matches
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            bundle = load_model(args.model, pretrained=not args.random_weights, device="cpu" if ray else args.device)
    except (ValueError, TypeError, OSError, RuntimeError) as err:  # unknown name, missing or offline weights
        offline = not args.random_weights and not isinstance(err, (ValueError, TypeError))
        hint = " (--random-weights needs no weights)" if offline else ""
        parser.exit(2, f"xcam evaluate: error: --model {args.model!r}: {err}{hint}\n")
    try:
        result = evaluate(
            bundle,
            args.images,
            args.methods,
            args.layers,
            target=args.target,
            metrics=args.metrics,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            chunk_size=args.chunk_size,
            steps=args.steps,
            tolerance=args.tolerance,
            out=args.out,
            engine=args.engine,
            device=args.device if ray else None,
            engine_options=engine_options or None,
            overwrite=args.overwrite,
            strict=args.strict,
        )
    except (ValueError, TypeError, OSError, ImportError) as err:  # bad methods, layers, images, target, --out; no Ray
        parser.exit(2, f"xcam evaluate: error: {err}\n")
    print(format_summary(result.summary))
    failures = format_failures(result.table)
    if failures:
        print(f"\n{failures}")
    if args.out is not None:
        paths = run_paths(args.out)
        print(f"\nwrote {len(result.table)} rows to {paths.table} and the summary to {paths.summary}")
        print(f"the batches are in {paths.parts}: the same command resumes from them")
    return 0


def format_failures(table: Any) -> str:
    """How many images could not be read, and the first reason ("" when none failed)."""
    if "error" not in table:
        return ""
    failed = table[table["error"].fillna("").astype(str) != ""].drop_duplicates("image")
    if failed.empty:
        return ""
    first = failed.iloc[0]
    images = table["image"].nunique()
    return (
        f"{len(failed)} of {images} image(s) could not be read (their rows have an error and no values); "
        f"first: {first['image']}: {first['error']}"
    )


def format_summary(summary: Any) -> str:
    """The summary as text: one line per metric, one column per method × layer, `mean [low, high]`."""
    if summary.empty:
        return "(no results)"
    cells = summary.assign(
        value=[
            f"{m:.4g} [{lo:.4g}, {hi:.4g}]" for m, lo, hi in zip(summary["mean"], summary["ci_low"], summary["ci_high"])
        ]
    )
    order = list(dict.fromkeys(summary["metric"]))
    wide = cells.pivot_table(index=["method", "layer"], columns="metric", values="value", aggfunc="first", sort=False)
    return wide[order].T.rename_axis(index=None).to_string()


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def _target(text: str) -> int | str:
    if text in ("label", "top1", "segmentation"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'label', 'top1', 'segmentation' or a class index, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a class index must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        return positive_int("the value", _int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _non_negative(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
