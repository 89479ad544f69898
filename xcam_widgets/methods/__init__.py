"""CAM methods: pure gradient functions, methods that need the model, and their registry."""

from .registry import GRADIENT_METHODS, METHODS, OPTION_CHECKS, REGISTRY, Method, check_options, get_method

__all__ = ["GRADIENT_METHODS", "METHODS", "OPTION_CHECKS", "REGISTRY", "Method", "check_options", "get_method"]
