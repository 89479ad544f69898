"""xcam_widgets.sanity on the pretrained EfficientNet-Lite0 and a bundled photo."""

from __future__ import annotations

import pytest
import torch

import xcam_widgets as xw
from xcam_widgets.sanity import sanity_check


@pytest.fixture(scope="module")
def lite0() -> tuple[torch.nn.Module, torch.Tensor]:
    bundle = xw.load_model("efficientnet_lite0", device="cpu")
    return bundle.model, bundle.preprocess(xw.sample_image("chelsea"))[None]


def _means(result, method: str, check: str) -> dict[str, float]:
    rows = [r for r in result.rows if r["method"] == method and r["check"] == check]
    return {m: sum(r[m] for r in rows) / len(rows) for m in result.measures}


def test_random_logit_on_efficientnet_lite0(lite0):
    """Only the classifier re-runs (the split path): cheap enough for the default suite."""
    model, x = lite0
    result = sanity_check(
        model, x, "features.head", methods=("gradcam", "xgradcam", "eigencam"), checks="random_logit", random_classes=3
    )
    for method in ("gradcam", "xgradcam"):
        means = _means(result, method, "random_logit")
        assert means["spearman"] < 0.9 and means["ssim"] < 0.9, (method, means)
    for row in (r for r in result.rows if r["method"] == "eigencam"):
        assert row["spearman"] == pytest.approx(1.0, abs=1e-6) and row["ssim"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.heavy
def test_random_logit_of_scorecam_on_efficientnet_lite0(lite0):
    """Score-CAM needs a forward pass per channel: at `features.stage4` (80 channels), as in the
    results table (benchmarks/sanity_methods.py)."""
    model, x = lite0
    result = sanity_check(model, x, "features.stage4", methods="scorecam", checks="random_logit", random_classes=3)
    means = _means(result, "scorecam", "random_logit")
    assert means["spearman"] < 0.9 and means["ssim"] < 0.9, means


@pytest.mark.heavy
def test_split_path_matches_the_naive_one_on_efficientnet_lite0(lite0):
    """At `features.stage5` the tail holds whole MBConv blocks (residual additions included)."""
    model, x = lite0
    kwargs = dict(methods=("gradcam", "xgradcam", "layercam"), steps="key", random_classes=2)
    fast = sanity_check(model, x, "features.stage5", **kwargs)
    naive = sanity_check(model, x, "features.stage5", split=False, **kwargs)
    assert fast.layers_after == 33
    for a, b in zip(fast.rows, naive.rows):
        for measure in ("spearman", "ssim"):
            assert a[measure] == pytest.approx(b[measure], abs=1e-4), (a, b)
