"""Which cluster of a group is most worth a look: the ranking rule.

For cluster c of a group, with μ_c the mean of its members' features and μ_rest that of the group's
other rows, four terms in [0, 1], each larger for a more unusual strategy:

- distinctness D = r / (1 + r), r = ‖μ_c − μ_rest‖ / (the members' mean distance to μ_c): a cluster
  far from the rest of its group for how spread it is; a stereotyped strategy (a tag at one place,
  one channel pattern) is tight. Scale-free, so it means the same for maps and channel vectors;
- concentration C = the share of μ_c's positive mass in its top 5% entries (pixels or channels):
  a score carried by few places or channels, as a tag or a sticker is;
- smallness S = 1 − size_c / group size: a strategy of a minority of the group;
- low energy L = 1 − the members' mean `energy` (share of the map inside the object's mask), only
  where the run has masks.

score = the mean of the terms present; rank 1 = the highest score in the group (ties: the smaller cluster).
"""

from __future__ import annotations

import numpy as np

TOP_SHARE = 0.05  # concentration: the top 5% of the entries


def separation(members: np.ndarray, rest: np.ndarray) -> float:
    """r / (1 + r), r = ‖mean(members) − mean(rest)‖ / mean ‖member − mean(members)‖ (1 for a cluster of
    identical points apart from the rest, 0 for one centred on the rest)."""
    centre = members.mean(0)
    gap = float(np.linalg.norm(centre - rest.mean(0)))
    spread = float(np.linalg.norm(members - centre, axis=1).mean())
    if spread <= 0:
        return 1.0 if gap > 0 else 0.0
    return gap / (spread + gap)


def concentration(mean: np.ndarray, share: float = TOP_SHARE) -> float:
    """The share of `mean`'s positive mass in its ceil(share · d) largest entries (0 for no positive mass)."""
    positive = np.clip(np.asarray(mean, dtype=np.float64), 0, None)
    total = positive.sum()
    if total <= 0:
        return 0.0
    top = max(1, int(np.ceil(share * positive.size)))
    return float(np.sort(positive)[::-1][:top].sum() / total)


def cluster_terms(
    features: np.ndarray, evidence: np.ndarray, labels: np.ndarray, energy: np.ndarray | None = None
) -> list[dict[str, float]]:
    """The ranking terms and score of each cluster 0..k-1 (`labels`) of one group. `features`: what
    was clustered (distinctness); `evidence`: the non-normalised maps or channel shares (concentration);
    `energy`: per-row energy (NaN where unknown) or None."""
    n = len(labels)
    out = []
    for c in range(int(labels.max()) + 1):
        member = labels == c
        rest = ~member
        terms = {
            "distinctness": separation(features[member], features[rest]) if rest.any() else 0.0,
            "concentration": concentration(evidence[member].mean(0)),
            "smallness": 1.0 - member.sum() / n,
        }
        if energy is not None and np.isfinite(energy[member]).any():
            terms["low_energy"] = 1.0 - float(np.nanmean(energy[member]))
        terms["score"] = float(np.mean(list(terms.values())))
        out.append(terms)
    return out


def ranks(scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """1 for the highest score, then down; a tie goes to the smaller cluster."""
    order = np.lexsort((sizes, -np.asarray(scores)))
    result = np.empty(len(scores), dtype=np.int64)
    result[order] = np.arange(1, len(scores) + 1)
    return result


__all__ = ["TOP_SHARE", "cluster_terms", "concentration", "ranks", "separation"]
