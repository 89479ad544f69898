"""sanity_check with a weight shared across the CAM layer: the split path must give the full pass's numbers.

A layer after the CAM layer whose parameter (or whose whole module) also runs before it changes the
activations A when it is re-drawn; the fast split path keeps A fixed, so it may not absorb that layer.
The reference is `split=False`, which re-runs the whole model at every step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xcam_widgets.sanity import sanity_check

KWARGS = dict(methods=("gradcam", "xgradcam"), checks=("cascading", "independent"), similarity=("spearman", "ssim"))


class TiedNet(nn.Module):
    """conv_in → before → act (the CAM layer) → after → GAP → fc, where `after.weight` IS `before.weight`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.before = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.after = nn.Conv2d(8, 8, 3, padding=1)
        self.after.weight = self.before.weight  # one nn.Parameter in two modules
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv_in(x))
        a = self.act(self.before(h))
        return self.fc(F.relu(self.after(a)).mean(dim=(2, 3)))


class ReusedNet(nn.Module):
    """conv_in → shared → act (the CAM layer) → shared again → GAP → fc: one module called on both sides."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.shared(F.relu(self.conv_in(x))))
        return self.fc(F.relu(self.shared(a)).mean(dim=(2, 3)))


def _model_and_input(cls: type[nn.Module]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    model = cls().eval()
    return model, torch.randn(2, 3, 10, 10)


def _assert_same_rows(fast, full) -> None:
    assert len(fast.rows) == len(full.rows)
    for a, b in zip(fast.rows, full.rows):
        assert {k: a[k] for k in fast.COLUMNS} == {k: b[k] for k in full.COLUMNS}
        for measure in fast.measures:
            assert a[measure] == pytest.approx(b[measure], abs=1e-5), (a, b)


def test_a_parameter_tied_across_the_layer_gives_the_full_pass_numbers():
    model, x = _model_and_input(TiedNet)
    fast = sanity_check(model, x, "act", **KWARGS)
    full = sanity_check(model, x, "act", split=False, **KWARGS)
    assert fast.layers == ("fc", "after", "before", "conv_in") and fast.layers_after == 2
    # Re-drawing `after` re-draws `before` too (one tensor), so A changes: the map must move as the full
    # pass says. Before the fix the split path kept A and reported a much higher similarity.
    _assert_same_rows(fast, full)
    assert fast.path == "tail" and full.path == "full"
    assert "after" in fast.path_note and "before" in fast.path_note
    assert "split=False" in full.path_note


def test_a_module_called_on_both_sides_of_the_layer_gives_the_full_pass_numbers():
    model, x = _model_and_input(ReusedNet)
    fast = sanity_check(model, x, "act", **KWARGS)
    full = sanity_check(model, x, "act", split=False, **KWARGS)
    assert fast.layers == ("fc", "shared", "conv_in") and fast.layers_after == 2
    _assert_same_rows(fast, full)
    assert "shared" in fast.path_note


def test_without_sharing_the_note_says_every_layer_after_ran_through_the_tail():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(64, 3))
    x = torch.randn(1, 3, 8, 8)
    result = sanity_check(model.eval(), x, "1", methods="gradcam", checks="cascading")
    assert result.path == "tail"
    assert result.path_note.startswith("steps that randomise only layers after 1 re-ran the network after it")
