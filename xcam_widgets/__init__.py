"""xcam-widgets: interactive, axiom-checked class activation maps for PyTorch CNNs."""
from .capture import capture
from .diagnostics import Diagnosis, diagnose
from . import metrics
from .evaluate import EvaluationResult, evaluate
from .metrics import average_drop_increase, deletion_auc, energy_in_mask, insertion_auc, pointing_game
from .discovery import LayerInfo, candidate_layers, default_layer
from .explain import Explanation, explain
from .images import SAMPLE_IMAGES, load_image, sample_image
from .maps import fuse_maps
from .methods import METHODS, REGISTRY
from .model_state import hook_counts
from .reshape import token_grid
from .session import Session
from .widgets import Explorer, layer_sweep, method_grid
from .models import ModelBundle, available_models, load_checkpoint, load_model

__all__ = [
    "METHODS", "REGISTRY", "EvaluationResult", "average_drop_increase", "deletion_auc", "energy_in_mask", "evaluate", "insertion_auc", "metrics", "pointing_game", "Explorer", "Session", "SAMPLE_IMAGES", "Diagnosis", "Explanation", "LayerInfo", "candidate_layers", "default_layer", "diagnose", "ModelBundle", "available_models", "capture",
    "explain", "fuse_maps", "hook_counts", "load_image", "layer_sweep", "load_checkpoint", "load_model", "method_grid", "sample_image", "token_grid",
]
__version__ = "0.1.0"
