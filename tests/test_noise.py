"""Noisy methods (methods/noise.py): an image's map depends on its own pixels, the seed and the
options, never on the other images of its batch or on how the work is chunked (`batch_size`)."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyVGGNet

import xcam_widgets as xw

# Three images with different value ranges, so a batch-wide noise scale would show.
RANGES = torch.tensor([1.0, 4.0, 0.25])[:, None, None, None]
X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * RANGES
CASES = [
    ("smoothgradcam++", dict(samples=3, noise=0.3), [1, 2, 5]),  # batch_size: noisy copies per pass
    ("sscam", dict(samples=2, noise=0.3), [1, 5, 12]),  # batch_size: masks per pass (12 channels)
]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TinyVGGNet().eval()


@pytest.mark.parametrize("method,options,batch_sizes", CASES, ids=[c[0] for c in CASES])
def test_map_is_the_same_alone_and_in_a_batch(net, method, options, batch_sizes):
    batched = xw.explain(net, X, "features.4", method=method, target=2, **options)
    for b in range(len(X)):
        alone = xw.explain(net, X[b : b + 1], "features.4", method=method, target=2, **options)
        torch.testing.assert_close(batched.weights[b : b + 1], alone.weights, rtol=1e-5, atol=1e-7, msg=f"image {b}")
        torch.testing.assert_close(batched.map[b : b + 1], alone.map, rtol=0, atol=1e-5, msg=f"image {b}")
    reordered = xw.explain(net, X.flip(0), "features.4", method=method, target=2, **options)
    torch.testing.assert_close(reordered.map.flip(0), batched.map, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method,options,batch_sizes", CASES, ids=[c[0] for c in CASES])
def test_map_does_not_depend_on_batch_size(net, method, options, batch_sizes):
    maps = [
        xw.explain(net, X, "features.4", method=method, target=2, batch_size=size, **options).map
        for size in batch_sizes
    ]
    for size, shown in zip(batch_sizes[1:], maps[1:]):
        torch.testing.assert_close(shown, maps[0], rtol=0, atol=1e-5, msg=f"batch_size={size}")


@pytest.mark.parametrize("method", ["smoothgradcam++", "sscam"])
def test_seed_changes_the_noise_and_repeats_it(net, method):
    runs = [
        xw.explain(net, X[:1], "features.4", method=method, target=2, samples=2, noise=0.5, seed=seed).weights
        for seed in (0, 0, 1)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
