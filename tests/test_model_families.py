"""Vision transformers and channels-last layers with random weights: the grid inferred from the model and
the input size gives the same maps as a hand-written reshape (torchvision vit_b_16, swin_t, convnext_tiny;
timm deit_tiny_distilled_patch16_224 and a ViT with register tokens; non-square inputs where the
model allows them)."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torchvision
from torch import nn

import xcam_widgets as xw
from xcam_widgets.reshape import ChannelsLast, TokenGrid, infer_reshape

timm = pytest.importorskip("timm")


def tokens_by_hand(prefix: int, rows: int, cols: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:].reshape(t.shape[0], rows, cols, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def channels_last_by_hand(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def _vit_b_16() -> nn.Module:
    model = torchvision.models.vit_b_16(weights=None, image_size=64)  # torchvision's ViT: square inputs only
    nn.init.normal_(model.heads.head.weight, std=0.02)  # zero-initialised: every logit and gradient would be 0
    return model


def _deit() -> nn.Module:
    return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=(32, 96), depth=2)


def _vit_registers() -> nn.Module:
    # four register tokens and no class token: 4 prefix tokens
    return timm.create_model(
        "vit_base_patch16_reg4_gap_256", pretrained=False, img_size=(32, 96), depth=2, embed_dim=64, num_heads=2
    )


def _timm_convnext() -> nn.Module:
    return timm.create_model("convnext_tiny", pretrained=False, depths=(1, 1, 1, 1))


# (builder, input [H, W], layer, expected reshape, hand-written reshape)
CASES = {
    "vit_b_16": (
        _vit_b_16,
        (64, 64),
        "encoder.layers.encoder_layer_11.ln_1",
        TokenGrid(1, 4, 4),
        tokens_by_hand(1, 4, 4),
    ),
    "swin_t": (torchvision.models.swin_t, (64, 96), "features.7", ChannelsLast(), channels_last_by_hand),
    "convnext_tiny": (
        torchvision.models.convnext_tiny,
        (64, 96),
        "features.7.2.block.3",
        ChannelsLast(),
        channels_last_by_hand,
    ),
    "deit_tiny_distilled": (_deit, (32, 96), "blocks.1.norm1", TokenGrid(2, 2, 6), tokens_by_hand(2, 2, 6)),
    "vit_reg4": (_vit_registers, (32, 96), "blocks.1.norm1", TokenGrid(4, 2, 6), tokens_by_hand(4, 2, 6)),
    "timm_convnext": (_timm_convnext, (64, 96), "stages.3.blocks.0.mlp", ChannelsLast(), channels_last_by_hand),
}


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    models = {}
    for name, (build, *_) in CASES.items():
        torch.manual_seed(0)
        models[name] = build().eval()
    return models


def _output_shape(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[int, ...]:
    shapes = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return shapes[0]


@pytest.mark.parametrize("name", list(CASES))
def test_inferred_reshape_gives_the_hand_written_maps(built, name):
    _, (height, width), layer, expected, by_hand = CASES[name]
    model = built[name]
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    inferred = infer_reshape(model, tuple(x.shape), layer, _output_shape(model, x, layer))
    assert inferred == expected
    ours = xw.explain(model, x, layer, method="gradcam", target=3, reshape=inferred)
    hand = xw.explain(model, x, layer, method="gradcam", target=3, reshape=by_hand)
    assert torch.equal(ours.raw, hand.raw) and torch.equal(ours.map, hand.map)
    assert float(ours.raw.abs().max()) > 0


def test_explain_infers_the_grid_without_reshape(built):
    model = built["deit_tiny_distilled"]
    x = torch.randn(1, 3, 32, 96, generator=torch.Generator().manual_seed(1))
    hand = xw.explain(model, x, "blocks.1.norm1", method="gradcam", target=3, reshape=tokens_by_hand(2, 2, 6))
    ours = xw.explain(model, x, "blocks.1.norm1", method="gradcam", target=3)
    assert torch.equal(ours.map, hand.map)


def test_explicit_reshape_overrides(built):
    """A user's reshape is used as given, even where another one would be inferred."""
    model = built["deit_tiny_distilled"]
    x = torch.randn(1, 3, 32, 96, generator=torch.Generator().manual_seed(1))
    wrong_but_asked_for = xw.token_grid(prefix_tokens=2, height=3, width=4)
    res = xw.explain(model, x, "blocks.1.norm1", method="gradcam", target=3, reshape=wrong_but_asked_for)
    assert res.raw.shape == (1, 3, 4)


def test_default_layer_of_a_vit_is_the_norm_before_the_last_attention():
    """After the last attention, patch tokens no longer reach the class token: their gradient is 0,
    so the last block's output would give an all-zero Grad-CAM map; its `ln_1` does not."""
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None, image_size=32, num_classes=10).eval()
    torch.nn.init.normal_(vit.heads.head.weight)  # torchvision zero-initialises the head
    x = torch.randn(1, 3, 32, 32)
    layers = xw.candidate_layers(vit, (3, 32, 32))
    assert xw.default_layer(layers, vit) == "encoder.layers.encoder_layer_11.ln_1"
    assert float(xw.explain(vit, x, "encoder.layers.encoder_layer_11", target=1).raw.abs().max()) == 0.0
    assert float(xw.explain(vit, x, "encoder.layers.encoder_layer_11.ln_1", target=1).raw.abs().max()) > 0.0


def test_the_explorer_opens_a_vit_and_shows_explains_map():
    """The Session's kept forward pass reads token layers through the inferred grid, as `explain` does."""
    from xcam_widgets.views import low_res_map
    from xcam_widgets.widgets.explorer import Explorer

    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None, image_size=32, num_classes=10).eval()
    torch.nn.init.normal_(vit.heads.head.weight)
    explorer = Explorer(vit, torch.randn(3, 32, 32), background=False)
    assert explorer.layer.value == "encoder.layers.encoder_layer_11.ln_1" and not explorer.status.value
    explorer.target.value = 3
    expected = xw.explain(vit, explorer.session.x, explorer.layer.value, method="xgradcam", target=3)
    assert explorer.shown_map.shape == (2, 2)
    assert (explorer.shown_map == low_res_map(expected.raw)).all()
    explorer.close()
