"""Every gradient method against a hand computation of its closed form (docs/methods.md),
from A and G captured independently of the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import reference_capture

import xcam_widgets as xw

CLASSES = torch.tensor([3, 1])


def hand_weights(method: str, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """α[b, k] by explicit loops over images and channels."""
    B, K = A.shape[:2]
    alpha = torch.zeros(B, K, dtype=torch.float64)
    for b in range(B):
        for k in range(K):
            a, g = A[b, k].double(), G[b, k].double()
            if method == "gradcam":
                alpha[b, k] = g.sum() / g.numel()
            elif method == "xgradcam":
                alpha[b, k] = 0.0 if a.sum() == 0 else (a * g).sum() / a.sum()
            elif method == "gradcam++":
                total = 0.0
                for i in range(a.shape[0]):
                    for j in range(a.shape[1]):
                        den = 2 * g[i, j] ** 2 + a.sum() * g[i, j] ** 3
                        coeff = 0.0 if den == 0 else g[i, j] ** 2 / den
                        total += coeff * max(float(g[i, j]), 0.0)
                alpha[b, k] = total
    return alpha


def hand_raw(method: str, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    A, G = A.double(), G.double()
    if method in ("gradcam", "xgradcam", "gradcam++"):
        alpha = hand_weights(method, A, G)
        return sum(alpha[:, k, None, None] * A[:, k] for k in range(A.shape[1]))
    if method == "hirescam":
        return sum(G[:, k] * A[:, k] for k in range(A.shape[1]))
    if method == "gradcam-elementwise":
        return sum(torch.relu(G[:, k] * A[:, k]) for k in range(A.shape[1]))
    if method == "layercam":
        return sum(torch.relu(G[:, k]) * A[:, k] for k in range(A.shape[1]))
    raise AssertionError(method)


@pytest.mark.parametrize("method", ["gradcam", "xgradcam", "gradcam++", "hirescam", "gradcam-elementwise", "layercam"])
@pytest.mark.parametrize("layer", ["features.2", "features.4", "features.3"])  # pre-ReLU conv, post-ReLU, max-pool
def test_gradient_methods_match_hand_computation(vgg_net, image_batch, method, layer):
    A, G, score = reference_capture(vgg_net, image_batch, layer, CLASSES)
    res = xw.explain(vgg_net, image_batch, layer, method=method, target=CLASSES.tolist())
    torch.testing.assert_close(res.score, score)
    expected = hand_raw(method, A, G)
    scale = expected.abs().max()
    torch.testing.assert_close(res.raw.double() / scale, expected / scale, rtol=0, atol=1e-5)
    if res.weights is not None:
        torch.testing.assert_close(res.weights.double(), hand_weights(method, A, G), rtol=1e-4, atol=1e-7)


def test_gradcampp_has_no_additive_epsilon_bias():
    """Tiny gradients (random-weight nets) must not be swamped by a constant in the denominator,
    which made one oracle differ by up to 70 % (docs/oracles.md)."""
    A = torch.rand(1, 2, 3, 3) + 0.5
    G = torch.full((1, 2, 3, 3), 1e-4)
    res = xw.methods.get_method("gradcam++").compute(A, G)
    # a = g²/(2g² + ΣA g³) ≈ 1/2 for tiny g; α = Σ a·g.
    expected = torch.tensor([[(9 * 1e-4 * (1e-8 / (2e-8 + A[0, k].sum() * 1e-12))).item() for k in range(2)]])
    torch.testing.assert_close(res.weights, expected, rtol=1e-5, atol=0)


def test_smooth_gradcampp_without_noise_is_gradcampp(vgg_net, image_batch):
    plain = xw.explain(vgg_net, image_batch, "features.4", method="gradcam++", target=3)
    smooth = xw.explain(vgg_net, image_batch, "features.4", method="smoothgradcam++", target=3, noise=0.0, samples=3)
    torch.testing.assert_close(smooth.raw, plain.raw, rtol=1e-5, atol=1e-6)


def documented_noise(shape: torch.Size, seed: int, sample: int) -> torch.Tensor:
    """ε_i as methods/noise.py documents it: N(0, 1) on the CPU from a generator seeded by the
    first 64-bit word of NumPy's SeedSequence([seed, i])."""
    state = int(np.random.SeedSequence([seed, sample]).generate_state(1, np.uint64)[0])
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(state))


