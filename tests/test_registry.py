"""The method registry (methods/registry.py): one entry point per method, options with a default,
a type and a check, and the option checks' messages."""

from __future__ import annotations

import inspect
import typing

import pytest
import torch
from conftest import reference_capture

import xcam_widgets as xw
from xcam_widgets.capture import capture
from xcam_widgets.methods import OPTION_CHECKS, REGISTRY, check_options
from xcam_widgets.methods.context import MethodContext
from xcam_widgets.model_state import evaluation_mode

OPTION_TYPES = {int, float, int | None}


@pytest.mark.parametrize("name", xw.METHODS)
def test_every_option_has_a_default_a_type_and_a_check(name):
    method = REGISTRY[name]
    assert set(method.options) == set(method.option_types)
    for option, default in method.options.items():
        assert default is not inspect.Parameter.empty, option
        kind = method.option_types[option]
        assert kind in OPTION_TYPES, (option, kind)
        assert default is None or isinstance(default, typing.get_args(kind) or kind), (option, default)
        assert option in OPTION_CHECKS, option
    assert check_options(method, {}) == dict(method.options)  # the defaults pass their own checks


def test_option_types_and_defaults_of_the_score_family():
    assert dict(REGISTRY["sscam"].options) == {
        "batch_size": 32,
        "samples": 8,
        "noise": 0.2,
        "seed": 0,
        "top_channels": None,
    }
    assert dict(REGISTRY["sscam"].option_types) == {
        "batch_size": int,
        "samples": int,
        "noise": float,
        "seed": int,
        "top_channels": int | None,
    }
    assert dict(REGISTRY["xgradcam"].options) == {}


def test_checked_options_are_converted_and_unknown_ones_named():
    checked = check_options(REGISTRY["smoothgradcam++"], {"noise": 1, "seed": 3})
    assert checked["noise"] == 1.0 and isinstance(checked["noise"], float) and checked["seed"] == 3
    with pytest.raises(ValueError, match="unknown option 'sede' for method 'sscam'"):
        check_options(REGISTRY["sscam"], {"sede": 1})


@pytest.mark.parametrize("name", xw.METHODS)
def test_run_is_the_one_entry_point(gap_net, image_batch, name):
    """`Method.run` takes the same context for every method and gives the parts explain shows."""
    with evaluation_mode(gap_net):
        cap = capture(gap_net, image_batch, "features", 1)
        options = check_options(REGISTRY[name], {"samples": 2} if "samples" in REGISTRY[name].options else {})
        parts = REGISTRY[name].run(MethodContext(gap_net, image_batch, "features", cap), **options)
    res = xw.explain(gap_net, image_batch, "features", method=name, target=1, **options)
    torch.testing.assert_close(parts.contributions, res.contributions)
    if not REGISTRY[name].uses_model:
        A, G, _ = reference_capture(gap_net, image_batch, "features", torch.tensor([1, 1]))
        torch.testing.assert_close(parts.contributions, REGISTRY[name].compute(A, G).contributions)
