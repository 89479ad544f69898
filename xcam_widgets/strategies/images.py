"""The run's images and model again, for prototype crops, latent vectors and the causal check.

Images come from `images=` if given, else the Gallery's source, else the run's meta spec (a folder,
a file list or a shapes spec; `open_images`). A run over a ShapesBatch or a Dataset kept no spec: its
images cannot be reopened without `images=`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..evaluation import Source, open_images
from ..evaluation.arguments import make_bundle
from ..evaluation.specs import is_shapes
from ..models import ModelBundle
from ..shapes import nets

NO_IMAGES = (
    "the run's images were held in memory (a ShapesBatch or a Dataset), so they cannot be reopened: "
    "pass images= (the same images as the run) to xw.discover"
)


@dataclass
class ImageAccess:
    """How to reopen the run's images: `given` (the `images=` argument, a Gallery's `Source` or the
    meta spec) or None, with `note` saying why not."""

    given: Any
    note: str = ""

    def source(self, preprocess: Any = None) -> Source:
        """The images as a `Source` (a Gallery's own source as it is)."""
        if self.given is None:
            raise ValueError(self.note)
        if isinstance(self.given, Source):
            return self.given
        if preprocess is None and is_shapes(self.given):
            preprocess = nets.preprocess  # the shapes nets' input, as `xw.evaluate` uses it
        return open_images(self.given, preprocess)

    def spec(self) -> Any:
        """What `make_bundle` needs to tell a shapes run (whose nets need no preprocess=)."""
        return getattr(self.given, "spec", None) if isinstance(self.given, Source) else self.given


def image_access(images: Any, gallery_source: Any, meta: dict) -> ImageAccess:
    if images is not None:
        return ImageAccess(images)
    if gallery_source is not None:
        return ImageAccess(gallery_source)
    if meta.get("images") is not None:
        return ImageAccess(meta["images"])
    return ImageAccess(None, NO_IMAGES)


def bundle_for(model: Any, access: ImageAccess) -> ModelBundle:
    """`model` (a name, a ModelBundle or a module) with its preprocess, as `xw.evaluate` takes it."""
    if model is None:
        raise ValueError("this needs the model: pass model= (the model of the run, a ModelBundle or its name)")
    return make_bundle(model, None, None, access.spec())


def model_source(model: Any, access: ImageAccess) -> tuple[ModelBundle, Source]:
    """The bundle and the images preprocessed for it (a Gallery's source keeps its own preprocess)."""
    bundle = bundle_for(model, access)
    return bundle, access.source(bundle.preprocess)


__all__ = ["NO_IMAGES", "ImageAccess", "bundle_for", "image_access", "model_source"]
