"""The Explorer's fast mode for the Score-CAM family: on a layer whose exact map needs more than
`MASKED_PASS_BUDGET` masked passes it scores the top `FAST_TOP_CHANNELS` channels, says so, and gives
the exact map when the user sets top channels to none; narrow layers keep the exact default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xcam_widgets as xw
from xcam_widgets.views import low_res_map
from xcam_widgets.widgets.controls import FAST_TOP_CHANNELS, MASKED_PASS_BUDGET, needs_fast_mode
from xcam_widgets.widgets.explorer import Explorer

X = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(7))
NARROW, WIDE = "1", "3"  # 8 and 300 channels at 8×8


@pytest.fixture
def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 300, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(300, 5),
    ).eval()


def explained(net: nn.Module, explorer: Explorer, **options) -> np.ndarray:
    state = explorer.state
    res = xw.explain(net, X, state.layer, method=state.method, target=state.target, **options)
    return low_res_map(res.raw)


def top_channels(explorer: Explorer) -> str:
    return explorer.option_controls[explorer.method.value]["top_channels"].widget.value


def test_the_rule_is_channels_times_samples_over_the_budget():
    assert (MASKED_PASS_BUDGET, FAST_TOP_CHANNELS) == (256, 64)
    assert needs_fast_mode(300, 1) and needs_fast_mode(200, 2) and needs_fast_mode(1280, 8)
    assert not needs_fast_mode(256, 1) and not needs_fast_mode(200, 1)
    assert not needs_fast_mode(64, 10)  # scoring 64 of 64 channels would be the exact map anyway


def test_a_wide_layer_starts_in_fast_mode_says_so_and_offers_the_exact_map(net):
    explorer = Explorer(net, X, background=False)
    explorer.layer.value = WIDE
    explorer.method.value = "scorecam"
    assert explorer.status.value == "", explorer.status.value
    assert top_channels(explorer) == "64" and dict(explorer.state.options)["top_channels"] == 64
    assert "fast mode: scoring the top 64 of 300 channels" in explorer.fast_note.value
    assert "set top channels to none for the exact map" in explorer.fast_note.value
    fast = explained(net, explorer, top_channels=64)
    exact = explained(net, explorer)
    assert not np.array_equal(fast, exact)  # the two modes are told apart below
    np.testing.assert_array_equal(explorer.shown_map, fast)

    explorer.option_controls["scorecam"]["top_channels"].widget.value = "none"  # the user asks for the exact map
    assert explorer.fast_note.value == "" and dict(explorer.state.options)["top_channels"] is None
    np.testing.assert_array_equal(explorer.shown_map, exact)
    explorer.layer.value = NARROW  # leaving and coming back does not override the user's choice
    explorer.method.value = "gradcam"
    explorer.method.value = "scorecam"
    explorer.layer.value = WIDE
    assert top_channels(explorer) == "none" and explorer.fast_note.value == ""
    np.testing.assert_array_equal(explorer.shown_map, exact)
    explorer.close()


def test_a_narrow_layer_keeps_the_exact_default(net):
    explorer = Explorer(net, X, background=False)
    explorer.layer.value = NARROW
    for method in ("scorecam", "sscam", "iscam"):
        explorer.method.value = method
        assert top_channels(explorer) == "none" and explorer.fast_note.value == "", method
        assert dict(explorer.state.options) == dict(xw.REGISTRY[method].options), method
        np.testing.assert_array_equal(explorer.shown_map, explained(net, explorer), err_msg=method)
    explorer.layer.value = WIDE  # fast mode here, and back to the exact default on the narrow layer
    assert top_channels(explorer) == "64" and "top 64 of 300" in explorer.fast_note.value
    np.testing.assert_array_equal(explorer.shown_map, explained(net, explorer, top_channels=64))
    explorer.layer.value = NARROW
    assert top_channels(explorer) == "none" and explorer.fast_note.value == ""
    np.testing.assert_array_equal(explorer.shown_map, explained(net, explorer))
    explorer.close()


def test_a_value_the_user_chose_is_kept(net):
    explorer = Explorer(net, X, background=False)
    explorer.method.value = "sscam"
    explorer.option_controls["sscam"]["top_channels"].widget.value = "100"
    explorer.layer.value = WIDE
    assert top_channels(explorer) == "100" and explorer.fast_note.value == ""
    np.testing.assert_array_equal(explorer.shown_map, explained(net, explorer, top_channels=100))
    explorer.close()