def test_smooth_gradcampp_averages_noisy_gradient_moments(vgg_net, image_batch):
    """Hand computation: copy (b, i) is x_b + σ_b ε_i with σ_b = noise × (max x_b − min x_b), fed
    through the reference capture one copy at a time."""
    samples, noise, seed = 3, 0.1, 7
    x = image_batch * torch.tensor([1.0, 3.0])[:, None, None, None]  # two images with different ranges
    res = xw.explain(
        vgg_net,
        x,
        "features.4",
        method="smoothgradcam++",
        target=2,
        noise=noise,
        samples=samples,
        seed=seed,
        batch_size=2,
    )
    for b in range(2):
        image = x[b : b + 1]
        sigma = noise * float(image.max() - image.min())
        grads = [
            reference_capture(
                vgg_net, image + sigma * documented_noise(image.shape[1:], seed, i), "features.4", torch.tensor([2])
            )[1]
            for i in range(samples)
        ]
        A = reference_capture(vgg_net, image, "features.4", torch.tensor([2]))[0]
        g1, g2, g3 = (sum(g.pow(p) for g in grads) / samples for p in (1, 2, 3))
        den = 2 * g2 + A.sum((2, 3), keepdim=True) * g3
        coeff = torch.where(den != 0, g2 / den, torch.zeros_like(den))
        alpha = (coeff * g1.clamp(min=0)).sum((2, 3))
        torch.testing.assert_close(res.weights[b : b + 1], alpha, rtol=1e-4, atol=1e-7)


def test_raw_is_the_sum_of_contributions_for_every_method(gap_net, image_batch):
    for method in xw.METHODS:
        cheap = {k: v for k, v in {"batch_size": 4, "samples": 2}.items() if k in xw.REGISTRY[method].options}
        res = xw.explain(gap_net, image_batch, "features", method=method, target=1, **cheap)
        torch.testing.assert_close(res.raw, res.contributions.sum(1), msg=method)
        if res.weights is not None:
            torch.testing.assert_close(
                res.contributions,
                res.weights[:, :, None, None]
                * reference_capture(gap_net, image_batch, "features", torch.tensor([1, 1]))[0],
                msg=method,
            )


def test_display_map_is_relu_bilinear_then_min_max():
    """2×2 → 4×4 bilinear (align_corners=False) of [[0, 4], [0, -1]]: ReLU first, then separable
    weights (1, .75, .25, 0) down the rows and (0, .25, .75, 1) across the columns."""
    raw = torch.tensor([[[0.0, 4.0], [0.0, -1.0]]])
    shown = xw.maps.display_map(raw, (4, 4))
    expected = torch.outer(torch.tensor([1.0, 0.75, 0.25, 0.0]), torch.tensor([0.0, 0.25, 0.75, 1.0]))
    torch.testing.assert_close(shown[0], expected)


@pytest.mark.parametrize("method", ["gradcam", "xgradcam", "gradcam++", "layercam", "hirescam", "eigengradcam"])
def test_map_with_no_range_is_zero_not_nan(vgg_net, image_batch, method):
    zero_score = lambda out: out[:, 0] * 0.0  # noqa: E731  (zero gradients everywhere)
    res = xw.explain(vgg_net, image_batch, "features.4", method=method, target=zero_score)
    assert torch.equal(res.map, torch.zeros_like(res.map))
    assert torch.isfinite(res.raw).all()


def test_dead_layer_gives_zero_map(image_batch):
    from conftest import TinyVGGNet

    net = TinyVGGNet().eval()
    with torch.no_grad():
        net.features[3].weight.zero_()
        net.features[3].bias.fill_(-1.0)  # ReLU kills every activation of features.4
    for method in ("gradcam", "xgradcam", "gradcam++", "ablationcam", "scorecam", "eigencam"):
        cheap = {"batch_size": 12} if "batch_size" in xw.REGISTRY[method].options else {}
        res = xw.explain(net, image_batch, "features.4", method=method, target=0, **cheap)
        assert torch.equal(res.map, torch.zeros_like(res.map)), method
        assert not res.raw.isnan().any(), method


def test_map_whose_relu_removes_everything_is_zero(vgg_net, image_batch):
    res = xw.explain(vgg_net, image_batch, "features.4", method="hirescam", target=1)
    negated = xw.maps.display_map(-res.raw.abs() - 1.0, (16, 16))
    assert torch.equal(negated, torch.zeros_like(negated))


def test_eigencam_is_first_principal_component_with_positive_orientation():
    torch.manual_seed(0)
    A = torch.rand(1, 6, 5, 5)
    res = xw.methods.get_method("eigencam").compute(A, torch.zeros_like(A))
    M = A[0].reshape(6, 25).T.double()
    centred = M - M.mean(0)
    eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred)
    v = eigvecs[:, -1]  # largest eigenvalue
    proj = centred @ v
    if (proj * M.mean(1)).sum() < 0:
        proj = -proj
    torch.testing.assert_close(res.contributions.sum(1)[0].double().reshape(25), proj, rtol=1e-4, atol=1e-5)
