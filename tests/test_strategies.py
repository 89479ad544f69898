"""Strategy discovery (`xw.discover`) on hand-made runs: features, clustering, ranking, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import xcam_widgets as xw
from xcam_widgets.evaluation import EvaluationResult, MapStore
from xcam_widgets.strategies import channel_relevance
from xcam_widgets.strategies.clustering import cluster_group
from xcam_widgets.strategies.discovery import TOO_FEW
from xcam_widgets.strategies.images import NO_IMAGES
from xcam_widgets.strategies.ranking import concentration, ranks, separation


def test_channel_relevance_matches_hand_computation() -> None:
    # channel 0: A = [[2, 0], [0, 1]], G = I -> α0 = (2 + 1) / 3 = 1, p0 = 3
    # channel 1: A = 1, G = -0.5 -> α1 = -2 / 4 = -0.5, p1 = -2
    # M = [[1.5, -0.5], [-0.5, 0.5]]; its hottest pixel (top 25%) is (0, 0): p_top = [2, -0.5]
    A = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    G = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[-0.5, -0.5], [-0.5, -0.5]]]])
    assert channel_relevance(A, G, "all").tolist() == [[3.0, -2.0]]
    assert channel_relevance(A, G, "top", fraction=0.25).tolist() == [[2.0, -0.5]]


def test_channel_relevance_conserves_the_first_order_score() -> None:
    """Σ_k p_k = Σ_xy Σ_k A_k G_k (XGrad-CAM's conservation), and the top variant sums M over its region."""
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 5, 4, 4, generator=gen, dtype=torch.float64).clamp(min=0)
    G = torch.randn(3, 5, 4, 4, generator=gen, dtype=torch.float64)
    p = channel_relevance(A, G, "all").double().numpy()
    np.testing.assert_allclose(p.sum(1), (A * G).sum(dim=(1, 2, 3)).numpy(), rtol=1e-5)
    a, g = A.numpy(), G.numpy()
    alpha = (a * g).sum((2, 3)) / a.sum((2, 3))
    M = (alpha[:, :, None, None] * a).sum(1)
    top = channel_relevance(A, G, "top", fraction=0.25).double().numpy()
    for b in range(3):
        hottest = np.sort(M[b].ravel())[::-1][:4]  # 25% of 16 pixels
        assert top[b].sum() == pytest.approx(hottest.sum(), rel=1e-5)


def test_channel_relevance_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="region must be one of"):
        channel_relevance(torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2), "middle")
    with pytest.raises(ValueError, match=r"\[B, K, h, w\]"):
        channel_relevance(torch.ones(1, 2, 2), torch.ones(1, 2, 2))


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three planted, well separated clusters of 20, 15 and 10 points in 6-D."""
    rng = np.random.default_rng(seed)
    centres = np.eye(6)[:3] * 5
    truth = np.repeat([0, 1, 2], [20, 15, 10])
    return centres[truth] + rng.normal(0, 0.3, (len(truth), 6)), truth


@pytest.mark.parametrize("algorithm", ["spectral", "kmeans", "agglomerative"])
def test_clusters_match_planted_truth_and_eigengap_suggests_k(algorithm: str) -> None:
    features, truth = blobs()
    found = cluster_group(features, None, seed=0, algorithm=algorithm)
    assert found.suggested == 3
    assert adjusted_rand_score(truth, found.labels) == 1.0
    again = cluster_group(features, None, seed=0, algorithm=algorithm)
    assert found.labels.tolist() == again.labels.tolist()


def planted_run(errors: int = 2, small: int = 3) -> tuple[EvaluationResult, dict[int, int]]:
    """Class 0: 16 rows hot in the top-left corner (a "cue") and 24 hot in the centre; class 1: `small`
    rows; `errors` failed rows. Returns the run and each good row's planted strategy (1 = corner)."""
    rng = np.random.default_rng(1)
    records, maps, strategy = [], {}, {}
    for i in range(40 + small + errors):
        row = {"row": i, "image": i, "method": "xgradcam", "layer": "features.block4", "class": 0, "label": 0,
               "predicted": 0, "score": 1.0, "correct": 1.0, "energy": 0.5, "error": ""}  # fmt: skip
        m = rng.uniform(0, 0.05, (8, 8))
        if i < 16:
            m[:2, :2] += 1.0
            row["energy"] = 0.1
        elif i < 40:
            m[3:5, 3:5] += 1.0
        else:
            row.update({"class": 1, "label": 1, "predicted": 1})
            m[6:, 6:] += 1.0
        if i >= 40 + small:
            row.update({"error": "OSError: cannot read", "class": -1, "predicted": -1, "score": np.nan})
        else:
            maps[i] = m.astype(np.float16)
            strategy[i] = int(i < 16)
        records.append(row)
    table = pd.DataFrame(records)
    return EvaluationResult(table, pd.DataFrame(), MapStore(maps), {"categories": ["a", "b"]}), strategy


def test_discover_finds_the_planted_strategies_and_ranks_the_cue_first() -> None:
    result, strategy = planted_run()
    d = xw.discover(result)
    assert d.features == "spatial" and d.method == "xgradcam" and d.layer == "features.block4"
    a = d.assignments
    assert list(a.columns[:5]) == ["row", "group", "cluster", "x", "y"]
    clustered = a[a["group"] == 0]
    truth = [strategy[r] for r in clustered["row"]]
    assert adjusted_rand_score(truth, clustered["cluster"]) == 1.0
    groups = d.groups.set_index("group")
    assert groups.loc[0, "suggested_k"] == 2 and groups.loc[0, "status"] == "clustered"
    cue = int(clustered.loc[clustered["row"] == 0, "cluster"].iloc[0])
    row = d.clusters.set_index("cluster").loc[cue]
    assert row["rank"] == 1 and row["size"] == 16
    assert row["mean_energy"] == pytest.approx(0.1)  # the members' mean of the table's energy
    mean = d.mean_maps[cue]  # 4 hot pixels of 1 over 64 of 0.025 on average: about 4 / 5.6 of the mass
    assert (
        mean.shape == (8, 8) and mean[:2, :2].sum() == pytest.approx(0.71, abs=0.03) and mean.sum() == pytest.approx(1)
    )
    assert d.top_channels[cue] == []
    assert d.prototypes[cue] == [] and d.prototype_note == NO_IMAGES


