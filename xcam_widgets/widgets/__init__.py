"""ipywidgets front end: the Explorer, the Gallery, layer sweeps and method grids, and their Plotly figure builders."""

from .explorer import Explorer
from .gallery import Gallery
from .grids import layer_sweep, method_grid

__all__ = ["Explorer", "Gallery", "layer_sweep", "method_grid"]
