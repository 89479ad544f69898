"""Sanity checks for CAM methods: cascading and independent model-parameter randomisation
(Adebayo et al., NeurIPS 2018) and the random-logit test (Sixt et al., ICML 2020)."""

from .checks import CHECKS, DEFAULT_METHODS, SIMILARITIES, STEPS, sanity_check
from .result import THRESHOLD, SanityResult, Verdict
from .similarity import spearman, ssim

__all__ = [
    "CHECKS",
    "DEFAULT_METHODS",
    "SIMILARITIES",
    "STEPS",
    "THRESHOLD",
    "SanityResult",
    "Verdict",
    "sanity_check",
    "spearman",
    "ssim",
]
