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
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


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
    stretched = (model_input - model_input.min()) / (model_input.max() - model_input.min())  # no Normalize known
    assert np.abs(shown - stretched).max() <= 1 / 255 + 1e-9
