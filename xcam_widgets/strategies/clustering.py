"""Clustering one group's features with scikit-learn, as SpRAy / CoRelAy do, and a 2-D display embedding.

- affinity: the symmetric kNN graph (`kneighbors_graph`, connectivity; i ~ j when either is among the
  other's nearest, Euclidean; min(32, max(5, n // 4)) neighbours in a group of n rows);
- spectrum: the eigenvalues λ_1 ≤ λ_2 ≤ … of the graph's normalised Laplacian (SciPy); the eigengap
  suggests k = argmax_{2 ≤ k ≤ max_k} (λ_{k+1} − λ_k): k well-separated groups give k eigenvalues near 0;
- "spectral" (default): `spectral_embedding` of the graph, then seeded `KMeans` on its first k
  coordinates; "kmeans": seeded `KMeans` on the features themselves; "agglomerative": Ward linkage
  under the kNN connectivity;
- display: seeded t-SNE (`TSNE`, PCA start) of all rows together, after PCA to at most 32 dimensions;
  beyond `TSNE_ROWS` rows (or on request), the 2-D spectral embedding of their kNN graph instead.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csgraph
from scipy.sparse.linalg import eigsh
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, spectral_embedding
from sklearn.neighbors import kneighbors_graph
from threadpoolctl import threadpool_limits  # installed with scikit-learn

ALGORITHMS: tuple[str, ...] = ("spectral", "kmeans", "agglomerative")
NEIGHBORS = 32  # the most neighbours (CoRelAy's examples); a group of n rows uses min(32, max(5, n // 4))
MAX_K = 8  # the largest k the eigengap may suggest
DISPLAYS: tuple[str, ...] = ("auto", "tsne", "spectral")
# "auto" display: t-SNE up to this many rows (2,000 rows took 32 s, 10,000 rows 168 s, on the loaded 2-core CPU)
TSNE_ROWS = 1000
SERIAL_BELOW = 2000  # rows: fewer run on one thread, where thread hand-offs cost more than the maths


@dataclass
class GroupClusters:
    """One group's clustering: `labels` `[n]` (0..k-1), `k`, the suggested k and the Laplacian's
    smallest eigenvalues (`eigenvalues`, ascending) it came from."""

    labels: np.ndarray
    k: int
    suggested: int
    eigenvalues: np.ndarray


def threads_for(rows: int) -> AbstractContextManager:
    """One BLAS / OpenMP thread for small inputs (on a loaded machine, idle spinning threads of
    several OpenMP runtimes slow a tiny job tenfold); the libraries' own choice otherwise."""
    return threadpool_limits(limits=1) if rows < SERIAL_BELOW else nullcontext()


