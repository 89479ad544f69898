"""xcam_widgets.widgets.sanity_panel in the Explorer: the Sanity tab runs only on request, draws one
strip per method with the Session's maps and curves, says Eigen-CAM fails the random-logit check,
survives a Cancel with the last result shown, resets on a new image, and leaves the model as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyVGGNet

import xcam_widgets as xw
from xcam_widgets.widgets.explorer import Explorer
from xcam_widgets.widgets.figures import quantized
from xcam_widgets.widgets.sanity_panel import shown_steps

X = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))
LAYERS_AFTER = 2  # TinyVGGNet after features.4: the Linear layers classifier.1 and classifier.3
RANDOM_CLASSES = 3  # Session.sanity's default


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyVGGNet().eval()


def heatmaps(figure) -> list:
    return [trace for trace in figure.data if trace.type == "heatmap"]


def test_run_draws_one_strip_per_method_and_the_verdicts_in_words(net):
    explorer = Explorer(net, X, background=False)
    panel = explorer.sanity_panel
    assert explorer.tabs.get_title(4) == "Sanity"
    assert explorer.session.stats["sanity"] == 0 and panel.rows.children == ()  # nothing runs until asked
    explorer.layer.value = "features.4"
    panel.methods.value = ("gradcam", "eigencam")
    panel.run_button.click()
    assert panel.status.value == "", panel.status.value
    assert [strip.method for strip in panel.shown.strips] == ["gradcam", "eigencam"]
    assert len(panel.rows.children) == 2
    want = explorer.session.sanity("features.4", ("gradcam", "eigencam"), explorer.state.target)
    assert panel.shown is want  # the Session's cached view, drawn as it is
    for row, strip in zip(panel.rows.children, want.strips):
        title, figures, verdict = row.children
        maps_figure, curves = figures.children
        assert strip.title in title.value
        drawn = heatmaps(maps_figure)
        assert len(drawn) == 1 + LAYERS_AFTER + RANDOM_CLASSES
        assert [a.text for a in maps_figure.layout.annotations][:3] == ["original", "classifier.3", "classifier.1"]
        for trace, expected in zip(drawn, strip.maps + strip.random_maps):
            np.testing.assert_array_equal(np.asarray(trace.z), quantized(expected))
        lines = [t for t in curves.data if t.mode == "lines+markers"]
        assert [list(t.y) for t in lines] == [list(strip.similarity[m]) for m in ("spearman", "ssim")]
        assert list(lines[0].x) == ["original", "classifier.3", "classifier.1"]
        assert strip.verdict in verdict.value.replace("&#x27;", "'")
    eigen = panel.rows.children[1].children[2].value
    assert "Eigen-CAM fails the random-logit check" in eigen and "#b00" in eigen
    assert "features.4" in panel.header.value
    explorer.close()


def test_cancel_keeps_the_last_result_and_the_explorer_usable(net, monkeypatch):
    explorer = Explorer(net, X, background=False)
    panel = explorer.sanity_panel
    panel.methods.value = ("xgradcam", "eigencam")
    panel.run_button.click()
    shown, rows = panel.shown, panel.rows.children
    real = explorer.session.sanity
    calls = []

    def cancelled_after_one_map(*args, progress, **kwargs):
        def report(done: int, total: int) -> None:
            calls.append(done)
            progress(done, total)  # raises once Cancel was pressed
            panel.cancel_button.click()

        return real(*args, progress=report, **kwargs)

    monkeypatch.setattr(explorer.session, "sanity", cancelled_after_one_map)
    panel.methods.value = ("gradcam", "scorecam", "eigencam")
    panel.run_button.click()
    assert calls == [1, 2]  # stopped at the second map of many
    assert panel.shown is shown and panel.rows.children == rows
    assert panel.status.value.startswith("cancelled")
    monkeypatch.undo()
    explorer.method.value = "gradcam"  # the other views still work
    assert explorer.shown_state == explorer.state and explorer.status.value == ""
    panel.run_button.click()  # and the tab runs again
    assert [strip.method for strip in panel.shown.strips] == ["gradcam", "scorecam", "eigencam"]
    assert len(panel.rows.children) == 3
    explorer.close()


def test_a_new_image_clears_the_results_and_an_empty_choice_is_a_clear_error(net):
    explorer = Explorer(net, X, background=False)
    panel = explorer.sanity_panel
    panel.methods.value = ()
    panel.run_button.click()
    assert "choose at least one method" in panel.status.value and panel.shown is None
    panel.methods.value = ("gradcam",)
    panel.run_button.click()
    assert panel.shown is not None
    explorer._set_image(X * 2)
    assert panel.shown is None and panel.rows.children == ()
    explorer.close()


def test_the_model_is_bit_identical_after_the_sanity_tab(net):
    net.train()
    net.classifier[1].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    grads = [p.requires_grad for p in net.parameters()]
    explorer = Explorer(net, X, background=True)
    explorer.sanity_panel.methods.value = ("xgradcam", "gradcam", "eigencam", "scorecam")
    explorer.sanity_panel.run_button.click()
    explorer.target.value = 2  # the view worker uses the model while the check runs
    explorer.wait()
    assert explorer.sanity_panel.status.value == "" and explorer.status.value == ""
    assert len(explorer.sanity_panel.rows.children) == 4
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert [m.training for m in net.modules()] == flags
    assert [p.requires_grad for p in net.parameters()] == grads
    assert xw.hook_counts(net) == {k: 0 for k in xw.hook_counts(net)}
    explorer.close()


def test_a_long_cascade_shows_the_original_and_the_last_step():
    assert shown_steps(3) == [0, 1, 2]
    assert shown_steps(20, limit=5) == [0, 5, 10, 14, 19]
    assert shown_steps(1) == [0]
