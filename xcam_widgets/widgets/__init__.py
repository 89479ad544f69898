"""ipywidgets front end: the Explorer, layer sweeps and method grids, and their Plotly figure builders."""
from .explorer import Explorer
from .grids import layer_sweep, method_grid

__all__ = ["Explorer", "layer_sweep", "method_grid"]