def neighbours_for(rows: int, most: int = NEIGHBORS) -> int:
    """min(most, max(5, rows // 4)), below `rows`: with 10 neighbours, groups of 100 rows split into 6-8 pure
    fragments of one strategy (bench_strategies.py); a quarter of a small group keeps its graph sparse."""
    return max(1, min(most, max(5, rows // 4), rows - 1))


def affinity(features: np.ndarray, neighbors: int = NEIGHBORS):  # -> scipy.sparse matrix
    """The symmetric kNN connectivity graph (0/1, no self loops), `neighbours_for(n, neighbors)` each."""
    n = len(features)
    graph = kneighbors_graph(
        features, n_neighbors=neighbours_for(n, neighbors), mode="connectivity", include_self=False
    )
    return graph.maximum(graph.T)


def laplacian_spectrum(graph, count: int) -> np.ndarray:
    """The `count` smallest eigenvalues of the normalised Laplacian I − D^-½ W D^-½, ascending."""
    n = graph.shape[0]
    laplacian = csgraph.laplacian(graph.astype(np.float64), normed=True)
    count = min(count, n)
    if n <= 200 or count >= n - 1:  # small: the dense solver is exact and quick
        values = np.linalg.eigvalsh(laplacian.toarray())[:count]
    else:  # the largest of 2I − L are the smallest of L, which Lanczos finds fastest
        shifted = laplacian * -1.0
        shifted.setdiag(shifted.diagonal() + 2.0)
        values = np.sort(2.0 - eigsh(shifted, k=count, which="LA", return_eigenvectors=False, tol=1e-6))
    return np.clip(values, 0.0, 2.0)


def eigengap_k(eigenvalues: np.ndarray, max_k: int = MAX_K) -> int:
    """k = argmax over 2 ≤ k ≤ max_k of λ_{k+1} − λ_k (λ ascending, λ_1 = λ[0])."""
    top = min(max_k, len(eigenvalues) - 1)
    if top < 2:
        return 2
    gaps = np.diff(eigenvalues[: top + 1])  # gaps[k - 1] = λ_{k+1} − λ_k
    return int(np.argmax(gaps[1:top]) + 2)


def cluster_group(
    features: np.ndarray, k: int | None = None, seed: int = 0, algorithm: str = "spectral", neighbors: int = NEIGHBORS
) -> GroupClusters:
    """Cluster `features` `[n, d]` into k groups (None: the eigengap's suggestion)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    with threads_for(len(features)):
        return _cluster(features, k, seed, algorithm, neighbors)


def _cluster(features: np.ndarray, k: int | None, seed: int, algorithm: str, neighbors: int) -> GroupClusters:
    n = len(features)
    graph = affinity(features, neighbors)
    eigenvalues = laplacian_spectrum(graph, MAX_K + 2)
    suggested = eigengap_k(eigenvalues)
    k = suggested if k is None else k
    if not 2 <= k <= n - 1:
        raise ValueError(f"clusters={k} does not fit a group of {n} rows (need 2 <= clusters < rows)")
    if algorithm == "spectral":
        with warnings.catch_warnings():  # a graph in several pieces is what clusters look like
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
            embedding = spectral_embedding(graph, n_components=k, random_state=seed, drop_first=False)
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embedding)
    elif algorithm == "kmeans":
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features)
    else:
        labels = AgglomerativeClustering(n_clusters=k, connectivity=graph, linkage="ward").fit_predict(features)
    # KMeans can leave a cluster empty (duplicate points): number the clusters found 0..k'-1, k' their count
    found, labels = np.unique(np.asarray(labels, dtype=np.int64), return_inverse=True)
    return GroupClusters(labels.astype(np.int64), len(found), suggested, eigenvalues)


def display_embedding(features: np.ndarray, seed: int = 0, method: str = "auto") -> np.ndarray:
    """`[n, 2]` coordinates for display: seeded t-SNE (perplexity min(30, (n − 1) / 3), PCA start, after
    PCA to at most 32 dimensions) or the 2-D spectral embedding of the kNN graph ("auto": t-SNE up to
    `TSNE_ROWS` rows; beyond, t-SNE takes minutes on a shared 2-core machine). Fewer than 4 rows lie on a line."""
    if method not in DISPLAYS:
        raise ValueError(f"display must be one of {DISPLAYS}, got {method!r}")
    n = len(features)
    if n < 4:
        return np.column_stack([np.arange(n, dtype=np.float64), np.zeros(n)])
    if method == "spectral" or (method == "auto" and n > TSNE_ROWS):
        with threads_for(n), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
            embedding = spectral_embedding(affinity(features), n_components=2, random_state=seed, drop_first=True)
        return np.asarray(embedding, dtype=np.float64)
    dims = min(32, features.shape[1], n)
    with threads_for(n):
        reduced = (
            PCA(n_components=dims, random_state=seed).fit_transform(features) if features.shape[1] > dims else features
        )
        tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
        return np.asarray(tsne.fit_transform(np.asarray(reduced, dtype=np.float32)), dtype=np.float64)


__all__ = [
    "ALGORITHMS",
    "MAX_K",
    "NEIGHBORS",
    "GroupClusters",
    "affinity",
    "cluster_group",
    "display_embedding",
    "eigengap_k",
    "laplacian_spectrum",
]
