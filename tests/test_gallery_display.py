"""Thumbnails show the crop the model saw, also for a preprocess that crops without resizing first."""

from __future__ import annotations

import numpy as np
import skimage.data
import torch
from PIL import Image
from torchvision.transforms import v2

from xcam_widgets.evaluation import open_images
from xcam_widgets.gallery import DisplayImages


def test_a_crop_only_preprocess_frames_the_full_resolution_photo(tmp_path):
    """A centre crop of 224 from a 1024-px JPEG: decoding at a reduced scale would crop a quarter-size
    photo and show 4x the area. Oracle: the same crop cut by hand from the fully decoded file."""
    Image.fromarray(skimage.data.astronaut()).resize((1024, 1024)).save(tmp_path / "a.jpg", quality=95)
    preprocess = v2.Compose([v2.ToImage(), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True)])
    source = open_images(tmp_path, preprocess)
    images = DisplayImages(source, 96)
    images("a.jpg")  # the first call learns the model's input size from the source
    with Image.open(tmp_path / "a.jpg") as opened:
        by_hand = np.asarray(opened.convert("RGB"))[400:624, 400:624]  # (1024 - 224) / 2 = 400
    np.testing.assert_array_equal(images.full("a.jpg"), by_hand)
