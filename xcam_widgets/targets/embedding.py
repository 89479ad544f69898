"""Embedding target: cosine similarity to a reference embedding (CLIP-like and metric-learning models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .rows import OutputTarget, RowsOf, rows_of_spec

_EMBEDDING_ATTRIBUTES = ("image_embeds", "embeddings", "pooler_output")


def embedding_of(output: Any) -> torch.Tensor:
    """The `[B, D]` embeddings in a model output: a tensor (flattened after the batch axis), an
    attribute `image_embeds`, `embeddings` or `pooler_output` (Hugging Face), or a tuple's first item."""
    if isinstance(output, torch.Tensor):
        embedding = output
    else:
        found = [getattr(output, name, None) for name in _EMBEDDING_ATTRIBUTES]
        tensors = [t for t in found if isinstance(t, torch.Tensor)]
        if tensors:
            embedding = tensors[0]
        elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            embedding = output[0]
        else:
            raise TypeError(
                f"cannot find an embedding in a model output of type {type(output).__name__}; "
                "pass embedding=callable(output) -> [B, D]"
            )
    if embedding.ndim < 2:
        raise ValueError(f"the embedding has shape {tuple(embedding.shape)}, expected [B, D]")
    return embedding.flatten(1)


@dataclass(frozen=True, eq=False)
class EmbeddingSimilarity(OutputTarget):
    """S = cos(e, r) = e·r / (‖e‖ ‖r‖), e the image's embedding, r the `reference` (`[D]` for every
    image, or `[B, D]`). `embedding` picks e from the model output (default `embedding_of`)."""

    reference: Any
    embedding: Callable[[Any], torch.Tensor] = embedding_of

    def __post_init__(self) -> None:
        ref = self.reference
        ref = ref.detach() if isinstance(ref, torch.Tensor) else torch.as_tensor(np.asarray(ref, dtype=np.float32))
        if ref.ndim == 1:
            ref = ref[None]
        if ref.ndim != 2 or 0 in ref.shape or not ref.dtype.is_floating_point:
            raise ValueError(f"reference must be a float [D] or [B, D] embedding, got shape {tuple(ref.shape)}")
        if not torch.isfinite(ref).all() or (ref.norm(dim=1) == 0).any():
            raise ValueError("reference must be finite and non-zero: cosine similarity to a zero vector is undefined")
        object.__setattr__(self, "reference", ref)
        if not callable(self.embedding):
            raise TypeError(f"embedding must be a callable output -> [B, D], got {type(self.embedding).__name__}")

    def __call__(self, output: Any, rows_of: RowsOf = None) -> torch.Tensor:
        embedding = self.embedding(output)
        if embedding.shape[1] != self.reference.shape[1]:
            raise ValueError(
                f"the model's embedding has {embedding.shape[1]} dimensions, the reference {self.reference.shape[1]}"
            )
        reference = rows_of_spec(self.reference, embedding.shape[0], rows_of, "reference")
        return F.cosine_similarity(embedding, reference.to(embedding), dim=1)
