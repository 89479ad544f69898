"""Constants of the shapes benchmark shared by training, the nets and the dataset runner.

Kept free of imports so that the runner can name the held-out images without importing the
training script. The nets' names (`SHAPES_MODELS`) live with the nets, in `nets.py`."""
from __future__ import annotations

CAM_LAYER = "features.block4"  # the last conv block of every shapes net
HELDOUT_SEED = 10_000_019  # not a training seed (those are seed * 1000 + epoch) for the default seed

__all__ = ["CAM_LAYER", "HELDOUT_SEED"]
