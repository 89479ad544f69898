"""Every CAM method by name. Adding a method is adding one function and one entry here."""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..checks import finite_non_negative, positive_int
from . import eigen, gradient, masked, rerun
from .context import MethodContext
from .parts import MapParts


@dataclass(frozen=True)
class Method:
    """A CAM method; call it with `run`.

    `compute` is `(A, G) -> MapParts` for a gradient method, or `(ctx, **options) -> MapParts`
    when `uses_model` (it needs the network itself: re-runs it, or reads its head). `scaled` is
    False where the weights have no score scale (a softmax), so conservation is meaningless for
    them. `class_specific` is False for a method that ignores the class (Eigen-CAM).

    Options are the keyword parameters of `compute` after the context: their names, defaults
    (`options`) and annotated types (`option_types`) are the one source for the API's defaults,
    `check_options` and the Explorer's controls. Each one has a default and a checker in
    `OPTION_CHECKS`.
    """

    name: str
    title: str
    reference: str
    compute: Callable[..., MapParts]
    uses_model: bool = False
    scaled: bool = True
    class_specific: bool = True

    def run(self, ctx: MethodContext, **options: Any) -> MapParts:
        """The method's contributions (and weights) at `ctx.layer`, with checked `options` (see
        `check_options`). Call inside `evaluation_mode(ctx.model)`."""
        if self.uses_model:
            return self.compute(ctx, **options)
        return self.compute(ctx.A, ctx.G)

    @property
    def options(self) -> Mapping[str, Any]:
        """Option name → default, in signature order."""
        return MappingProxyType({p.name: p.default for p in self._option_parameters()})

    @property
    def option_types(self) -> Mapping[str, Any]:
        """Option name → annotated type: `int`, `float` or `int | None` (None: the option is off)."""
        hints = typing.get_type_hints(self.compute)
        return MappingProxyType({p.name: hints[p.name] for p in self._option_parameters()})

    def _option_parameters(self) -> list[inspect.Parameter]:
        return list(inspect.signature(self.compute).parameters.values())[1 if self.uses_model else 2 :]


_ALL = (
    Method("cam", "CAM", "Zhou et al., CVPR 2016", rerun.cam, uses_model=True),
    Method("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017", gradient.gradcam),
    Method("xgradcam", "XGrad-CAM", "Fu et al., BMVC 2020", gradient.xgradcam),
    Method("gradcam++", "Grad-CAM++", "Chattopadhyay et al., WACV 2018", gradient.gradcampp),
    Method("smoothgradcam++", "Smooth Grad-CAM++", "Omeiza et al., 2019", rerun.smoothgradcampp, uses_model=True),
    Method("hirescam", "HiResCAM", "Draelos & Carin, 2020", gradient.hirescam),
    Method(
        "gradcam-elementwise",
        "Element-wise Grad-CAM",
        "pytorch-grad-cam's GradCAMElementWise",
        gradient.gradcam_elementwise,
    ),
    Method("layercam", "LayerCAM", "Jiang et al., TIP 2021", gradient.layercam),
    Method("scorecam", "Score-CAM", "Wang et al., CVPRW 2020", masked.scorecam, uses_model=True, scaled=False),
    Method("sscam", "SS-CAM", "Wang et al., 2020", masked.sscam, uses_model=True, scaled=False),
    Method("iscam", "IS-CAM", "Naidu et al., 2020", masked.iscam, uses_model=True, scaled=False),
    Method("ablationcam", "Ablation-CAM", "Desai & Ramaswamy, WACV 2020", rerun.ablationcam, uses_model=True),
    Method(
        "eigencam", "Eigen-CAM", "Muhammad & Yeasin, IJCNN 2020", eigen.eigencam, scaled=False, class_specific=False
    ),
    Method("eigengradcam", "EigenGrad-CAM", "pytorch-grad-cam's EigenGradCAM", eigen.eigengradcam, scaled=False),
)

REGISTRY: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ALL})
METHODS: tuple[str, ...] = tuple(REGISTRY)
GRADIENT_METHODS: tuple[str, ...] = tuple(m.name for m in _ALL if not m.uses_model)


def _seed(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (it seeds the noise), got {value!r}")
    return value


def _optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


# Option name → its check, which returns the value to use or raises a ValueError naming the option.
OPTION_CHECKS: Mapping[str, Callable[[str, Any], Any]] = MappingProxyType(
    {
        "batch_size": positive_int,  # inputs per forward pass
        "samples": positive_int,  # noisy copies (SS-CAM, Smooth Grad-CAM++) or integration steps (IS-CAM)
        "noise": finite_non_negative,  # σ as a fraction of each image's value range
        "seed": _seed,  # seeds the noise of each sample, see methods/noise.py
        "top_channels": _optional_positive_int,  # Score-CAM family: score only N channels, see methods/masked.py
    }
)


def get_method(name: str) -> Method:
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, one of {METHODS}; got {type(name).__name__}")
    key = name.lower().replace("_", "-")
    if key not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(METHODS)}")
    return REGISTRY[key]


def check_options(method: Method, options: Mapping[str, Any]) -> dict[str, Any]:
    """The method's options with defaults filled in and values checked; unknown names are errors."""
    accepted = method.options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) if accepted else "none"
        raise ValueError(f"unknown option {unknown[0]!r} for method {method.name!r}; its options: {listed}")
    return {name: OPTION_CHECKS[name](name, options.get(name, default)) for name, default in accepted.items()}
