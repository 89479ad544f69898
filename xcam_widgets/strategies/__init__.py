"""Strategies: find where the model is right for the wrong reasons, without masks (SpRAy on CAMs).

`discover(source, ...)` -> `Discovery`: a run's explanations clustered per class, the clusters ranked
by how unusual their strategy is, with mean maps, top channels, prototype crops and, on request, a
causal check. Modules, one job each:

| module | job |
|---|---|
| `selection` | the source (EvaluationResult, run path, Gallery), one method × layer, groups, error rows |
| `images` | reopening the run's images and model (crops, latent vectors, causal check) |
| `features` | spatial features (stored maps, ReLU, common grid, sum 1) and `channel_relevance` (XGrad-CAM p_k) |
| `latent` | the rows' channel relevance vectors recomputed with the model (`compute_latents`) |
| `clustering` | kNN affinity, Laplacian eigengap, spectral embedding + KMeans, t-SNE (scikit-learn) |
| `ranking` | the ranking rule: distinctness, concentration, smallness, low energy |
| `prototypes` | crops of member images where the cluster's evidence is most active |
| `causal` | the causal check: occluded regions or zeroed channels against random controls |
| `discovery` | `discover` and `Discovery`, which ties the steps together |

scikit-learn is a core dependency.
"""

from __future__ import annotations

from .causal import CausalCheck
from .discovery import FEATURES, LATENT_DEFAULT, Discovery, discover
from .features import channel_relevance
from .latent import Latents, compute_latents
from .prototypes import Prototype

__all__ = [
    "FEATURES",
    "LATENT_DEFAULT",
    "CausalCheck",
    "Discovery",
    "Latents",
    "Prototype",
    "channel_relevance",
    "compute_latents",
    "discover",
]
