"""The model zoo: load a classifier with its preprocessing and class names by name; load checkpoints safely."""

from xcam_widgets.models.checkpoint import load_checkpoint
from xcam_widgets.models.zoo import ModelBundle, available_models, load_model

__all__ = ["ModelBundle", "available_models", "load_checkpoint", "load_model"]
