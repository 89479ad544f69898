"""`sanity_check`: do a method's maps depend on the model's weights and on the class?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..checks import positive_int
from ..inputs import prepare_input
from ..layers import LayerSpec, resolve_layer
from ..maps import display_map
from ..methods import METHODS, REGISTRY
from ..targets import Scorer, Target
from .randomise import RandomLayer, Weights, execution_order, layer_seeds, working_copy
from .recompute import MapEngine
from .result import THRESHOLD, SanityResult, Verdict, mean_similarity
from .similarity import spearman, ssim

CHECKS = ("cascading", "independent", "random_logit")
SIMILARITIES = ("spearman", "ssim")
STEPS = ("all", "tail", "key")
DEFAULT_METHODS = ("xgradcam", "gradcam", "eigencam")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Task:
    """One set of maps to compute: which layers are randomised (cascade positions) or which class."""

    check: str
    step: int
    randomised: tuple[int, ...] = ()
    classes: torch.Tensor | None = None


def sanity_check(
    model: nn.Module,
    x: torch.Tensor,
    layer: LayerSpec,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    target: Target = None,
    checks: str | Sequence[str] = CHECKS,
    similarity: str | Sequence[str] = SIMILARITIES,
    seed: int | Sequence[int] = 0,
    progress: Progress | None = None,
    *,
    steps: str = "all",
    random_classes: int = 3,
    threshold: float = THRESHOLD,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    keep_maps: bool = False,
    split: bool = True,
) -> SanityResult:
    """Sanity checks of CAM methods at `layer` for the images `x`.

    - "cascading" (MPRT, Adebayo et al., NeurIPS 2018): the model's parameterised layers are
      re-initialised from the output back towards the input, one more at each step, and each
      method's map is recomputed;
    - "independent": one layer at a time, the others intact;
    - "random_logit" (Sixt et al., ICML 2020): maps for `random_classes` random other classes
      (seeded, distinct, never the target) against the target class's map.

    Similarity to the original map: "spearman", Spearman's ρ of the raw maps; "ssim", SSIM of
    the displayed maps (data range 1). `target` is fixed from the original model (top-1 for None).
    `seed` draws one seed per layer and the random classes; a sequence gives the layers' seeds
    explicitly, in execution order (to reproduce another tool's draws; its first entry draws the
    classes). `steps`: "all" layers; "tail", only the layers after the CAM
    layer (cheap: only the network after the layer re-runs); "key", for cascading the verdict step
    (every layer after the CAM layer randomised) and the full cascade, for independent the output
    layer, the last layer before the CAM layer's output and the first layer. `options` holds
    per-method keyword options. `split=False` re-runs the whole model at every step (benchmarks);
    with `split`, a layer after the CAM layer that shares a weight with the part before it (a tied
    parameter, a module called on both sides) is randomised by re-running the whole model, so the
    numbers are those of `split=False`. `SanityResult.path` and `.path_note` say which path ran.

    Verdict (`SanityResult.verdicts`): a method passes a check when its mean similarity is below
    `threshold` for every measure, for "cascading" once every layer after the CAM layer is
    randomised. Default 0.5: no paper fixes a pass mark (Adebayo et al. and Sixt et al. judge by
    eye); 0.5 is Cohen's (1988) lower bound of a large correlation.

    All randomisation happens on a deep copy: the model, its flags, hooks and the global RNG are
    left as they were, also when `progress(done, total)` raises to cancel the run.
    """
    methods = _names("methods", methods, METHODS, normalise=True)
    checks = _names("checks", checks, CHECKS)
    measures = _names("similarity", similarity, SIMILARITIES)
    if steps not in STEPS:
        raise ValueError(f"steps must be one of {STEPS}, got {steps!r}")
    random_classes = positive_int("random_classes", random_classes)
    threshold = _threshold(threshold)
    options = _options(options, methods)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(done, total) or None, got {type(progress).__name__}")
    for flag, value in (("keep_maps", keep_maps), ("split", split)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool, got {type(value).__name__}")
    _check_seed(seed)
    layer_name, _ = resolve_layer(model, layer)
    x = prepare_input(model, x)
    work = working_copy(model)
    order = execution_order(work, x, layer_name)
    seeds = _seeds(seed, len(order))
    after = [lay.name for lay in order if lay.after_layer]
    engine = MapEngine(work, x, layer_name, target, options, split, [lay.name for lay in order], after)
    cascade = order[::-1]
    tasks = _plan(checks, steps, cascade, engine, random_classes, seed, x.shape[0])
    run = _Run(engine, methods, measures, x.shape[2:], keep_maps, progress, (len(tasks) + 1) * len(methods))
    run.execute(tasks, cascade, Weights(work, order, seeds))
    layers_after = len(after)
    return SanityResult(
        layer=layer_name,
        layers=tuple(lay.name for lay in cascade),
        layers_after=layers_after,
        measures=tuple(measures),
        rows=run.rows,
        maps=run.maps,
        verdicts={m: _verdict(m, layer_name, run.rows, measures, threshold, layers_after, checks) for m in methods},
        path="tail" if engine.tail_steps else "full",
        path_note=engine.note,
    )


def _names(what: str, value: str | Sequence[str], allowed: Sequence[str], normalise: bool = False) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a name or a non-empty list of names from {tuple(allowed)}, got {value!r}")
    names = [n.lower().replace("_", "-") if normalise else n for n in names]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names one entry twice: {names}")
    return names


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 < value <= 1:
        raise ValueError(f"threshold must be a number in (-1, 1], got {value!r}")
    return float(value)


def _options(options: Mapping[str, Mapping[str, Any]] | None, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
        raise TypeError("options must map method names to dicts of that method's options")
    unknown = [name for name in options if name not in methods]
    if unknown:
        raise ValueError(f"options name method {unknown[0]!r}, which is not among the methods checked: {methods}")
    for name, values in options.items():
        if values and not REGISTRY[name].uses_model:
            raise ValueError(f"method {name!r} has no options")
    return {name: dict(values) for name, values in options.items()}


def _check_seed(seed: Any) -> None:
    seeds = seed if isinstance(seed, (list, tuple)) else [seed]
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seed must be an int >= 0 or a list of them (one per layer), got {seed!r}")


def _seeds(seed: int | Sequence[int], count: int) -> list[int]:
    if isinstance(seed, int):
        return layer_seeds(seed, count)
    if len(seed) != count:
        raise ValueError(f"seed lists {len(seed)} seeds, but the model has {count} randomisable layers")
    return list(seed)


def _plan(
    checks: Sequence[str],
    steps: str,
    cascade: Sequence[RandomLayer],
    engine: MapEngine,
    random_classes: int,
    seed: int | Sequence[int],
    batch: int,
) -> list[_Task]:
    """The maps to compute, in an order that needs the fewest weight changes: the unrandomised
    model first (random logits), then each layer alone, then the growing cascade."""
    after = sum(lay.after_layer for lay in cascade)
    last = len(cascade)
    tasks = []
    if "random_logit" in checks:
        others = _random_classes(engine, random_classes, seed if isinstance(seed, int) else seed[0], batch)
        tasks += [_Task("random_logit", k + 1, classes=classes) for k, classes in enumerate(others)]
    chosen = {
        "all": (range(1, last + 1), range(1, last + 1)),
        "tail": (range(1, after + 1), range(1, after + 1)),
        "key": (sorted({1, min(after + 1, last), last}), sorted({after, last} - {0})),
    }[steps]
    if "independent" in checks:
        tasks += [_Task("independent", step, (step - 1,)) for step in chosen[0]]
    if "cascading" in checks:
        tasks += [_Task("cascading", step, tuple(range(step))) for step in chosen[1]]
    return tasks


def _random_classes(engine: MapEngine, count: int, seed: int, batch: int) -> list[torch.Tensor]:
    """`count` class tensors `[B]`: for each image, distinct classes other than its target."""
    classes, total = engine.scorer.classes, engine.num_classes
    if classes is None or total is None:
        raise ValueError("the random_logit check needs class-index targets (None, an int or ints), not a callable")
    if count > total - 1:
        raise ValueError(f"random_classes={count}, but the model has only {total - 1} classes besides the target")
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for target in classes.tolist():
        others = torch.randperm(total - 1, generator=generator)[:count]
        picks.append(others + (others >= target).long())
    return list(torch.stack(picks, dim=1).to(classes.device))


class _Run:
    """Computes the tasks' maps on the private model and compares them with the original maps."""

    def __init__(
        self,
        engine: MapEngine,
        methods: list[str],
        measures: list[str],
        size: torch.Size,
        keep_maps: bool,
        progress: Progress | None,
        total: int,
    ):
        self.engine, self.methods, self.measures, self.size = engine, methods, measures, tuple(size)
        self.keep_maps, self.progress, self.total, self.done = keep_maps, progress, total, 0
        self.rows: list[dict[str, Any]] = []
        self.maps: dict[tuple[str, str, int], torch.Tensor] = {}
        self.original: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def _maps(self, scorer: Scorer, randomised: set[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raws = self.engine.raw_maps(self.methods, scorer, randomised, self._tick)
        return {m: (raw, display_map(raw, self.size)) for m, raw in raws.items()}

    def execute(self, tasks: Sequence[_Task], cascade: Sequence[RandomLayer], weights: Weights) -> None:
        scorer = self.engine.scorer
        self.original = self._maps(scorer, set())
        if any(task.check == "cascading" for task in tasks):
            self._record("cascading", 0, None, None, scorer.classes, self.original)
        for task in tasks:
            wanted = {cascade[i].name for i in task.randomised}
            for name in weights.randomised - wanted:
                weights.restore(name)
            for i in task.randomised:
                if cascade[i].name not in weights.randomised:
                    weights.randomise(cascade[i].name)
            task_scorer = scorer if task.classes is None else Scorer(classes=task.classes)
            maps = self._maps(task_scorer, weights.randomised)
            layer = cascade[task.step - 1].name if task.randomised else None
            after = all(cascade[i].after_layer for i in task.randomised) if task.randomised else None
            self._record(task.check, task.step, layer, after, task_scorer.classes, maps)

    def _record(
        self,
        check: str,
        step: int,
        layer: str | None,
        after: bool | None,
        classes: torch.Tensor | None,
        maps: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        for method, (raw, shown) in maps.items():
            raw0, shown0 = self.original[method]
            values = {}
            if "spearman" in self.measures:
                values["spearman"] = spearman(raw0, raw).tolist()
            if "ssim" in self.measures:
                values["ssim"] = ssim(shown0.float(), shown.float()).tolist()
            for image in range(raw.shape[0]):
                self.rows.append(
                    {
                        "method": method,
                        "check": check,
                        "step": step,
                        "layer": layer,
                        "after_layer": after,
                        "image": image,
                        "target_class": None if classes is None else int(classes[image]),
                        **{measure: values[measure][image] for measure in self.measures},
                    }
                )
            if self.keep_maps:
                self.maps[(method, check, step)] = shown


def _verdict(
    method: str,
    layer: str,
    rows: Sequence[Mapping[str, Any]],
    measures: Sequence[str],
    threshold: float,
    layers_after: int,
    checks: Sequence[str],
) -> Verdict:
    mine = [r for r in rows if r["method"] == method]
    cascading = None
    if "cascading" in checks and layers_after > 0:
        at_verdict_step = [r for r in mine if r["check"] == "cascading" and r["step"] == layers_after]
        cascading = mean_similarity(at_verdict_step, measures)
    random_logit = mean_similarity([r for r in mine if r["check"] == "random_logit"], measures)
    return Verdict(method, layer, threshold, cascading, random_logit, layers_after)
