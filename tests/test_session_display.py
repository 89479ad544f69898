"""The Session shows the photo in the model's input frame, and says when it shows the model's input instead."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

import xcam_widgets as xw
from xcam_widgets.models import ModelBundle


def _net() -> nn.Module:
    torch.manual_seed(0)
    layers = (nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return nn.Sequential(*layers)


def _photo() -> Image.Image:
    values = np.arange(24 * 32 * 3, dtype=np.int64).reshape(24, 32, 3) % 251
    return Image.fromarray(values.astype(np.uint8))


def test_a_v2_crop_shows_the_crop_the_model_saw_with_no_note():
    preprocess = v2.Compose([v2.ToImage(), v2.CenterCrop(16), v2.ToDtype(torch.float32, scale=True)])
    session = xw.Session(ModelBundle("net", _net(), preprocess, ["a", "b", "c"], 0), _photo())
    by_hand = np.asarray(_photo())[4:20, 8:24]  # a centre crop of 16 from 24x32 starts at row 4, column 8
    assert session.display_note is None
    np.testing.assert_array_equal(session.display, by_hand)


def test_a_random_crop_shows_the_models_own_input_and_says_so():
    preprocess = v2.Compose([v2.ToImage(), v2.RandomCrop(16), v2.ToDtype(torch.float32, scale=True)])
    session = xw.Session(ModelBundle("net", _net(), preprocess, ["a", "b", "c"], 0), _photo())
    assert session.display_note  # the frame is the input the model got, and the note says why
    shown = session.display.astype(np.float64) / 255
    model_input = session.x[0].permute(1, 2, 0).double().numpy()
    assert np.abs(shown - model_input).max() <= 0.5 / 255 + 1e-6  # values in [0, 1]: shown as they are, rounded


def test_the_explorers_layer_menu_follows_a_replaced_submodule():
    """`net.block` is replaced while the Explorer shows `block.conv`: the menu lists the new layers (oracle:
    a fresh Session on the changed model), the view moves to the default layer and says why, and the map
    shown is the fresh Session's."""
    from collections import OrderedDict

    from xcam_widgets.session import Session
    from xcam_widgets.widgets.explorer import Explorer

    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()),
            block=nn.Sequential(OrderedDict(conv=nn.Conv2d(6, 8, 3, padding=1), act=nn.ReLU())),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 5),
        )
    ).eval()
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(5))
    explorer = Explorer(net, x, background=False)
    try:
        explorer.layer.value = "block.conv"
        explorer.wait()
        net.block = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.Tanh())
        explorer.method.value = "gradcam"
        explorer.wait()
        fresh = Session(net, x)
        assert [value for _, value in explorer.layer.options] == [info.name for info in fresh.layers]
        assert explorer.layer.value == fresh.default_layer
        assert "block.conv is gone" in explorer.status.value
        want = fresh.low_res_map(explorer.layer.value, "gradcam", explorer.target.value)
        np.testing.assert_array_equal(explorer.shown_map, want)
    finally:
        explorer.close()
