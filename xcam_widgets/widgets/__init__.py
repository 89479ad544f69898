"""ipywidgets front end: the Explorer and its Plotly figure builders."""
from .explorer import Explorer

__all__ = ["Explorer"]
