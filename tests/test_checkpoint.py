"""Checkpoints load as tensors only; pickled code is refused, not run."""
from __future__ import annotations

import os

import pytest
import torch

import xcam_widgets as xw
from conftest import TinyVGGNet


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
