"""CAM methods: pure gradient functions, model-aware perturbation methods, and their registry."""
from .registry import GRADIENT_METHODS, METHODS, REGISTRY, Method, check_options, get_method

__all__ = ["GRADIENT_METHODS", "METHODS", "REGISTRY", "Method", "check_options", "get_method"]
