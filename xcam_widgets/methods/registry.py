"""Every CAM method by name. Adding a method is adding one function and one entry here."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from . import eigen, gradient, perturbation
from .parts import MapParts


@dataclass(frozen=True)
class Method:
    """A CAM method.

    `compute` is `(A, G) -> MapParts` for a gradient method, or `(ctx, **options) -> MapParts`
    when `uses_model` (it re-runs the network). `scaled` is False where the weights have no
    score scale (a softmax), so conservation is meaningless for them.
    """

    name: str
    title: str
    reference: str
    compute: Callable[..., MapParts]
    uses_model: bool = False
    scaled: bool = True
    class_specific: bool = True

    @property
    def options(self) -> Mapping[str, Any]:
        """The method's own options and their defaults."""
        params = list(inspect.signature(self.compute).parameters.values())[1 if self.uses_model else 2 :]
        return MappingProxyType({p.name: p.default for p in params})


_ALL = (
    Method("cam", "CAM", "Zhou et al., CVPR 2016", perturbation.cam, uses_model=True),
    Method("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017", gradient.gradcam),
    Method("xgradcam", "XGrad-CAM", "Fu et al., BMVC 2020", gradient.xgradcam),
    Method("gradcam++", "Grad-CAM++", "Chattopadhyay et al., WACV 2018", gradient.gradcampp),
    Method("smoothgradcam++", "Smooth Grad-CAM++", "Omeiza et al., 2019", perturbation.smoothgradcampp, uses_model=True),
    Method("hirescam", "HiResCAM", "Draelos & Carin, 2020", gradient.hirescam),
    Method("gradcam-elementwise", "Element-wise Grad-CAM", "pytorch-grad-cam's GradCAMElementWise", gradient.gradcam_elementwise),
    Method("layercam", "LayerCAM", "Jiang et al., TIP 2021", gradient.layercam),
    Method("scorecam", "Score-CAM", "Wang et al., CVPRW 2020", perturbation.scorecam, uses_model=True, scaled=False),
    Method("sscam", "SS-CAM", "Wang et al., 2020", perturbation.sscam, uses_model=True, scaled=False),
    Method("iscam", "IS-CAM", "Naidu et al., 2020", perturbation.iscam, uses_model=True, scaled=False),
    Method("ablationcam", "Ablation-CAM", "Desai & Ramaswamy, WACV 2020", perturbation.ablationcam, uses_model=True),
    Method("eigencam", "Eigen-CAM", "Muhammad & Yeasin, IJCNN 2020", eigen.eigencam, scaled=False, class_specific=False),
    Method("eigengradcam", "EigenGrad-CAM", "pytorch-grad-cam's EigenGradCAM", eigen.eigengradcam, scaled=False),
)

REGISTRY: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ALL})
METHODS: tuple[str, ...] = tuple(REGISTRY)
GRADIENT_METHODS: tuple[str, ...] = tuple(m.name for m in _ALL if not m.uses_model)


def get_method(name: str) -> Method:
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, one of {METHODS}; got {type(name).__name__}")
    key = name.lower().replace("_", "-")
    if key not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(METHODS)}")
    return REGISTRY[key]


def check_options(method: Method, options: Mapping[str, Any]) -> dict[str, Any]:
    """The method's options with defaults filled in; unknown names and bad values are errors."""
    accepted = method.options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) if accepted else "none"
        raise ValueError(f"unknown option {unknown[0]!r} for method {method.name!r}; its options: {listed}")
    merged = {**accepted, **options}
    for name in ("batch_size", "samples"):
        if name in merged and (isinstance(merged[name], bool) or not isinstance(merged[name], int) or merged[name] < 1):
            raise ValueError(f"option {name} must be a positive int, got {merged[name]!r}")
    if "noise" in merged and not (isinstance(merged["noise"], (int, float)) and merged["noise"] >= 0):
        raise ValueError(f"option noise must be a number >= 0, got {merged['noise']!r}")
    return merged
