"""xcam_widgets.sanity against Quantus (used only as an oracle) on the bundled shapes nets.

Quantus's MPRT (quantus/metrics/randomisation/mprt.py, version 0.6.0) deep-copies the model and, for each
module that has `reset_parameters`, in `named_modules()` order reversed ("top_down") or one at a
time from the original weights ("independent"), calls `torch.manual_seed(seed + 1)` and then
`reset_parameters()`; it compares explanations with Spearman's ρ of the flattened maps (after
`abs` and max-normalisation by default, switched off here to compare signed raw maps).

Ours lists the same layers in execution order (the same order for these `nn.Sequential` nets) and
draws a seed per layer; `seed=[q + 1] * n` reproduces Quantus's draws. Quantus needs maps at the
input's size: the raw map is repeated in blocks (nearest upsampling by an integer factor), which
leaves Spearman's ρ unchanged (each value's average rank becomes an affine function of its old
one, and every pair is repeated equally often). Tolerance: 1e-9 on ρ.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import xcam_widgets as xw
from xcam_widgets.sanity import sanity_check
from xcam_widgets.shapes.dataset import make_shapes

quantus = pytest.importorskip("quantus")

QUANTUS_SEED = 42
LAYER = "features.block4"


def _explain_func(layer: str, method: str):
    """Quantus's explain_func: our raw map, repeated in blocks up to the input's size."""

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        raw = xw.explain(model, torch.as_tensor(inputs), layer, method, target=torch.as_tensor(targets).long()).raw
        factor = inputs.shape[-1] // raw.shape[-1]
        return raw.repeat_interleave(factor, -1).repeat_interleave(factor, -2)[:, None].detach().numpy()

    return explain


@pytest.mark.parametrize(
    ("name", "method", "order"),
    [
        ("shapes_gap", "gradcam", "top_down"),
        ("shapes_vgg", "xgradcam", "top_down"),
        ("shapes_gap", "gradcam", "independent"),
    ],
)
def test_mprt_agrees_with_quantus(name, method, order):
    model, preprocess, _ = xw.load_model(name, device="cpu")
    x = preprocess(make_shapes(2, seed=7).images)
    y = model(x).argmax(dim=1)
    metric = quantus.MPRT(layer_order=order, seed=QUANTUS_SEED, abs=False, normalise=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=None,
            device="cpu",
            explain_func=_explain_func(LAYER, method),
        )
    theirs.pop("original")
    check = "cascading" if order == "top_down" else "independent"
    ours = sanity_check(
        model,
        x,
        LAYER,
        methods=method,
        target=y,
        checks=check,
        similarity="spearman",
        seed=[QUANTUS_SEED + 1] * len(theirs),
    )
    rows = [r for r in ours.rows if r["step"] > 0]
    if order == "top_down":  # the same order: step k randomises Quantus's first k layers
        assert list(theirs) == list(ours.layers)
    assert set(theirs) == set(ours.layers)
    for layer, values in theirs.items():
        mine = [r["spearman"] for r in sorted(rows, key=lambda r: r["image"]) if r["layer"] == layer]
        np.testing.assert_allclose(mine, values, rtol=0, atol=1e-9, err_msg=f"{name} {order} {layer}")


def test_random_logit_agrees_with_quantus_on_two_classes(gap_net, image_batch):
    """With two classes the only other class is fixed, so both tools draw the same one."""
    torch.manual_seed(0)
    gap_net.fc = nn.Linear(12, 2)
    y = gap_net(image_batch).argmax(dim=1)
    metric = quantus.RandomLogit(
        num_classes=2,
        similarity_func=quantus.similarity_func.correlation_spearman,
        abs=False,
        normalise=False,
        disable_warnings=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = metric(
            model=gap_net,
            x_batch=image_batch.numpy(),
            y_batch=y.numpy(),
            a_batch=None,
            device="cpu",
            explain_func=_explain_func("features.3", "gradcam"),
        )
    ours = sanity_check(
        gap_net,
        image_batch,
        "features.3",
        methods="gradcam",
        target=y,
        checks="random_logit",
        similarity="spearman",
        random_classes=1,
    )
    assert [r["target_class"] for r in ours.rows] == (1 - y).tolist()
    np.testing.assert_allclose([r["spearman"] for r in ours.rows], theirs, rtol=0, atol=1e-9)
