#!/usr/bin/env python
"""The Gallery's table logic on an ImageNet-validation-sized table: sort, filter, page, thumbnails.

    python benchmarks/bench_gallery.py [--rows 50000] [--repeats 7] [--out PATH]

A synthetic evaluation table (2,500 images × 4 methods × 5 layers = 50,000 rows, the columns of
the runner's contract, ~5% NaN metrics, 0.5% error rows) and a 14×14 float16 raw map per row.
Display images are 224×224 crops of scikit-image's sample photos (so JPEG sizes are those of
photographs, not of noise). Targets (issue 13): a sort or filter and redraw of a page ≤ 150 ms,
a page change ≤ 300 ms, ≤ 200 KB per page of 24 thumbnails. Each time is the median of
`--repeats` runs, each on cold caches where the operation is meant to be cold (a new
`GalleryTable` whose column keys are built untimed), next to a floor measured in the same run:
a bare `np.argsort` of the sorted column, and a bare boolean mask + `np.flatnonzero`.
Writes benchmarks/results/gallery_cpu.md.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import numpy as np
import pandas as pd
import skimage.data
from _common import RESULTS, load_average, machine_markdown, package_version
from PIL import Image

from xcam_widgets.gallery import (
    Filter,
    GalleryTable,
    GalleryView,
    Range,
    Sort,
    ThumbnailStyle,
    caption_lines,
    class_summary,
    contact_sheet_html,
    contact_sheet_png,
    distribution,
    encode_all,
    page_thumbnails,
)

METHODS = ("gradcam", "xgradcam", "gradcam++", "scorecam")
LAYERS = ("layer1", "layer2", "layer3", "layer4", "fc_in")
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
PAGE = 24
MAP_SIDE = 14
TARGETS_MS = {"TOTAL sort or filter": 150.0, "TOTAL page change": 300.0}  # by name prefix


def synthetic_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` rows of the runner's table: image × method × layer, with plausible metric values."""
    rng = np.random.default_rng(seed)
    per_image = len(METHODS) * len(LAYERS)
    images = -(-rows // per_image)
    label = rng.integers(0, 1000, images)
    predicted = np.where(rng.random(images) < 0.76, label, rng.integers(0, 1000, images))
    index = np.arange(rows)
    image = index // per_image
    metric = lambda low, high: np.where(rng.random(rows) < 0.05, np.nan, rng.uniform(low, high, rows))  # noqa: E731
    error = np.where(rng.random(images) < 0.005, "cannot identify image file", "")[image]
    frame = pd.DataFrame(
        {
            "row": index,
            "image": [f"n{lab:08d}/ILSVRC2012_val_{i:08d}.JPEG" for i, lab in zip(image, label[image])],
            "method": np.array(METHODS)[(index // len(LAYERS)) % len(METHODS)],
            "layer": np.array(LAYERS)[index % len(LAYERS)],
            "class": label[image],
            "class_name": [f"class {c}" for c in label[image]],
            "score": rng.normal(8, 3, rows),
            "label": label[image],
            "predicted": predicted[image],
            "confidence": rng.uniform(0, 1, rows),
            "correct": (label == predicted)[image],
            "error": error,
            "conservation_error": metric(0, 0.5),
            "sensitivity_error": metric(0, 0.5),
            "sensitivity_r": metric(-1, 1),
            "average_drop": metric(0, 1),
            "increase": np.round(metric(0, 1)),
            "deletion": metric(0, 1),
            "insertion": metric(0, 1),
            "pointing": np.round(metric(0, 1)),
            "energy": metric(0, 1),
        }
    )
    failed = frame["error"] != ""
    frame.loc[failed, ["score", "energy", "deletion", "insertion", "pointing"]] = np.nan
    return frame


class ArrayMaps(Mapping):
    """Raw float16 maps `[rows, h, w]` keyed by row: a stand-in for the runner's MapStore."""

    def __init__(self, rows: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        ys, xs = np.mgrid[:MAP_SIDE, :MAP_SIDE]
        centres = rng.uniform(0, MAP_SIDE, (rows, 2))
        blobs = np.exp(-((ys - centres[:, :1, None]) ** 2 + (xs - centres[:, 1:, None]) ** 2) / 8.0)
        self.maps = (blobs + rng.normal(0, 0.2, blobs.shape) - 0.3).astype(np.float16)

    def __getitem__(self, row: int) -> np.ndarray:
        if not 0 <= row < len(self.maps):
            raise KeyError(row)
        return self.maps[row]

    def __contains__(self, row: object) -> bool:
        return isinstance(row, int) and 0 <= row < len(self.maps)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.maps)))

    def __len__(self) -> int:
        return len(self.maps)


def photo_crops(count: int = 64, side: int = 224, seed: int = 2) -> list[np.ndarray]:
    """`count` side×side crops of the sample photos: the display images."""
    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB")) for name in PHOTOS]
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        s = int(min(h, w) * rng.uniform(0.5, 1.0))
        top, left = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        crop = Image.fromarray(photo[top : top + s, left : left + s]).resize((side, side), Image.Resampling.BILINEAR)
        crops.append(np.asarray(crop))
    return crops


def stable_index(image_id: Any, count: int) -> int:
    """Which of `count` photos shows `image_id`: the same in every run (str hashes are salted)."""
    return zlib.crc32(str(image_id).encode()) % count


def jpeg_loader(crops: list[np.ndarray], draft: int | None = None) -> Callable[[Any], np.ndarray]:
    """A display function that decodes a 500×375 JPEG and resizes it to 224×224, as a folder source
    would; with `draft`, libjpeg decodes at the smallest 1/2^k scale still at least `draft` pixels."""
    files = []
    for crop in crops:
        buffer = io.BytesIO()
        Image.fromarray(crop).resize((500, 375)).save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())

    def display(image_id: Any) -> np.ndarray:
        data = files[stable_index(image_id, len(files))]
        with Image.open(io.BytesIO(data)) as image:
            if draft is not None:
                image.draft("RGB", (draft, draft))
            return np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))

    return display


