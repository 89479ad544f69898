"""The model zoo: load a classifier with its preprocessing and class names by name."""

from xcam_widgets.models.zoo import ModelBundle, available_models, load_model

__all__ = ["ModelBundle", "available_models", "load_model"]
