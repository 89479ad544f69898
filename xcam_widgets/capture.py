"""One forward and one backward pass → activations A and gradients G = ∂S_c/∂A of many layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .layers import LayerSpec, resolve_layers
from .model_state import evaluation_mode
from .reshape import infer_reshape
from .targets import Scorer, Target, logits_of, make_scorer

Reshape = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Capture:
    """What one pass saw: per-layer A and G (`[B, K, h, w]`, detached), the scores, the scorer."""

    logits: torch.Tensor | None
    score: torch.Tensor
    scorer: Scorer
    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    reshapes: dict[str, Reshape | None] = field(default_factory=dict)  # the caller's, or the inferred one


class _Recorder:
    """Forward hook that keeps a layer's output as a grad-tracking tensor.

    It hands a clone downstream, so an in-place op after the layer (ResNet's and DenseNet's
    `ReLU(inplace=True)`) cannot change the recorded A or break autograd. A module that runs twice
    in one forward pass (ResNet's shared `relu`) has no single A, so it is refused.
    """

    def __init__(self, name: str):
        self.name = name
        self.output: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if self.output is not None:
            raise ValueError(
                f"layer {self.name!r} runs more than once in one forward pass, so it has no single "
                "activation map; pick a layer that runs once (for example the block that contains it)"
            )
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"layer {self.name!r} returns a {type(output).__name__}, not a tensor")
        self.output = output if output.requires_grad else output.detach().requires_grad_(True)
        return self.output.clone()


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def to_grid(name: str, tensor: torch.Tensor, reshape: Reshape | None) -> torch.Tensor:
    """Bring a layer output to `[B, K, h, w]`, through `reshape` for token layers. Half-precision
    values are widened to float32, so sums over many channels and pixels cannot overflow."""
    grid = reshape(tensor) if reshape is not None else tensor
    if grid.dtype in _LOW_PRECISION:
        grid = grid.float()
    if grid.ndim != 4:
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(tensor.shape)}, which has no [K, h, w] spatial grid; "
            "choose a convolutional layer, or pass reshape= (e.g. xw.token_grid() for vision transformers)"
        )
    return grid


def run_hooked(
    model: nn.Module, x: torch.Tensor, layers: Sequence[tuple[str, nn.Module]]
) -> tuple[Any, list[_Recorder]]:
    """Forward `x` in eval mode with recorders on `layers`; the hooks live only while this call
    holds the model's lock, and are removed before returning or raising."""
    refuse_torchscript(model, layers)
    recorders = [_Recorder(name) for name, _ in layers]
    with evaluation_mode(model):
        handles = [module.register_forward_hook(rec) for (_, module), rec in zip(layers, recorders)]
        try:
            output = model(x)
        finally:
            for handle in handles:
                handle.remove()
    return output, recorders


def refuse_torchscript(model: nn.Module, layers: Sequence[tuple[str, nn.Module]]) -> None:
    """A TorchScript model (`torch.jit.script` or `torch.jit.trace`) runs compiled code that calls
    no Python forward hooks, so a layer's activations and gradients cannot be recorded."""
    scripted = [name for name, module in layers if isinstance(module, torch.jit.ScriptModule)]
    if isinstance(model, torch.jit.ScriptModule) or scripted:
        where = "the model" if isinstance(model, torch.jit.ScriptModule) else f"layer {scripted[0]!r}"
        raise TypeError(
            f"{where} is a TorchScript module (torch.jit.script or torch.jit.trace), which is not supported: "
            "its compiled forward calls no Python forward hooks, so the layer's activations and gradients "
            "cannot be recorded. Pass the original nn.Module (before scripting or tracing) instead."
        )


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: LayerSpec | Sequence[LayerSpec],
    target: Target = None,
    reshape: Reshape | None = None,
    scorer: Scorer | None = None,
    rows_of: torch.Tensor | None = None,
) -> Capture:
    """A and G for every layer from a single forward and a single `autograd.grad` call.

    No parameter's `.grad` is touched: gradients are taken only with respect to the recorded
    activations. The model runs in eval mode and its flags are restored afterwards. `scorer` and
    `rows_of` reuse the classes of an earlier pass for copies of its images (noisy samples).
    """
    resolved = resolve_layers(model, layers)
    with evaluation_mode(model):
        output, recorders = run_hooked(model, x, resolved)
        scorer = scorer or make_scorer(target, output)
        score = scorer(output, rows_of)
        check_score_shape(score, x.shape[0])
        outputs = recorded_outputs(recorders)
        reshapes = {
            rec.name: reshape
            if reshape is not None
            else infer_reshape(model, tuple(x.shape), rec.name, tuple(out.shape))
            for rec, out in zip(recorders, outputs)
        }
        if not score.requires_grad:
            raise ValueError("the score does not depend on the chosen layer(s) through autograd")
        grads = torch.autograd.grad(score.sum(), outputs, allow_unused=True)
    check_finite_scores(score)  # after the backward pass: on a GPU, checking reads the score back and waits
    activations, gradients = {}, {}
    for rec, act, grad in zip(recorders, outputs, grads):
        if grad is None:
            raise ValueError(f"the score does not depend on layer {rec.name!r}")
        activations[rec.name] = to_grid(rec.name, act.detach(), reshapes[rec.name])
        gradients[rec.name] = to_grid(rec.name, grad.detach(), reshapes[rec.name])
    return Capture(
        logits=_logits_or_none(output),
        score=score.detach(),
        scorer=scorer,
        activations=activations,
        gradients=gradients,
        reshapes=reshapes,
    )


def recorded_outputs(recorders: Sequence[_Recorder]) -> list[torch.Tensor]:
    """What each recorder saw; a layer that did not run is an error."""
    outputs = []
    for rec in recorders:
        if rec.output is None:
            raise ValueError(f"layer {rec.name!r} did not run in the model's forward pass")
        outputs.append(rec.output)
    return outputs


def check_score_shape(score: torch.Tensor, batch: int) -> None:
    """The score must be `[B]`: one number per image."""
    if score.shape != (batch,):
        raise ValueError(f"the target score has shape {tuple(score.shape)}, expected [{batch}]")


def check_finite_scores(score: torch.Tensor) -> None:
    """The score must be finite: a NaN score would silently give a NaN map."""
    if not torch.isfinite(score).all():
        bad = int((~torch.isfinite(score)).nonzero()[0])
        raise ValueError(f"the target score of image {bad} is {score[bad].item()}: the model output is not finite")


def _logits_or_none(output: Any) -> torch.Tensor | None:
    """The detached logits for showing predictions; None for outputs a target callable handles."""
    try:
        return logits_of(output).detach()
    except (TypeError, ValueError):
        return None
