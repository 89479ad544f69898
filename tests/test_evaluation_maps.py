"""xcam_widgets.evaluation.maps: each row's small raw map, and the MapStore that keeps them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import xcam_widgets as xw
from xcam_widgets.evaluation import MapStore, evaluate, open_result
from xcam_widgets.evaluation.maps import low_resolution
from xcam_widgets.shapes import nets
from xcam_widgets.shapes.constants import HELDOUT_SEED
from xcam_widgets.shapes.dataset import make_shapes


def adaptive_mean(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Adaptive average pooling by its definition: output cell i covers input rows
    floor(i·H/h) .. ceil((i+1)·H/h) - 1, and likewise for columns."""
    h, w = a.shape
    out = np.empty((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            rows = slice(math.floor(i * h / out_h), math.ceil((i + 1) * h / out_h))
            cols = slice(math.floor(j * w / out_w), math.ceil((j + 1) * w / out_w))
            out[i, j] = a[rows, cols].mean()
    return out


@pytest.mark.parametrize("shape, expected", [((64, 64), (32, 32)), ((7, 7), (7, 7)), ((48, 20), (32, 20))])
def test_low_resolution_is_adaptive_average_pooling_without_relu(shape, expected):
    raw = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)) * 3
    small = low_resolution(raw)
    assert small.dtype == np.float16 and small.shape == (2, *expected)
    for b in range(2):
        reference = adaptive_mean(raw[b].double().numpy(), *expected).astype(np.float16)
        np.testing.assert_allclose(small[b].astype(float), reference.astype(float), rtol=2e-3, atol=2e-3)
    assert (small < 0).any()  # negative evidence is kept: no ReLU
    assert low_resolution(torch.full((1, 2, 2), 1e6))[0, 0, 0] == np.finfo(np.float16).max  # clipped, not inf


def test_the_runs_maps_are_the_raw_maps_of_explain(tmp_path):
    torch.manual_seed(0)
    bundle = xw.load_model("shapes_vgg", pretrained=False, device="cpu")
    methods = ["gradcam", "xgradcam"]
    out = tmp_path / "r.csv"
    table, _ = result = evaluate(
        bundle, "shapes:3", methods, nets.CAM_LAYER, metrics=["deletion"], steps=2, progress=False, out=out
    )
    data = make_shapes(3, seed=HELDOUT_SEED)
    x, classes = nets.preprocess(data.images), data.labels[:, 0]
    for m, method in enumerate(methods):
        raw = xw.explain(bundle.model, x, nets.CAM_LAYER, method, target=classes).raw  # [3, 16, 16]
        for i in range(3):
            row = i * len(methods) + m  # the row key: image-major, then method
            assert table.loc[row, ["image", "method"]].tolist() == [i, method]
            np.testing.assert_allclose(
                result.maps[row].astype(float), raw[i].half().double().numpy(), rtol=1e-3, atol=1e-4
            )
    reopened = open_result(out).maps
    assert sorted(reopened) == list(range(6))
    for row in range(6):
        np.testing.assert_array_equal(reopened[row], result.maps[row])


def test_map_store_round_trips_maps_of_several_sizes(tmp_path):
    rng = np.random.default_rng(1)
    maps = {7: rng.normal(size=(3, 5)), 2: rng.normal(size=(32, 32)), 40: rng.normal(size=(1, 9))}
    store = MapStore(maps)
    assert len(store) == 3 and 7 in store and 8 not in store and sorted(store) == [2, 7, 40]
    path = tmp_path / "maps.npz"
    store.save(path)
    back = MapStore.load(path)
    assert sorted(back) == [2, 7, 40]
    for row, value in maps.items():
        assert back[row].dtype == np.float16 and back[row].shape == value.shape
        np.testing.assert_array_equal(back[row], value.astype(np.float16))
    with pytest.raises(KeyError):
        back[3]
    with pytest.raises(ValueError):  # read-only: a thumbnail cannot change the stored map
        back[2][0, 0] = 1
    both = MapStore.concat([back, MapStore({7: np.ones((2, 2)), 9: np.zeros((4, 4))})])
    assert sorted(both) == [2, 7, 9, 40] and both[7].tolist() == [[1, 1], [1, 1]]  # the later store wins
    arrays = back.to_arrays()
    arrays["map_offsets"] = arrays["map_offsets"] + 1
    with pytest.raises(ValueError, match="damaged"):
        MapStore.from_arrays(arrays)
