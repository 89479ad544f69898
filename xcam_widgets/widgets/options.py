"""A control for each option of a method, built from the method's signature (names, types, defaults).

New options of a method appear in the Explorer by themselves, and untouched controls hold the
method's own defaults, so the Explorer shows what `xw.explain(...)` gives with no options.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

import ipywidgets as W

from ..methods import Method

NONE_WORDS = ("", "none")  # what an optional number's text box reads as None


@dataclass(frozen=True)
class OptionControl:
    """One option's widget and how its value becomes the option's value (which may raise)."""

    name: str
    widget: W.ValueWidget
    parse: Callable[[Any], Any]

    @property
    def value(self) -> Any:
        return self.parse(self.widget.value)


def option_annotations(method: Method) -> dict[str, Any]:
    """The annotations of the method's options, resolved; an option without one gets None."""
    try:
        hints = typing.get_type_hints(method.compute)
    except (NameError, TypeError):  # an annotation that cannot be evaluated: fall back to the defaults' types
        hints = {}
    return {name: hints.get(name) for name in method.options}


def option_controls(method: Method) -> dict[str, OptionControl]:
    """A control for each option of `method` that has a type a control can edit."""
    annotations = option_annotations(method)
    controls = {}
    for name, default in method.options.items():
        control = control_for(name, annotations[name], default)
        if control is not None:
            controls[name] = control
    return controls


def control_for(name: str, annotation: Any, default: Any) -> OptionControl | None:
    """bool → Checkbox, int → IntText, float → FloatText, str → Text, Literal → Dropdown,
    Optional[int | float] → Text that reads "none" as None; None for any other type."""
    kind = annotation if annotation is not None else type(default)
    label = dict(
        description=name.replace("_", " "), style={"description_width": "initial"}, layout=W.Layout(width="190px")
    )
    args = typing.get_args(kind)
    if typing.get_origin(kind) is Literal:
        return OptionControl(name, W.Dropdown(options=list(args), value=default, **label), _same)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        numbers = [a for a in args if a is not type(None)]
        if len(args) == 2 and len(numbers) == 1 and numbers[0] in (int, float):
            text = "none" if default is None else str(default)
            widget = W.Text(value=text, placeholder="none", **label)
            return OptionControl(name, widget, _optional_number(name, numbers[0]))
        return None
    if kind is bool:
        return OptionControl(name, W.Checkbox(value=bool(default), indent=False, **label), bool)
    if kind is int:
        return OptionControl(name, W.IntText(value=default, **label), _same)
    if kind is float:
        return OptionControl(name, W.FloatText(value=default, **label), float)
    if kind is str:
        return OptionControl(name, W.Text(value=default, **label), str)
    return None


def _same(value: Any) -> Any:
    return value


def _optional_number(name: str, kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        text = text.strip()
        if text.lower() in NONE_WORDS:
            return None
        try:
            return kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise ValueError(f"option {name} must be {noun} or 'none', got {text!r}") from None

    return parse
