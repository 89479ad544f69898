"""The two axioms of Fu et al. (2020), measured for any method, layer, image and class.

Conservation: S_c ≈ Σ_xy M. Sensitivity: the true drop d_k = S_c(A) − S_c(A with A_k := 0)
≈ the predicted drop p_k = Σ_xy contributions_k. For a piecewise-linear network after the layer,
S_c = Σ A·G + Σ_b b·∂S_c/∂b, so XGrad-CAM's conservation residual is exactly the bias term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .capture import capture, recorded_outputs, run_hooked
from .checks import positive_int
from .explain import Explanation, assemble
from .inputs import prepare_input
from .layers import LayerSpec, resolve_layer
from .methods import check_options, get_method
from .methods.context import MethodContext
from .methods.rerun import channel_drops
from .model_state import evaluation_mode
from .split import UntraceableError, trace_tail
from .targets import Scorer, Target

CANCELLING_RATIO = 0.01
_BIASED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Diagnosis:
    """Axiom diagnostics of one method at one layer; `[B]` or `[B, K]` tensors.

    `conservation_error` and `sensitivity_error` are None for methods whose weights have no
    score scale (`scaled` False, e.g. Score-CAM's softmax); `note` then says so. `bias_term` is
    Σ_b b·∂S_c/∂b over the biases and BatchNorm shifts after the layer (None where the network
    cannot be traced)."""

    method: str
    layer: str
    explanation: Explanation
    score: torch.Tensor
    map_sum: torch.Tensor
    conservation_error: torch.Tensor | None
    bias_term: torch.Tensor | None
    predicted_drop: torch.Tensor
    true_drop: torch.Tensor
    sensitivity_error: torch.Tensor | None
    sensitivity_r: torch.Tensor
    scaled: bool
    note: str


def pearson_r(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Pearson's r over the last dimension; NaN where either side has no variance."""
    p, d = p.double() - p.double().mean(-1, keepdim=True), d.double() - d.double().mean(-1, keepdim=True)
    return ((p * d).sum(-1) / (p.norm(dim=-1) * d.norm(dim=-1))).float()


def cancelling_channels(activations: torch.Tensor, ratio: float = CANCELLING_RATIO) -> torch.Tensor:
    """`[B]` count of channels whose activations nearly cancel: 0 < |Σ_xy A_k| < ratio · Σ_xy |A_k|.

    XGrad-CAM divides by Σ_xy A_k, so there α_k is ill-conditioned: a small change of A swings it,
    and α_k A_k can be large with either sign at every pixel. Non-negative activations (after a
    ReLU) never cancel: there |Σ A_k| = Σ |A_k|."""
    total = activations.sum(dim=(2, 3)).abs()
    mass = activations.abs().sum(dim=(2, 3))
    return ((total < ratio * mass) & (mass > 0)).sum(dim=1)


def _conditioning_note(activations: torch.Tensor) -> str:
    worst = int(cancelling_channels(activations).max())
    if worst == 0:
        return ""
    return (
        f"{worst} of {activations.shape[1]} channels have activations that nearly cancel "
        f"(|Σ A_k| < {CANCELLING_RATIO:.0%} of Σ |A_k|): XGrad-CAM's α_k = Σ A_k G_k / Σ A_k is ill-conditioned "
        "there. A layer after a ReLU has no such channels."
    )


def effective_bias(module: nn.Module) -> torch.Tensor | None:
    """The additive constant per output channel: b for conv/linear, β − γμ/√(σ²+ε) for BatchNorm (eval)."""
    bias = getattr(module, "bias", None)
    bias = bias if isinstance(bias, torch.Tensor) else None
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        mean, var = module.running_mean, module.running_var
        if mean is None or var is None:
            return bias
        gamma = module.weight if module.weight is not None else torch.ones_like(mean)
        beta = bias if bias is not None else torch.zeros_like(mean)
        return beta - gamma * mean / torch.sqrt(var + module.eps)
    return bias


def bias_term(model: nn.Module, x: torch.Tensor, layer: str, scorer: Scorer) -> torch.Tensor | None:
    """Σ_b b·∂S_c/∂b per image, over every conv, linear and BatchNorm after `layer`.

    ∂S_c/∂b_c is the output gradient of that channel summed over its positions, so one forward
    and one backward pass with the outputs of those modules recorded give it for every image."""
    try:
        tail = trace_tail(model, layer)
    except UntraceableError:
        return None
    modules = dict(model.named_modules())
    after = [(str(n.target), modules[str(n.target)]) for n in tail.module.graph.nodes if n.op == "call_module"]
    biases = [(name, m, effective_bias(m)) for name, m in after if isinstance(m, _BIASED)]
    biased = [(name, m, b) for name, m, b in biases if b is not None]
    if not biased:
        return torch.zeros(x.shape[0], device=x.device)
    output, recorders = run_hooked(model, x, [(name, m) for name, m, _ in biased])
    grads = torch.autograd.grad(scorer(output).sum(), recorded_outputs(recorders), allow_unused=True)
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for (_, _, bias), grad in zip(biased, grads):
        if grad is not None:
            per_channel = grad.double().sum(dim=tuple(range(2, grad.ndim))) if grad.ndim > 2 else grad.double()
            total += (per_channel * bias.detach().double()).sum(dim=1)
    return total.float()


def diagnose(
    model: nn.Module,
    x: torch.Tensor,
    layer: LayerSpec,
    method: str = "xgradcam",
    target: Target = None,
    *,
    batch_size: int = 64,
    **options: Any,
) -> Diagnosis:
    """Conservation and sensitivity of `method` at `layer` (see the module docstring).

    True drops re-run only the network after the layer, `batch_size` ablated copies at a time,
    or use the closed form W_ck·mean(A_k) where a GAP→linear head follows."""
    spec = get_method(method)
    method_options = check_options(spec, options)
    positive_int("batch_size", batch_size)
    name, _ = resolve_layer(model, layer)
    x = prepare_input(model, x)
    with evaluation_mode(model):
        ctx = MethodContext(model, x, name, capture(model, x, name, target))
        return diagnose_context(ctx, spec.name, method_options, batch_size)


def diagnose_context(ctx: MethodContext, method: str, options: dict[str, Any], batch_size: int) -> Diagnosis:
    """`diagnose` on an existing capture (the explorer's cache). Call inside `evaluation_mode`."""
    positive_int("batch_size", batch_size)
    spec = get_method(method)
    cap, name = ctx.capture, ctx.layer
    # The method shares this context, so the tail after the layer is made once for it and the drops.
    res = assemble(spec, name, cap, spec.run(ctx, **options), False, ctx.x.shape[2:])
    true = channel_drops(ctx, batch_size)
    bias = bias_term(ctx.model, ctx.x, name, cap.scorer)
    predicted = res.contributions.sum(dim=(2, 3))
    map_sum = res.raw.sum(dim=(1, 2))
    scaled = spec.scaled
    note = (
        ""
        if scaled
        else (
            f"{spec.title}'s weights have no score scale, so conservation and sensitivity errors are not defined; r is."
        )
    )
    if spec.name == "xgradcam":
        note = _conditioning_note(cap.activations[name])
    return Diagnosis(
        method=spec.name,
        layer=name,
        explanation=res,
        score=cap.score,
        map_sum=map_sum,
        conservation_error=(cap.score - map_sum).abs() / cap.score.abs() if scaled else None,
        bias_term=bias,
        predicted_drop=predicted,
        true_drop=true,
        sensitivity_error=(true - predicted).abs().sum(1) / true.abs().sum(1) if scaled else None,
        sensitivity_r=pearson_r(predicted, true),
        scaled=scaled,
        note=note,
    )
