"""Train the shapes nets on freshly generated images and write their weights and a record.

    python -m xcam_widgets.shapes.train [--seed 0] [--epochs N] [--only NAME ...] [--out xcam_widgets/data]

Each epoch draws new images (seed `seed * 1000 + epoch`), a share of them holding two shapes. The
loss is multi-label: binary cross-entropy on every logit against the multi-hot set of present
classes, so each logit is an independent detector and is high exactly when its shape is present.
That is what makes a class's CAM point at its own shape in a two-shape image.

`shapes_shortcut` trains on single shapes that carry their class's watermark
(`make_shortcut_shapes(marks="label")`) for two epochs. The mark is learnt within the first one and
leaves little loss to learn the shapes from, so the net is right for the wrong reason: it is judged
on the same held-out shapes with their mark, without any, and with the mark of a random class.

The cue nets (`CUE_MODELS`) train on single shapes, 95% of them carrying a sticker or a tag at a random
position off the shape (`cues.make_cue_shapes`): `shapes_sticker` and `shapes_tag` for 4 epochs with the cue
of the label's class (the 5% without a cue, and the shapes' larger area, keep some shape learning: about 97%
held-out accuracy without a cue, while a random class's cue is followed about 3 times in 4), their `_clean`
contrasts for 8 epochs with the cue of a random class, which carries no information. All are judged on
held-out single shapes with the label's cue on every image, on none, and with a random class's cue.

`shapes_seg` (`seg.ShapesSegNet`) trains on the same images with per-pixel cross-entropy against
`seg.pixel_labels` (the 6 shapes, then the background), and is judged by its mIoU on held-out images.

`shapes_det` (`detector.ShapesDetNet`) trains on the same images against the boxes around the shapes'
masks with CenterNet's loss (`detector.detection_loss`), and is judged by its AP at IoU 0.5.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .constants import CUE_MODELS, DET_MODEL, HELDOUT_SEED, SEG_MODEL
from .cues import make_cue_shapes
from .dataset import ShapesBatch, make_shapes, make_shortcut_shapes
from .detector import ShapesDetNet, average_precision, detection_loss, training_targets
from .nets import DATA_DIR, SHAPES_MODELS, SHORTCUT_MODEL, build, preprocess
from .seg import ShapesSegNet, confusion, mean_iou, pixel_labels

# VGG learns position by position
CUE_FRACTION = 0.95  # share of a cue net's training images that carry a cue
EPOCHS = {"shapes_gap": 12, "shapes_vgg": 24, SHORTCUT_MODEL: 2, SEG_MODEL: 8, DET_MODEL: 4}
EPOCHS.update({name: 4 if classes == "label" else 8 for name, (_, classes) in CUE_MODELS.items()})
TRAINABLE: tuple[str, ...] = (*SHAPES_MODELS, SEG_MODEL, DET_MODEL)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    seed: int = 0
    images_per_epoch: int = 5000
    pair_fraction: float = 0.4
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    watermarked: bool = False  # train on make_shortcut_shapes(marks="label")
    cue: str | None = None  # train on make_cue_shapes(kind=cue, cues=cue_classes, fraction=cue_fraction)
    cue_classes: str = "label"
    cue_fraction: float = 0.0


def config(name: str, seed: int = 0, epochs: int | None = None) -> TrainConfig:
    """The recorded training recipe of a shipped net; the shortcut net sees single watermarked shapes."""
    epochs = epochs or EPOCHS[name]
    if name == SHORTCUT_MODEL:
        return TrainConfig(epochs=epochs, seed=seed, pair_fraction=0.0, watermarked=True)
    if name in CUE_MODELS:
        kind, classes = CUE_MODELS[name]
        return TrainConfig(epochs, seed, pair_fraction=0.0, cue=kind, cue_classes=classes, cue_fraction=CUE_FRACTION)
    return TrainConfig(epochs=epochs, seed=seed)


def training_images(cfg: TrainConfig, epoch: int) -> ShapesBatch:
    """The fresh images of one epoch, drawn with seed `cfg.seed * 1000 + epoch`."""
    seed = cfg.seed * 1000 + epoch
    if cfg.cue is not None:
        return make_cue_shapes(
            cfg.images_per_epoch, seed, cfg.cue, cfg.cue_classes, cfg.cue_fraction, pair_fraction=cfg.pair_fraction
        )
    if cfg.watermarked:
        return make_shortcut_shapes(cfg.images_per_epoch, seed, marks="label", pair_fraction=cfg.pair_fraction)
    return make_shapes(cfg.images_per_epoch, seed=seed, pair_fraction=cfg.pair_fraction)


def train(name: str, cfg: TrainConfig) -> nn.Module:
    """A net trained with AdamW and a one-cycle learning rate; returned in eval mode."""
    torch.manual_seed(cfg.seed)
    model = {SEG_MODEL: ShapesSegNet, DET_MODEL: ShapesDetNet}.get(name, lambda: build(name))().train()
    steps_per_epoch = -(-cfg.images_per_epoch // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    for epoch in range(cfg.epochs):
        data = training_images(cfg, epoch)
        x, targets = preprocess(data.images), _training_targets(name, data)
        total = 0.0
        for idx in torch.randperm(len(data)).split(cfg.batch_size):
            loss = _loss(name, model, x[idx], [target[idx] for target in targets])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"{name} epoch {epoch + 1}/{cfg.epochs}: loss {total / len(data):.4f}", flush=True)
    return model.eval()


def _training_targets(name: str, data: ShapesBatch) -> tuple[Tensor, ...]:
    """The multi-hot present classes for a classifier, the `[N, 64, 64]` pixel classes for `shapes_seg`,
    the centre heatmaps, box terms and centre cells for `shapes_det`."""
    if name == DET_MODEL:
        return training_targets(data)
    return (pixel_labels(data),) if name == SEG_MODEL else (data.present,)


def _loss(name: str, model: nn.Module, x: Tensor, targets: list[Tensor]) -> Tensor:
    """CenterNet's loss for `shapes_det`, per-pixel cross-entropy for `shapes_seg`, binary cross-entropy
    per logit for a classifier."""
    if isinstance(model, ShapesDetNet):
        return detection_loss(*model.heads(x), *targets)
    if name == SEG_MODEL:
        return F.cross_entropy(model(x), targets[0])
    return F.binary_cross_entropy_with_logits(model(x), targets[0])


def accuracy(model: nn.Module, n: int, seed: int, pair_fraction: float = 0.0) -> float:
    """Share of `n` fresh images whose top-k classes are exactly the k shapes present (k = 1 or 2)."""
    return batch_accuracy(model, make_shapes(n, seed=seed, pair_fraction=pair_fraction))


@torch.no_grad()
def batch_accuracy(model: nn.Module, data: ShapesBatch) -> float:
    """Share of `data`'s images whose top-k classes are exactly the k shapes present (k = 1 or 2)."""
    logits = model(preprocess(data.images))
    k = (data.labels >= 0).sum(1)
    rank = logits.argsort(dim=1, descending=True).argsort(dim=1)  # 0 for the top class
    predicted = rank < k[:, None]
    return (predicted == data.present.bool()).all(1).float().mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--epochs", type=int, help=f"for every net (default: {EPOCHS})")
    parser.add_argument("--only", nargs="+", choices=TRAINABLE, help="train these nets, keep the others' record")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "shapes_models.json"
    record: dict[str, object] = json.loads(record_path.read_text()) if args.only and record_path.is_file() else {}
    record.update(heldout_seed=HELDOUT_SEED, threads=torch.get_num_threads(), torch=torch.__version__)
    for name in args.only or TRAINABLE:
        cfg = config(name, args.seed, args.epochs)
        start, cpu_start = time.perf_counter(), time.process_time()
        model = train(name, cfg)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        path = args.out / f"{name}.pt"
        torch.save(model.state_dict(), path)
        record[name] = {
            "config": asdict(cfg),
            "train_seconds": round(seconds, 1),  # wall clock
            "train_cpu_seconds": round(cpu_seconds, 1),  # all threads: wall x threads on an idle machine
            **_heldout_scores(name, model, cfg),
            "parameters": sum(p.numel() for p in model.parameters()),
            "bytes": path.stat().st_size,
        }
        print(name, record[name], flush=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")


def _heldout_scores(name: str, model: nn.Module, cfg: TrainConfig) -> dict[str, float]:
    if name == SEG_MODEL:
        return segmentation_scores(model)
    if name == DET_MODEL:
        return detection_scores(model)
    if cfg.cue is not None:
        return cue_accuracies(model, cfg.cue)
    return shortcut_accuracies(model) if cfg.watermarked else clean_accuracies(model)


def segmentation_scores(model: nn.Module, n: int = 1000) -> dict[str, float]:
    """mIoU over the 7 classes, pixels pooled over `n` held-out images (40% pairs), and over `n` pairs."""
    return {
        "heldout_miou": mean_iou(confusion(model, make_shapes(n, HELDOUT_SEED, pair_fraction=0.4))),
        "heldout_pair_miou": mean_iou(confusion(model, make_shapes(n, HELDOUT_SEED + 1, pair_fraction=1.0))),
    }


@torch.no_grad()
def detection_scores(model: nn.Module, n: int = 1000) -> dict[str, float]:
    """Mean AP and recall at IoU 0.5 and 0.75 on `n` held-out images (40% pairs) and on `n` pairs."""
    scores = {}
    for key, pairs in (("heldout", 0.4), ("heldout_pair", 1.0)):
        data = make_shapes(n, HELDOUT_SEED + int(pairs == 1.0), pairs)
        found = model(preprocess(data.images))
        for iou in (50, 75):
            scores[f"{key}_map{iou}"], scores[f"{key}_recall{iou}"] = average_precision(found, data, iou / 100)
    return scores


def clean_accuracies(model: nn.Module, n: int = 2000) -> dict[str, float]:
    """Accuracy on `n` held-out single shapes and on `n` held-out pairs."""
    return {
        "heldout_single_accuracy": accuracy(model, n, HELDOUT_SEED),
        "heldout_pair_accuracy": accuracy(model, n, HELDOUT_SEED + 1, pair_fraction=1.0),
    }


@torch.no_grad()
def shortcut_accuracies(model: nn.Module, n: int = 2000, seed: int = HELDOUT_SEED) -> dict[str, float]:
    """Accuracy on the same `n` held-out single shapes with their class's mark, with no mark, and with
    the mark of a random class; and how often the top class is that random mark's class."""
    marked, clean, misled = (make_shortcut_shapes(n, seed, marks) for marks in ("label", "none", "random"))
    follows = model(preprocess(misled.images)).argmax(1) == misled.marks
    return {
        "heldout_shortcut_accuracy": batch_accuracy(model, marked),
        "heldout_clean_accuracy": batch_accuracy(model, clean),
        "heldout_random_mark_accuracy": batch_accuracy(model, misled),
        "heldout_random_mark_followed": follows.float().mean().item(),
    }


@torch.no_grad()
def cue_accuracies(model: nn.Module, kind: str, n: int = 2000, seed: int = HELDOUT_SEED) -> dict[str, float]:
    """Accuracy on the same `n` held-out single shapes with the label's `kind` cue on every image, with
    none, and with a random class's cue on every image; and how often the top class is that random cue's
    class where it differs from the label (chance: 0)."""
    cued, clean, misled = (make_cue_shapes(n, seed, kind, cues) for cues in ("label", "none", "random"))
    predicted = model(preprocess(misled.images)).argmax(1)
    differs = misled.cues != misled.labels[:, 0]
    return {
        "heldout_cue_accuracy": batch_accuracy(model, cued),
        "heldout_clean_accuracy": batch_accuracy(model, clean),
        "heldout_random_cue_accuracy": batch_accuracy(model, misled),
        "heldout_random_cue_followed": (predicted == misled.cues)[differs].float().mean().item(),
    }


if __name__ == "__main__":
    main()
