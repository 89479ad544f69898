"""`xw.discover`: cluster a run's explanations per class and rank the clusters (SpRAy, without masks).

Flow: `selection` (rows of one method × layer, groups, error rows) → `features` (spatial maps or
latent channel shares, recomputed by `latent` where none are stored) → `clustering` per group →
`ranking` → `prototypes`; `Discovery.causal_check` runs `causal` on request. `Discovery` holds only
DataFrames, arrays and plain values, for a widget to draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .causal import HOWS, CausalCheck, run_causal_check
from .clustering import ALGORITHMS, DISPLAYS, cluster_group, display_embedding
from .features import spatial_features, unit_rows
from .images import ImageAccess, image_access, model_source
from .latent import Latents, Progress, compute_latents
from .prototypes import Prototype, latent_picks, make_crops, spatial_picks, top_channels
from .ranking import cluster_terms, ranks
from .selection import group_name, resolve, select_rows

FEATURES: tuple[str, ...] = ("auto", "spatial", "latent", "latent_all", "latent_top")
LATENT_DEFAULT = "latent_top"  # features="latent": F1 1.00 vs 0.54-0.66 for latent_all (bench_strategies.py)
MIN_SIZE = 12
TOO_FEW = "too few rows"
KEYS = ("row", "image", "group", "class", "label", "predicted")  # table columns that are no metric


@dataclass
class Discovery:
    """Strategies found in one method × layer of a run.

    - `assignments`: one row per clustered-or-not row: `row, group, cluster, x, y, score, empty`
      (cluster -1 in a group too small to cluster; `score` is its cluster's; `empty`: no positive evidence);
    - `clusters`: `cluster, group, group_name, size, rank, score`, the ranking terms, and the members'
      mean of each numeric table column (`mean_<column>`);
    - `groups`: `group, group_name, size, status, suggested_k, k, eigenvalues`;
    - per cluster id: `mean_maps` (the members' mean normalised map), `top_channels` (latent only) and
      `prototypes` (crops; `prototype_note` says why there are none);
    - `excluded`: rows left out, by reason (`"error"`, `"too few rows"`)."""

    assignments: pd.DataFrame
    clusters: pd.DataFrame
    groups: pd.DataFrame
    mean_maps: dict[int, np.ndarray]
    top_channels: dict[int, list[int]]
    prototypes: dict[int, list[Prototype]]
    prototype_note: str
    excluded: dict[str, int]
    method: str
    layer: str
    by: str
    features: str
    algorithm: str
    seed: int
    rows: pd.DataFrame = field(repr=False)
    maps: Any = field(repr=False)
    access: ImageAccess = field(repr=False)
    model: Any = field(default=None, repr=False)

    def members(self, cluster: int) -> np.ndarray:
        """The table rows of cluster `cluster`."""
        return self.assignments.loc[self.assignments["cluster"] == cluster, "row"].to_numpy()

    def causal_check(
        self,
        cluster: int,
        model: Any = None,
        how: str = "occlude",
        area: float = 0.1,
        seed: int = 0,
        batch_size: int = 32,
    ) -> CausalCheck:
        """Remove cluster `cluster`'s evidence (how="occlude": each image's hottest `area` of its map;
        "channels": the cluster's top channels zeroed at the layer) from every image of its group, and
        compare the drop in score and accuracy of members and non-members, and against a random region
        of the same shape (the mask shifted) or as many random channels. The model is left unchanged."""
        if how not in HOWS:
            raise ValueError(f"how must be one of {HOWS}, got {how!r}")
        if cluster not in set(self.clusters["cluster"].tolist()):
            raise ValueError(f"no cluster {cluster!r}; clusters are {self.clusters['cluster'].tolist()}")
        channels = self.top_channels.get(cluster, [])
        if how == "channels" and not channels:
            raise ValueError("how='channels' needs a latent discovery (features='latent'); this one is spatial")
        group = int(self.clusters.loc[self.clusters["cluster"] == cluster, "group"].iloc[0])
        assigned = self.assignments.set_index("row")
        rows = self.rows[self.rows["group"] == group].copy()
        rows["member"] = assigned.loc[rows["row"], "cluster"].to_numpy() == cluster
        bundle, source = model_source(model if model is not None else self.model, self.access)
        return run_causal_check(
            rows, self.maps, self.layer, channels, bundle.model, source, how, area, seed, batch_size
        )


def discover(
    source: Any,
    *,
    method: str | None = None,
    layer: str | None = None,
    by: str = "predicted",
    features: str = "auto",
    clusters: int | None = None,
    seed: int = 0,
    min_size: int = MIN_SIZE,
    algorithm: str = "spectral",
    display: str = "auto",
    model: Any = None,
    images: Any = None,
    latents: Latents | None = None,
    progress: Progress | None = None,
) -> Discovery:
    """Cluster the explanations of a run per group (`by`: "predicted", "label" or "all") and rank the
    clusters; see `Discovery`. `features`: "spatial" (the stored maps), "latent" (= `LATENT_DEFAULT`),
    "latent_all" / "latent_top" (channel shares over the whole map / its hottest 10%), or "auto" (latent
    where the run has stored vectors or `latents=` is given, else spatial). Latent vectors are recomputed
    with `model=` where none are stored. `clusters`: k per group (None: the eigengap's suggestion).
    `algorithm`: "spectral", "kmeans" or "agglomerative" (`clustering`); `display`: the `x, y` embedding,
    "tsne", "spectral" or "auto" (t-SNE up to 1,000 rows). `images=`: the run's images where its meta
    cannot reopen them (a ShapesBatch or Dataset). `progress(stage, done, total)`: called as latent vectors
    are computed ("latent") and groups clustered ("clustering")."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if display not in DISPLAYS:
        raise ValueError(f"display must be one of {DISPLAYS}, got {display!r}")
    if clusters is not None and (isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 2):
        raise ValueError(f"clusters must be None (the eigengap's suggestion) or an int >= 2, got {clusters!r}")
    least = clusters + 1 if clusters else 4
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < least:
        raise ValueError(
            f"min_size must be an int >= {least} (a group needs more rows than clusters), got {min_size!r}"
        )
    resolved = resolve(source)
    result = resolved.result
    rows, method, layer, excluded = select_rows(result.table, method, layer, by)
    if rows.empty:
        raise ValueError(f"no rows to cluster for {method} at {layer!r} (left out: {excluded})")
    access = image_access(images, resolved.images, result.meta)
    model = model if model is not None else resolved.model
    categories = result.meta.get("categories") or None
    row_ids = rows["row"].to_numpy()
    maps, empty_maps, grid = spatial_features(result.maps, row_ids.tolist())
    stored = latents if latents is not None else _stored(result, row_ids)
    kind = resolve_features(features, stored, model)
    latent: Latents | None = None
    if kind == "spatial":
        X, empty, evidence = maps, empty_maps, maps
    else:
        if stored is not None:
            latent = stored.take(row_ids)
        else:
            bundle, images_source = model_source(model, access)
            latent = compute_latents(rows, bundle.model, images_source, progress=progress)
        evidence = latent.vectors[kind.split("_")[1]]
        X, empty = unit_rows(evidence)
    groups = cluster_groups(rows, X, evidence, categories, clusters, seed, min_size, algorithm, progress)
    labels, scores, group_rows, cluster_rows = groups
    xy = display_embedding(X, seed, display)
    assignments = pd.DataFrame(
        {
            "row": row_ids,
            "group": rows["group"].to_numpy(),
            "cluster": labels,
            "x": xy[:, 0],
            "y": xy[:, 1],
            "score": scores,
            "empty": empty,
        }
    )
    table = pd.DataFrame(cluster_rows)
    if table.empty:
        table = pd.DataFrame(columns=["cluster", "group", "group_name", "size", "rank", "score"])
    ids = table["cluster"].astype(int).tolist()
    mean_maps = {c: maps[labels == c].mean(0).reshape(grid) for c in ids}
    channels = (
        {c: top_channels(evidence[labels == c].mean(0)) for c in ids} if latent is not None else {c: [] for c in ids}
    )
    prototypes, note = _prototypes(ids, labels, rows, maps, grid, latent, evidence, channels, access, model)
    too_few = int(sum(r["size"] for r in group_rows if r["status"] == TOO_FEW))
    return Discovery(
        assignments, table, pd.DataFrame(group_rows), mean_maps, channels, prototypes, note,
        {**excluded, TOO_FEW: too_few}, method, layer, by, kind, algorithm, seed,
        rows, result.maps, access, model,
    )  # fmt: skip


def cluster_groups(
    rows: pd.DataFrame,
    X: np.ndarray,
    evidence: np.ndarray,
    categories: list[str] | None,
    clusters: int | None,
    seed: int,
    min_size: int,
    algorithm: str,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]:
    """Each group clustered and its clusters ranked -> (cluster id per row, -1 where not clustered;
    its cluster's score; one record per group; one per cluster). Cluster ids run over all groups."""
    labels = np.full(len(rows), -1, dtype=np.int64)
    scores = np.full(len(rows), np.nan)
    group_rows: list[dict[str, Any]] = []
    cluster_rows: list[dict[str, Any]] = []
    energy = rows["energy"].to_numpy(dtype=float) if "energy" in rows else None
    metric_columns = [c for c in rows.select_dtypes(include=["number", "bool"]).columns if c not in KEYS]
    values = sorted(rows["group"].unique().tolist())
    for g_i, g in enumerate(values):
        idx = np.flatnonzero(rows["group"].to_numpy() == g)
        info = {"group": int(g), "group_name": group_name(int(g), categories), "size": len(idx)}
        if len(idx) < min_size:
            group_rows.append({**info, "status": TOO_FEW, "suggested_k": np.nan, "k": np.nan, "eigenvalues": []})
            continue
        found = cluster_group(X[idx], clusters, seed, algorithm)
        group_rows.append(
            {
                **info,
                "status": "clustered",
                "suggested_k": found.suggested,
                "k": found.k,
                "eigenvalues": found.eigenvalues.tolist(),
            }
        )
        terms = cluster_terms(X[idx], evidence[idx], found.labels, None if energy is None else energy[idx])
        sizes = np.bincount(found.labels, minlength=found.k)
        order = ranks(np.array([t["score"] for t in terms]), sizes)
        base = len(cluster_rows)
        for c, t in enumerate(terms):
            member = idx[found.labels == c]
            means = {
                f"mean_{m}": float(np.nanmean(rows[m].to_numpy(dtype=float)[member])) if len(member) else np.nan
                for m in metric_columns
            }
            cluster_rows.append(
                {"cluster": base + c, **info, "size": int(sizes[c]), "rank": int(order[c]), **t, **means}
            )
            scores[member] = t["score"]
        labels[idx] = found.labels + base
        if progress is not None:
            progress("clustering", g_i + 1, len(values))
    return labels, scores, group_rows, cluster_rows


def resolve_features(features: str, stored: Latents | None, model: Any) -> str:
    """The feature kind to use: "spatial", "latent_all" or "latent_top"."""
    if features == "auto":
        return LATENT_DEFAULT if stored is not None else "spatial"
    if features == "latent":
        features = LATENT_DEFAULT
    if features != "spatial" and stored is None and model is None:
        raise ValueError(
            "this run stores no latent vectors for these rows (runs made before the runner stored them, runs "
            "with latents=False, and methods without channel shares have none). To get them, rerun with "
            f"overwrite=True, or pass model=<the run's model> (xw.discover(source, features={features!r}, "
            "model=...) runs it once over the run's images); or use features='spatial'"
        )
    return features


def _stored(result: Any, rows: np.ndarray) -> Latents | None:
    """The run's stored latents of `rows` (`EvaluationResult.latents`), or None where it has none for them."""
    store = getattr(result, "latents", None)
    if store is None or not store.covers(rows.tolist()):
        return None
    return store.take(rows)


def _prototypes(
    ids: list[int],
    labels: np.ndarray,
    rows: pd.DataFrame,
    maps: np.ndarray,
    grid: tuple[int, int],
    latent: Latents | None,
    evidence: np.ndarray,
    channels: dict[int, list[int]],
    access: ImageAccess,
    model: Any,
) -> tuple[dict[int, list[Prototype]], str]:
    """Crops per cluster, or none and the reason."""
    if access.given is None:
        return {c: [] for c in ids}, access.note
    try:
        display = access.source(model_source(model, access)[0].preprocess if model is not None else None)
        out = {}
        row_ids, images = rows["row"].to_numpy(), rows["image"].tolist()
        for c in ids:
            m = np.flatnonzero(labels == c)
            chosen_images = [images[i] for i in m]
            if latent is None:
                picks = spatial_picks(row_ids[m], chosen_images, maps[m], grid)
            else:
                picks = latent_picks(row_ids[m], chosen_images, evidence[m], latent.peaks[m], latent.grid, channels[c])
            out[c] = make_crops(display.image_for_display, picks, grid if latent is None else latent.grid)
        return out, ""
    except Exception as err:  # any failure to reopen an image: no crops, and why
        return {c: [] for c in ids}, f"prototype crops unavailable: {type(err).__name__}: {err}"


__all__ = ["FEATURES", "LATENT_DEFAULT", "MIN_SIZE", "TOO_FEW", "Discovery", "discover", "resolve_features"]
