"""The Session follows the model, however it changes (weights swapped rather than edited in place, dtype,
replaced parameters, buffers and submodules), and says what it holds in bytes, within a budget.

Every map after a change is compared with a fresh Session's map on the changed model: the reference
shares nothing with the Session under test but the model and the image."""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from xcam_widgets.model_state import ModelWatch
from xcam_widgets.session import Session

X = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(5))
LAYER, TARGET = "block", 1


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors on a shared machine (conftest's `one_thread`)."""


class Net(nn.Module):
    """conv → BatchNorm (buffers) → ReLU → block (conv → ReLU) → global average pooling → linear."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.block = nn.Sequential(OrderedDict(conv=nn.Conv2d(6, 8, 3, padding=1), act=nn.ReLU()))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 5)
        with torch.no_grad():  # statistics that are not the identity, so a new buffer changes the maps
            self.stem[1].running_mean.uniform_(-0.5, 0.5)
            self.stem[1].running_var.uniform_(0.5, 2.0)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def fresh_map(net: nn.Module, layer: str = LAYER, method: str = "gradcam") -> np.ndarray:
    """The independent reference: a new Session on the model as it is now."""
    return Session(net, X).low_res_map(layer, method, TARGET)


def assign_data(net: Net) -> None:
    net.block.conv.weight.data = torch.randn_like(net.block.conv.weight)


def vector_to_parameters(net: Net) -> None:
    count = sum(p.numel() for p in net.parameters())
    torch.nn.utils.vector_to_parameters(
        torch.randn(count, generator=torch.Generator().manual_seed(9)), net.parameters()
    )


def load_assigned(net: Net) -> None:
    net.load_state_dict(Net(seed=3).state_dict(), assign=True)


def reassign_buffers(net: Net) -> None:
    net.stem[1].running_mean = torch.linspace(-1.0, 1.0, 6)
    net.stem[1].running_var = torch.linspace(0.2, 3.0, 6)


def replace_parameter(net: Net) -> None:
    net.block.conv.weight = nn.Parameter(torch.randn_like(net.block.conv.weight))


def to_double(net: Net) -> None:
    net.double()


def to_bfloat16(net: Net) -> None:
    net.to(torch.bfloat16)


CHANGES: list[Callable[[Net], None]] = [
    assign_data,
    vector_to_parameters,
    load_assigned,
    reassign_buffers,
    replace_parameter,
    to_double,
    to_bfloat16,
]


@pytest.mark.parametrize("change", CHANGES, ids=[change.__name__ for change in CHANGES])
def test_a_map_after_a_weight_change_equals_a_fresh_sessions(change):
    """None of these bumps a version counter of the tensors the Session listed (a swapped storage, a new
    tensor object, a new dtype): the old code returned the cached map, or failed on a float32 input."""
    net = Net()
    session = Session(net, X)
    before = session.low_res_map(LAYER, "gradcam", TARGET)
    session.low_res_map(LAYER, "xgradcam", 2)  # a second class kept, too
    generation = session.generation
    change(net)
    after = session.low_res_map(LAYER, "gradcam", TARGET)
    np.testing.assert_array_equal(after, fresh_map(net))
    assert not np.array_equal(after, before)  # the change is one the maps show
    np.testing.assert_array_equal(
        session.low_res_map(LAYER, "xgradcam", 2), Session(net, X).low_res_map(LAYER, "xgradcam", 2)
    )
    assert session.x.dtype == next(net.parameters()).dtype  # the image follows the model's dtype
    assert session.generation == generation  # the same image


def test_a_replaced_submodule_relists_the_layers_and_a_gone_layer_says_so():
    """`net.block` becomes a Sequential with other children: the layer list follows (`block.conv` is
    gone, `block.0` is new), the captured layer is the new module, and the old name is refused in words."""
    net = Net()
    session = Session(net, X)
    before = session.low_res_map(LAYER, "gradcam", TARGET)
    old = session.low_res_map("block.conv", "gradcam", TARGET)
    torch.manual_seed(4)
    net.block = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.Tanh())
    reference = Session(net, X)
    assert [info.name for info in session.layers] == [info.name for info in reference.layers]
    assert session.layers == reference.layers and "block.conv" not in {info.name for info in session.layers}
    after = session.low_res_map(LAYER, "gradcam", TARGET)
    np.testing.assert_array_equal(after, fresh_map(net))
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(session.low_res_map("block.0", "gradcam", TARGET), fresh_map(net, "block.0"))
    with pytest.raises(ValueError, match="layer 'block.conv' is gone: the model's modules changed"):
        session.low_res_map("block.conv", "gradcam", TARGET)
    with pytest.raises(ValueError, match="layer 'nowhere' is not a candidate layer"):
        session.low_res_map("nowhere", "gradcam", TARGET)
    assert old.shape == (8, 8)


def test_a_replaced_parameter_is_not_kept_alive():
    """The Session watches the model through weak references: once it has seen a replaced parameter,
    the old one is freed (the old code held every tensor it listed, until the next image)."""
    net = Net()
    session = Session(net, X)
    session.low_res_map(LAYER, "gradcam", TARGET)
    old = weakref.ref(net.block.conv.weight)
    replace_parameter(net)
    session.low_res_map(LAYER, "gradcam", TARGET)  # drops the forward pass of the old weights
    gc.collect()
    assert old() is None


def test_the_watch_sees_a_module_replaced_twice_at_one_address():
    """ReLU → Tanh → Sigmoid with nothing else holding the ReLU: CPython gives the Sigmoid the freed
    ReLU's id, so the tree's ids and names are those committed; the weak reference saw the ReLU freed."""
    block = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), act=nn.ReLU()))
    watch = ModelWatch(block)
    assert watch.changed(watch.look()) == (False, False)
    block.act = nn.Tanh()
    block.act = nn.Sigmoid()
    assert watch.changed(watch.look()) == (True, True)


def test_unchanged_weights_keep_the_forward_pass():
    """The check costs no recomputation when nothing changed, also after a no-op `float()` (same tensors)."""
    net = Net()
    session = Session(net, X)
    session.low_res_map(LAYER, "gradcam", TARGET)
    net.float()
    session.low_res_map(LAYER, "gradcam", 2)
    session.low_res_map("block.conv", "gradcam", TARGET)
    assert session.stats["forward"] == 1


def test_a_model_that_refuses_the_image_after_a_change_says_so_and_keeps_refusing():
    """A first conv that now expects 1 channel: the error names it, and no stale map is returned later."""
    net = Net()
    session = Session(net, X)
    session.low_res_map(LAYER, "gradcam", TARGET)
    net.stem[0] = nn.Conv2d(1, 6, 3, padding=1)
    for _ in range(2):
        with pytest.raises(ValueError, match="x has 3 channels but the model's first convolution expects 1"):
            session.low_res_map(LAYER, "gradcam", TARGET)


# --- what a Session holds, in bytes -----------------------------------------------------------------
F32 = 4


def tiny() -> nn.Module:
    """conv 3→4 (the only candidate layer, `0`) → flatten → linear 256→3, on an 8x8 image."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()


IMAGE = 3 * 8 * 8 * F32  # x
A = 4 * 8 * 8 * F32  # the conv's output, recorded; its grid is a view of it; G of one class is as large
LOGITS = 3 * F32


def test_memory_equals_a_hand_count_of_what_is_held():
    """Each term by hand (numel x 4 bytes). The kept graph: autograd saved x (counted with the image),
    the conv's and the linear's weights (the model's own: not counted) and the linear's input, which is
    the clone of A the recorder hands on (`capture._Recorder`). Each class keeps its G."""
    session = Session(tiny(), X)
    held = session.memory
    assert (held.activations, held.graph, held.gradients, held.results) == (IMAGE, 0, {}, 0)
    session.capture(0)
    session.capture(1)
    held = session.memory
    assert held.activations == IMAGE + A + LOGITS
    assert held.graph == A  # the clone the linear layer saved
    assert held.gradients == {0: A, 1: A}
    assert held.total == IMAGE + A + LOGITS + A + 2 * A
    assert session.graph_bytes == held.total - 2 * A  # the kept pass alone: all but the gradients
    session.explanation("0", "gradcam", 1)
    # score [1] f32, classes [1] int64, raw and map [1, 8, 8] f32, weights [1, 4] f32, contributions [1, 4, 8, 8]
    # f32; its logits are the kept pass's
    assert session.memory.results == F32 + 8 + 2 * 8 * 8 * F32 + 4 * F32 + A


def test_a_gradient_budget_evicts_the_oldest_class_and_recomputes_it_on_demand():
    """Budget: one class's G beyond the class last used. Three classes keep the last two; the first
    comes back by one more backward pass, bit for bit."""
    session = Session(tiny(), X, gradient_budget=A)
    first = session.capture(0).gradients["0"]
    session.capture(1)
    session.capture(2)
    assert session.memory.gradients == {1: A, 2: A}
    backward = session.stats["backward"]
    again = session.capture(0).gradients["0"]
    assert session.stats["backward"] == backward + 1 and torch.equal(again, first)
    assert session.memory.gradients == {2: A, 0: A}
    session.capture(0)  # kept: no backward pass
    assert session.stats["backward"] == backward + 1


def test_the_class_last_used_stays_even_over_budget():
    """A budget of 0 keeps only the class in use: its map needs its G. A budget that is no byte count is refused."""
    with pytest.raises(ValueError, match="gradient_budget must be an int >= 0 .bytes., got -1"):
        Session(tiny(), X, gradient_budget=-1)
    session = Session(tiny(), X, gradient_budget=0)
    session.capture(0)
    session.capture(1)
    assert session.memory.gradients == {1: A}