def test_error_rows_are_excluded_and_counted_and_small_groups_are_not_clustered() -> None:
    result, _ = planted_run(errors=2, small=3)
    d = xw.discover(result)
    assert d.excluded == {"error": 2, TOO_FEW: 3}
    assert xw.discover(result, by="label").excluded == {"error": 2, "no label": 0, TOO_FEW: 3}
    assert set(d.assignments["row"]) == set(range(43))
    small = d.groups.set_index("group").loc[1]
    assert small["status"] == TOO_FEW and small["size"] == 3
    assert (d.assignments.loc[d.assignments["group"] == 1, "cluster"] == -1).all()
    assert 1 not in set(d.clusters["group"])


def test_assignments_are_deterministic_for_a_seed() -> None:
    result, _ = planted_run()
    first, second = xw.discover(result, seed=3), xw.discover(result, seed=3)
    pd.testing.assert_frame_equal(first.assignments, second.assignments)
    pd.testing.assert_frame_equal(first.clusters, second.clusters)


def test_fixed_number_of_clusters_and_grouping_by_all() -> None:
    result, _ = planted_run(errors=0, small=12)
    d = xw.discover(result, by="all", clusters=3)
    assert d.groups["group_name"].tolist() == ["all"] and d.groups["k"].tolist() == [3]
    assert sorted(d.clusters["size"]) == [12, 16, 24]


def test_a_gallery_like_source_is_accepted() -> None:
    result, _ = planted_run()

    class Run:
        def __init__(self, result: EvaluationResult | None) -> None:
            self.result = result

        def snapshot(self) -> None: ...

    class Gallery:
        def __init__(self, result: EvaluationResult | None) -> None:
            self.run, self.source, self.model = Run(result), None, None

    assert xw.discover(Gallery(result)).assignments.shape[0] == 43
    with pytest.raises(ValueError, match="has not finished"):
        xw.discover(Gallery(None))


def test_bad_arguments_get_clear_errors() -> None:
    result, _ = planted_run()
    with pytest.raises(TypeError, match="EvaluationResult"):
        xw.discover(42)
    with pytest.raises(ValueError, match="features must be one of"):
        xw.discover(result, features="pixels")
    with pytest.raises(ValueError, match="by must be one of"):
        xw.discover(result, by="colour")
    with pytest.raises(ValueError, match=r"method 'gradcam' is not in the run; it has \['xgradcam'\]"):
        xw.discover(result, method="gradcam")
    with pytest.raises(ValueError, match="clusters must be None"):
        xw.discover(result, clusters=1)
    with pytest.raises(ValueError, match="min_size must be"):
        xw.discover(result, min_size=2)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        xw.discover(result, algorithm="dbscan")
    with pytest.raises(ValueError, match="stores no latent vectors.*model="):
        xw.discover(result, features="latent")
    two = result.table.copy()
    two.loc[two["row"] % 2 == 1, "layer"] = "features.block3"
    with pytest.raises(ValueError, match=r"several layers.*pass layer="):
        xw.discover(EvaluationResult(two, pd.DataFrame(), result.maps))
    unlabelled = result.table.assign(label=-1)
    with pytest.raises(ValueError, match="by='label' needs true labels"):
        xw.discover(EvaluationResult(unlabelled, pd.DataFrame(), result.maps), by="label")
    with pytest.raises(ValueError, match="no cluster 99"):
        xw.discover(result).causal_check(99)


def test_ranking_terms_by_hand() -> None:
    # members at (0, 0) and (2, 0): centre (1, 0), spread 1; rest at (5, 0): gap 4 -> r / (1 + r) = 0.8
    assert separation(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[5.0, 0.0]])) == pytest.approx(0.8)
    assert concentration(np.ones(20)) == pytest.approx(1 / 20)  # top 5% of 20 entries: 1 of 20 equal ones
    assert concentration(np.r_[3.0, np.zeros(19), -5.0]) == 1.0  # negative evidence is no mass
    assert ranks(np.array([0.2, 0.9, 0.9]), np.array([5, 8, 3])).tolist() == [3, 2, 1]


def test_display_embedding_choices() -> None:
    result, _ = planted_run()
    d = xw.discover(result, display="spectral")
    assert np.isfinite(d.assignments[["x", "y"]].to_numpy()).all()
    with pytest.raises(ValueError, match="display must be one of"):
        xw.discover(result, display="umap")


def test_clusters_kmeans_leaves_empty_are_numbered_as_found():
    """Two distinct points repeated: KMeans asked for 3 clusters finds 2, and the result says 2 (a third,
    empty cluster broke the ranking's per-cluster arrays)."""
    features = np.zeros((20, 4))
    features[:10, 0] = 1
    features[10:, 1] = 1
    found = cluster_group(features, 3, 0, "kmeans")
    assert found.k == 2 and sorted(set(found.labels.tolist())) == [0, 1]
    assert len(set(found.labels[:10].tolist())) == 1 and len(set(found.labels[10:].tolist())) == 1
