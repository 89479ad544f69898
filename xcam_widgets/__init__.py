"""xcam-widgets: interactive, axiom-checked class activation maps for PyTorch CNNs.

The widgets (`Explorer`, `Gallery`, `layer_sweep`, `method_grid`) and `discover` / `Discovery` load on first
use (PEP 562), so the engine, the runner and the CLI never import ipywidgets, Plotly or scikit-learn.
`compare` is imported at once: it shares its name with its package `xcam_widgets.compare`, and an attribute
loaded on first use would be replaced by that package whenever one of its modules is imported first."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from . import metrics, targets
from .capture import capture
from .compare import Comparison, compare
from .diagnostics import Diagnosis, diagnose
from .discovery import LayerInfo, candidate_layers, default_layer
from .evaluation import EvaluationResult, evaluate
from .explain import Explanation, explain
from .images import SAMPLE_IMAGES, load_image, sample_image
from .maps import fuse_maps
from .methods import METHODS, REGISTRY
from .metrics import average_drop_increase, deletion_auc, energy_in_mask, insertion_auc, pointing_game
from .model_state import hook_counts, model_lock
from .models import ModelBundle, available_models, load_checkpoint, load_model
from .reshape import token_grid
from .sanity import SanityResult, sanity_check
from .session import Session

# Public name -> the module that defines it, imported on first access.
_LAZY = {
    "Explorer": ".widgets",
    "Gallery": ".widgets",
    "layer_sweep": ".widgets",
    "method_grid": ".widgets",
    "Discovery": ".strategies",  # scikit-learn loads only when discovery is used
    "discover": ".strategies",
}

__all__ = [
    "METHODS",
    "REGISTRY",
    "Comparison",
    "EvaluationResult",
    "compare",
    "average_drop_increase",
    "deletion_auc",
    "energy_in_mask",
    "evaluate",
    "insertion_auc",
    "metrics",
    "pointing_game",
    "Session",
    "SAMPLE_IMAGES",
    "Diagnosis",
    "Explanation",
    "LayerInfo",
    "candidate_layers",
    "default_layer",
    "diagnose",
    "ModelBundle",
    "available_models",
    "capture",
    "explain",
    "fuse_maps",
    "hook_counts",
    "SanityResult",
    "sanity_check",
    "load_image",
    "load_checkpoint",
    "load_model",
    "model_lock",
    "sample_image",
    "targets",
    "token_grid",
    *_LAZY,
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xcam_widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