def median_ms(fn: Callable[[Any], Any], setup: Callable[[], Any] = lambda: None, repeats: int = 7) -> float:
    """The median of `repeats` timings of `fn(setup())`, the setup untimed, after one warm-up."""
    fn(setup())
    times = []
    for _ in range(repeats):
        state = setup()
        start = time.perf_counter()
        fn(state)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def fresh_table(frame: pd.DataFrame) -> Callable[[], GalleryTable]:
    """A setup: a new GalleryTable (empty caches) with every column's keys already built."""

    def setup() -> GalleryTable:
        table = GalleryTable(frame)
        for column in table.columns:
            table.column(column)
        return table

    return setup


def run(args: argparse.Namespace) -> str:
    load_start = load_average()
    frame = synthetic_table(args.rows)
    maps = ArrayMaps(len(frame))
    crops = photo_crops()
    in_memory = lambda image_id: crops[stable_index(image_id, len(crops))]  # noqa: E731
    from_jpeg, from_draft = jpeg_loader(crops), jpeg_loader(crops, draft=96)
    style = ThumbnailStyle(side=96)
    r = args.repeats
    energy = GalleryTable(frame).column("energy").keys
    classes = tuple(int(c) for c in np.unique(frame["class"])[:300])
    query = Filter(classes=classes, outcome="misclassified", ranges=(Range("energy", 0.0, 0.5),))
    setup = fresh_table(frame)

    def sorted_table() -> GalleryTable:
        table = setup()
        table.select(Filter(), Sort("energy", True))
        return table

    pages = iter(range(10, 10_000))
    warm = setup()
    selection = warm.select(Filter(), Sort("energy", True))
    page = selection.page(3, PAGE)
    thumbs = page_thumbnails(page, in_memory, maps, style)
    jpegs = encode_all(thumbs)
    t: dict[str, float] = {
        "floor: np.argsort(energy)": median_ms(lambda _: np.argsort(energy), repeats=r),
        "floor: mask + np.flatnonzero": median_ms(lambda _: np.flatnonzero((energy >= 0) & (energy <= 0.5)), repeats=r),
        "build GalleryTable + all column keys": median_ms(lambda _: setup(), repeats=max(3, r // 2)),
        "sort (cold) + page": median_ms(lambda tb: tb.select(Filter(), Sort("energy", True)).page(0, PAGE), setup, r),
        "filter (cold, sort cached) + page": median_ms(
            lambda tb: tb.select(query, Sort("energy", True)).page(0, PAGE), sorted_table, r
        ),
        "filter + sort (both cold) + page": median_ms(
            lambda tb: tb.select(query, Sort("deletion")).page(0, PAGE), setup, r
        ),
        "cached view + page": median_ms(lambda _: warm.select(Filter(), Sort("energy", True)).page(5, PAGE), repeats=r),
        "page change (extract page)": median_ms(lambda _: selection.page(next(pages), PAGE), repeats=r),
        "24 thumbnails (images in memory)": median_ms(
            lambda _: page_thumbnails(page, in_memory, maps, style), repeats=r
        ),
        "24 thumbnails (images decoded from JPEG)": median_ms(
            lambda _: page_thumbnails(page, from_jpeg, maps, style), repeats=r
        ),
        "24 thumbnails (JPEG decoded with Image.draft at 96 px)": median_ms(
            lambda _: page_thumbnails(page, from_draft, maps, style), repeats=r
        ),
        "encode 24 thumbnails (JPEG q85)": median_ms(lambda _: encode_all(thumbs), repeats=r),
        "class summary (all rows, energy)": median_ms(lambda _: class_summary(selection, "energy"), repeats=r),
        "distribution per method (all rows, 30 bins)": median_ms(
            lambda _: distribution(selection, "energy"), repeats=r
        ),
    }
    query_ms = max(t["sort (cold) + page"], t["filter + sort (both cold) + page"])
    for decode, drawing in (
        ("full JPEG decode", "24 thumbnails (images decoded from JPEG)"),
        ("Image.draft decode", "24 thumbnails (JPEG decoded with Image.draft at 96 px)"),
    ):
        draw = t[drawing] + t["encode 24 thumbnails (JPEG q85)"]
        t[f"TOTAL sort or filter + page + thumbnails ({decode})"] = query_ms + draw
        t[f"TOTAL page change + thumbnails ({decode})"] = t["page change (extract page)"] + draw
    view = GalleryView(warm)
    view.set_sort("energy", descending=True)
    captions = [caption_lines(rec, "energy") for rec in view.page.frame.to_dict("records")]
    sheet_png = contact_sheet_png(thumbs, captions)
    sheet_html = contact_sheet_html(thumbs, captions)
    csv_rows = len(warm.select(query))
    t[f"CSV of the filtered selection ({csv_rows} rows)"] = median_ms(lambda _: warm.select(query).to_csv(), repeats=3)
    t["contact sheet PNG (24)"] = median_ms(lambda _: contact_sheet_png(thumbs, captions), repeats=3)
    sizes = {
        "24 thumbnails, JPEG q85 (bytes sent as binary buffers)": sum(map(len, jpegs)),
        "the same as base64 (data URIs)": sum(len(base64.b64encode(j)) for j in jpegs),
        "24 thumbnails, PNG": sum(map(len, encode_all(thumbs, "PNG"))),
        "contact sheet PNG (24, captions)": len(sheet_png),
        "contact sheet HTML (24, base64 JPEG)": len(sheet_html.encode()),
    }
    return report(args, t, sizes, load_start, len(frame))


def report(args: argparse.Namespace, t: dict[str, float], sizes: dict[str, int], load_start: str, rows: int) -> str:
    floor_sort, floor_mask = t["floor: np.argsort(energy)"], t["floor: mask + np.flatnonzero"]
    lines = [
        "# Gallery table logic on the CPU",
        "",
        f"`python benchmarks/bench_gallery.py --rows {args.rows} --repeats {args.repeats}`: {rows:,} rows, "
        f"pages of {PAGE}, 96 px thumbnails of 224×224 display images, {MAP_SIDE}×{MAP_SIDE} float16 maps. "
        "Median of the repeats; cold means a new table (column keys built untimed, no cached sort or selection).",
        "",
        "## Machine",
        "",
        machine_markdown(),
        f"- load average at the start: {load_start}; at the end: {load_average()}",
        f"- numpy {package_version('numpy')}, pandas {package_version('pandas')}, pillow {package_version('pillow')}",
        "",
        "## Times",
        "",
        "| operation | ms | × argsort floor | target |",
        "|---|---:|---:|---|",
    ]
    for name, ms in t.items():
        target = next((ms for prefix, ms in TARGETS_MS.items() if name.startswith(prefix)), None)
        verdict = "" if target is None else f"≤ {target:.0f} ms: {'met' if ms <= target else 'MISSED'}"
        lines.append(f"| {name} | {ms:.2f} | {ms / floor_sort:.1f} | {verdict} |")
    lines += [
        "",
        f"Floors in this run: `np.argsort` of the {rows:,}-value column {floor_sort:.2f} ms; a two-sided "
        f"mask + `np.flatnonzero` {floor_mask:.2f} ms. The TOTAL rows add the slowest cold query (or the page "
        "extraction), drawing 24 thumbnails whose images are decoded from 500×375 JPEGs (a new order shows new "
        "images; full decode, or libjpeg's reduced-scale `Image.draft` decode) and encoding them. 'images in memory' "
        "is the same drawing with the display images already decoded: the Gallery's own share of the work.",
        "",
        "## Bytes",
        "",
        "| payload | KB | target |",
        "|---|---:|---|",
    ]
    for name, size in sizes.items():
        met = "met" if size <= 200_000 else "MISSED"
        aim = f"≤ 200 KB: {met}" if name.startswith("24 thumbnails, JPEG") else ""
        lines.append(f"| {name} | {size / 1000:.1f} | {aim} |")
    lines += ["", "Contact sheets are drawn with PIL (kaleido is not installed); HTML inlines base64 JPEGs.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS / "gallery_cpu.md"))
    args = parser.parse_args()
    text = run(args)
    with open(args.out, "w") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
