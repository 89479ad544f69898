"""The dataset runner: CAM methods × layers over image files, the shapes benchmark or a torch Dataset.

`evaluate(model, images, methods, layers, ...)` -> `EvaluationResult(table, summary, maps, meta,
complete, latents)`, which unpacks as `(table, summary)`. Modules: `sources` (images by position),
`batch` (one batch's rows: the pure function both engines map), `table` (columns, summary, paths),
`maps` (`MapStore`), `latents` (`LatentStore`: per-row channel relevance vectors), `parts`
(per-batch files: resuming), `fingerprint` (what a run depends on, by content), `lock` (one run per
`out`), `result` (files, `open_result`), `local` and `ray` (the engines), `runner` (`evaluate`).

The table: one row per image × method × layer, sorted by `row`:

| column | meaning |
|---|---|
| row | the key, (image position · methods + method index) · layers + layer index; a complete table's index |
| image | the image id: the index (shapes, Dataset), the path relative to the folder, or the file as listed |
| method, layer | the method's registry name and the layer's dotted name |
| class, class_name | the class the map explains (`target`) and its name |
| score | S_c, the class logit |
| label | the true class (shapes, a Dataset's label), -1 where unknown |
| predicted, confidence | the top-1 class and its softmax probability |
| correct | label == predicted; NaN where the label is unknown |
| conservation_error, sensitivity_error, sensitivity_r | `xw.diagnose` ("diagnostics"); NaN where undefined |
| average_drop, increase | Average Drop's term and the Increase-in-Confidence indicator |
| deletion, insertion | RISE's AUCs |
| pointing, energy | the pointing game and the energy in the class's mask (shapes only) |
| mprt | on request: Spearman ρ of the raw map and the map once the layers after the CAM layer are randomised |
| random_logit | on request: mean Spearman ρ of the raw map and the maps of 3 random other classes |
| error | "" when fine; else why the image could not be read, or why its label is not one of the model's classes |

A row with an `error` has no values and class -1.

The summary (`table.summarize`): n, mean and a 95% interval per method × layer × value column,
`error` being the share of failed rows.

Contract for the Gallery and other consumers:

- `maps[row]`: float16 `[h, w]`, the raw map (no ReLU) at the layer's resolution, adaptive-average
  pooled to at most 32×32 (`maps.MapStore`: `__getitem__`, `__len__`, `save`, `load`); error rows
  have none.
- `latents` (`latents.LatentStore`, None where the run stored none): per row of a gradient method
  (`latents.LATENT_METHODS`: gradcam, xgradcam, gradcam++, hirescam, gradcam-elementwise,
  layercam), XGrad-CAM's channel shares over the whole map and over its hottest 10% (float16 `[K]`
  each) and each channel's peak on the layer's grid; `latents.take(rows)` -> `Latents` for rows of
  one layer (`xw.discover` clusters them). Error rows, other methods and runs made before the
  runner stored them (or with `latents=False`) have none. Cost: one forward and backward pass per
  batch, and 2 · K · 2 bytes + K peaks per row (384 B at K = 64, 7.5 kB at K = 1,280).
- Files with `out="results.csv"`: `results.csv` (read it back with `table.read_table`),
  `results.summary.csv`, `results.maps.npz`, `results.latents.npz` (where there are latents),
  `results.meta.json` (keys: format, images — the spec for `open_images`, or None for a
  ShapesBatch / Dataset —, images_kind, images_count, model, methods, layers, target, categories,
  columns, settings, notes — e.g. why diagnostics are left out on token layers —, and fingerprint:
  the weights, preprocess and images by content, which a resumed run checks) and `results.parts/`,
  which holds the same for the batches written so far (also of a Ray run, or one that stopped):
  `manifest.json`, `batch-*.npz` (rows, maps and latents), `run.lock` (present while a run writes
  `out`: a second run on it is refused) and `batch-*.npz.damaged` (a damaged part moved aside by a
  resumed run, which recomputed its batch).
- `open_result(path)`: reopens either without computing (`complete` False for a partial run;
  `latents` as stored).
- `evaluate(..., on_rows=f, stop=event)`: `f(rows, maps)` gets the rows (dicts, as in the table)
  and their maps (row -> array), first of what `out`'s parts already hold, then after each
  batch, in the thread that runs `evaluate`. Once `event` is set, the run returns after the
  current batch. Each batch holds the model's lock (`evaluation_mode`) and releases it, so a
  widget sharing the model runs between batches.
- `open_images(images, preprocess)` -> a `Source`: `ids` (by position), `position(id)`,
  `image(id)` (PIL RGB, before preprocessing) and `image_for_display(id)` (uint8 `[H, W, 3]` in
  the model input's frame, the frame of the maps). A Dataset gives `(image, label)` items: a PIL
  image or raw pixels (uint8, or float in [0, 1]; not normalised) and an int label, -1 or None
  if unknown.
"""

from __future__ import annotations

from .arguments import ENGINES
from .batch import BatchResult, evaluate_batch
from .latents import Latents, LatentStore
from .maps import MapStore
from .parts import OnRows
from .result import EvaluationResult, open_result
from .runner import evaluate
from .sources import DatasetSource, FolderSource, ImageBatch, ShapesSource, Source, open_images
from .table import COLUMNS, METRICS, output_paths, read_table, run_paths, summarize, table_columns, wilson_interval

__all__ = [
    "COLUMNS",
    "ENGINES",
    "METRICS",
    "BatchResult",
    "DatasetSource",
    "EvaluationResult",
    "FolderSource",
    "ImageBatch",
    "LatentStore",
    "Latents",
    "MapStore",
    "OnRows",
    "ShapesSource",
    "Source",
    "evaluate",
    "evaluate_batch",
    "open_images",
    "open_result",
    "output_paths",
    "read_table",
    "run_paths",
    "summarize",
    "table_columns",
    "wilson_interval",
]
