"""Two models on the same images: where did the evidence move?

`compare(model_a, model_b, images, ...)` -> `Comparison(table, run_a, run_b, ...)`: both models go
through the dataset runner (`xw.evaluate`: resume, error rows, parts, Ray), and their tables are
joined on `row` (the image position × method) with a similarity per row. Modules: `similarity`
(the measures on a common grid, and the measurement that chose the default), `arguments` (layers,
target, class counts), `targeted` (model B for model A's classes, image by image, where the
runner's single target cannot say it), `table` (the joined table's columns), `result`
(`Comparison`), `runner` (`compare`). No widgets here: the Gallery's comparison mode and the
two-model Explorer draw from a `Comparison`.
"""

from __future__ import annotations

from .result import Comparison
from .runner import compare
from .similarity import DEFAULT_MEASURE, MEASURES, TOP_PERCENT, similarities

__all__ = ["DEFAULT_MEASURE", "MEASURES", "TOP_PERCENT", "Comparison", "compare", "similarities"]
