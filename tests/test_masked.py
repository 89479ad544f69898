"""The Score-CAM family's opt-in approximation (methods/masked.py): `top_channels=N` scores only the N
channels with the largest activation mass Σ_xy ReLU(A_k) and gives the others weight 0."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import reference_capture

import xcam_widgets as xw

CHEAP = {"scorecam": {}, "sscam": {"samples": 2}, "iscam": {"samples": 3}}


@pytest.mark.parametrize("method", list(CHEAP))
def test_top_channels_covering_every_channel_is_the_exact_method(gap_net, image_batch, method):
    exact = xw.explain(gap_net, image_batch, "features", method=method, target=1, batch_size=5, **CHEAP[method])
    for top in (12, 50):  # features has 12 channels
        approx = xw.explain(
            gap_net, image_batch, "features", method=method, target=1, batch_size=5, top_channels=top, **CHEAP[method]
        )
        assert torch.equal(approx.weights, exact.weights) and torch.equal(approx.map, exact.map)


def test_top_channels_scores_the_channels_with_the_most_activation_mass(gap_net, image_batch):
    """Hand computation: rank channels by Σ ReLU(A), score the top 4 masked inputs, softmax over them."""
    top, cls = 4, 3
    res = xw.explain(gap_net, image_batch, "features", method="scorecam", target=cls, top_channels=top, batch_size=3)
    A, _, _ = reference_capture(gap_net, image_batch, "features", torch.tensor([cls, cls]))
    for b in range(len(image_batch)):
        mass = A[b].clamp(min=0).sum((1, 2))
        chosen = sorted(mass.argsort(descending=True)[:top].tolist())
        scores = []
        for k in chosen:
            mask = F.interpolate(A[b : b + 1, k : k + 1], size=(16, 16), mode="bilinear", align_corners=False)
            mask = (mask - mask.min()) / (mask.max() - mask.min())
            with torch.no_grad():
                scores.append(gap_net(image_batch[b : b + 1] * mask)[0, cls])
        expected = torch.zeros(A.shape[1])
        expected[chosen] = torch.softmax(torch.stack(scores), 0)
        torch.testing.assert_close(res.weights[b], expected, rtol=1e-4, atol=1e-7)
        assert (res.weights[b] > 0).sum() == top


def test_top_channels_runs_only_that_many_masked_inputs(gap_net, image_batch):
    rows = []
    handle = gap_net.register_forward_pre_hook(lambda module, inputs: rows.append(inputs[0].shape[0]))
    try:
        xw.explain(gap_net, image_batch, "features", method="iscam", target=0, top_channels=5, samples=2, batch_size=64)
    finally:
        handle.remove()
    assert rows == [2] + [5, 5] * 2  # the capture, then per image 2 integration steps of 5 masks
