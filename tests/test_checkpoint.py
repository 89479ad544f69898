"""Checkpoints load as tensors only; pickled code is refused, not run."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import TinyVGGNet

import xcam_widgets as xw


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_state_dict_and_wrapped_state_dict_load(tmp_path):
    torch.manual_seed(0)
    source, target = TinyVGGNet(), TinyVGGNet()
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    for name in ("plain.pt", "wrapped.pt"):
        xw.load_checkpoint(target, tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_pickled_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"weight": RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refused by torch.load\(weights_only=True\)"):
        xw.load_checkpoint(TinyVGGNet(), tmp_path / "evil.pt")
    assert not (tmp_path / "pwned-by-checkpoint").exists()


@pytest.mark.parametrize(
    "content,error,match",
    [
        ([torch.zeros(2)], TypeError, "does not hold a state dict"),
        ({"weight": 3}, TypeError, "does not hold a state dict"),
        ({"features.0.weight": torch.zeros(1)}, ValueError, "does not fit TinyVGGNet"),
    ],
)
def test_wrong_checkpoints_are_named(tmp_path, content, error, match):
    torch.save(content, tmp_path / "bad.pt")
    with pytest.raises(error, match=match):
        xw.load_checkpoint(TinyVGGNet(), tmp_path / "bad.pt")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        xw.load_checkpoint(TinyVGGNet(), tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="refused"):
        xw.load_checkpoint(TinyVGGNet(), tmp_path / "junk.pt")


def test_a_checkpoint_that_does_not_fit_changes_nothing(tmp_path):
    """load_state_dict copies every tensor that fits before it raises; the load must be all or nothing."""
    torch.manual_seed(0)
    source, target = TinyVGGNet(), TinyVGGNet()
    state = source.state_dict()
    state["classifier.3.weight"] = torch.zeros(7, 32)  # the last key: every other tensor would be copied first
    torch.save(state, tmp_path / "wrong_shape.pt")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=r"(?s)does not fit TinyVGGNet, so nothing was loaded.*classifier.3.weight"):
        xw.load_checkpoint(target, tmp_path / "wrong_shape.pt")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    assert not torch.equal(before["features.0.weight"], source.state_dict()["features.0.weight"])  # a real test


def test_unexpected_key_with_strict_changes_nothing(tmp_path):
    torch.manual_seed(0)
    source, target = TinyVGGNet(), TinyVGGNet()
    torch.save({**source.state_dict(), "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="(?s)nothing was loaded.*extra.weight"):
        xw.load_checkpoint(target, tmp_path / "extra.pt")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    xw.load_checkpoint(target, tmp_path / "extra.pt", strict=False)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_empty_file_none_and_torchscript_archive_are_named(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\)"):
        xw.load_checkpoint(TinyVGGNet(), tmp_path / "empty.pt")
    with pytest.raises(TypeError, match="path must be a file path .* got NoneType"):
        xw.load_checkpoint(TinyVGGNet(), None)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        xw.load_checkpoint("model", tmp_path / "empty.pt")
    net = TinyVGGNet().eval()
    torch.jit.trace(net, torch.randn(1, 3, 16, 16)).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(ValueError, match=r"TorchScript archive \(torch.jit.save\).*not supported.*state_dict"):
        xw.load_checkpoint(TinyVGGNet(), tmp_path / "scripted.pt")
