#!/usr/bin/env python
"""The Gallery's table logic on an ImageNet-validation-sized table: sort, filter, page, thumbnails.

    python benchmarks/bench_gallery.py [--rows 50000] [--repeats 7] [--memory-rows 5000 50000] [--out PATH]

A synthetic evaluation table (2,500 images × 4 methods × 5 layers = 50,000 rows, the columns of
the runner's contract, ~5% NaN metrics, 0.5% error rows) and a 14×14 float16 raw map per row.
Display images are 224×224 crops of scikit-image's sample photos (so JPEG sizes are those of
photographs, not of noise). Targets (issue 13): a sort or filter and redraw of a page ≤ 150 ms,
a page change ≤ 300 ms, ≤ 200 KB per page of 24 thumbnails. Each time is the median of
`--repeats` runs, each on cold caches where the operation is meant to be cold (a new
`GalleryTable` whose column keys are built untimed), next to a floor measured in the same run:
a bare `np.argsort` of the sorted column, and a bare boolean mask + `np.flatnonzero`.
Memory (target: proportional to the table plus one page of thumbnails, not to the dataset's images):
tracemalloc's count of what the table, the Gallery's table logic and one page of thumbnails hold, for
each of `--memory-rows`, each in a forked process. Opening (target: a Ray run's part files of 50,000
rows in ≤ 5 s): a parts folder written with the runner's own part writer, read by `open_result`.
Writes benchmarks/results/gallery_cpu.md.
"""

from __future__ import annotations

import argparse
import base64
import io
import multiprocessing
import statistics
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import skimage.data
from _common import RESULTS, load_average, machine_markdown, median_seconds, package_version, rss_mb
from PIL import Image

from xcam_widgets.evaluation import BatchResult, open_result
from xcam_widgets.evaluation.parts import FORMAT, PartsFolder, encode_part
from xcam_widgets.evaluation.table import DEFAULT_METRICS, table_columns
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
DISPLAY_SIDE = 224
RAY_BATCH = 32  # images per part: the runner's default batch_size
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
    memory = memory_by_rows(args.memory_rows, from_draft)
    opening = opening_times(args.rows)
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
    return report(args, t, sizes, load_start, len(frame), memory, opening)


class CountingDisplay:
    """A display function (`jpeg_loader`) that counts the images it is asked for."""

    def __init__(self, display: Callable[[Any], np.ndarray]) -> None:
        self.display, self.calls = display, 0

    def __call__(self, image_id: Any) -> np.ndarray:
        self.calls += 1
        return self.display(image_id)


def held_bytes() -> int:
    """What tracemalloc counts as allocated now (numpy and pandas buffers included)."""
    return tracemalloc.get_traced_memory()[0]


def gallery_memory(rows: int, display: Callable[[Any], np.ndarray]) -> dict[str, float]:
    """Bytes held by a `rows`-row table and its maps, by a GalleryTable (all column keys, a sort and
    a filter cached) with its GalleryView, and by one page of thumbnails and their JPEGs."""
    counting = CountingDisplay(display)
    rss_start = rss_mb()
    tracemalloc.start()
    start = held_bytes()
    frame = synthetic_table(rows)
    maps = ArrayMaps(len(frame))
    data = held_bytes() - start
    tracemalloc.reset_peak()
    table = GalleryTable(frame)
    for column in table.columns:
        table.column(column)
    view = GalleryView(table)
    view.set_filter(Filter(outcome="misclassified"))
    view.set_filter(Filter())
    view.set_sort("energy", descending=True)
    page = view.set_page(3)
    gallery = held_bytes() - start - data
    gallery_peak = tracemalloc.get_traced_memory()[1] - start - data
    thumbs = page_thumbnails(page, counting, maps, ThumbnailStyle(side=96))
    jpegs = encode_all(thumbs)
    thumbnails = held_bytes() - start - data - gallery
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    images = len(np.unique(frame["image"]))
    return {
        "rows": len(frame),
        "images": images,
        "data": data,
        "gallery": gallery,
        "gallery_peak": gallery_peak,
        "thumbnails": thumbnails,
        "thumbnail_pixels": sum(t.nbytes for t in thumbs),
        "jpeg": sum(map(len, jpegs)),
        "peak": peak,
        "rss": (rss_mb() - rss_start) * 2**20,
        "decoded": counting.calls,
        "dataset_images": images * DISPLAY_SIDE * DISPLAY_SIDE * 3,
    }


def memory_by_rows(sizes: Sequence[int], display: Callable[[Any], np.ndarray]) -> list[dict[str, float]]:
    """`gallery_memory` for each size, each in a forked process (a clean heap and RSS baseline; fork
    passes `display`, a closure, without pickling it)."""
    context = multiprocessing.get_context("fork")
    results = []
    for rows in sizes:
        queue = context.SimpleQueue()
        child = context.Process(target=lambda n=rows, q=queue: q.put(gallery_memory(n, display)))
        child.start()
        results.append(queue.get())
        child.join()
    return results


def write_parts(folder: Path, frame: pd.DataFrame, maps: ArrayMaps, batch: int = RAY_BATCH) -> int:
    """`frame` as a Ray run writes it: a manifest, then one part per `batch` images, each through the
    runner's own `encode_part` and `PartsFolder.write`. Error rows have no map. Returns the part count."""
    columns = table_columns(DEFAULT_METRICS)
    images = int(frame["row"].max()) // (len(METHODS) * len(LAYERS)) + 1
    meta: dict[str, Any] = {
        "format": FORMAT,
        "images": None,
        "images_kind": "synthetic",
        "images_count": images,
        "model": "synthetic",
        "methods": list(METHODS),
        "layers": list(LAYERS),
        "target": None,
        "categories": [],
        "columns": columns,
        "settings": {},
    }
    parts = PartsFolder(folder)
    parts.claim(
        {
            "format": FORMAT,
            "methods": list(METHODS),
            "layers": list(LAYERS),
            "columns": columns,
            "images_count": images,
            "meta": meta,
        }
    )
    records = frame[columns].to_dict("records")
    keys = frame["row"].to_numpy()
    position = keys // (len(METHODS) * len(LAYERS))
    failed = (frame["error"] != "").to_numpy()
    count = 0
    for first in range(0, images, batch):
        positions = list(range(first, min(first + batch, images)))
        chosen = np.flatnonzero((position >= first) & (position < first + batch))
        rows = [records[i] for i in chosen]
        batch_maps = {int(keys[i]): maps[int(keys[i])] for i in chosen if not failed[i]}
        parts.write(positions, encode_part(positions, BatchResult(rows, batch_maps)))
        count += 1
    return count


def opening_times(rows: int, repeats: int = 3) -> dict[str, Any]:
    """Seconds to open a Ray run's parts folder of `rows` rows (`open_result`), and to build the
    Gallery's table from it, each the median of `repeats`; and what was opened."""
    frame = synthetic_table(rows)
    maps = ArrayMaps(len(frame))
    with tempfile.TemporaryDirectory(prefix="xcam-bench-parts-") as folder:
        path = Path(folder) / "results.parts"
        parts = write_parts(path, frame, maps)
        size = sum(f.stat().st_size for f in path.iterdir())
        result = open_result(path)
        opened = median_seconds(lambda: open_result(path), repeats=repeats, warmup=0)
        table_s = median_seconds(lambda: fresh_table(result.table)(), repeats=repeats, warmup=0)
        both = median_seconds(lambda: fresh_table(open_result(path).table)(), repeats=repeats, warmup=0)
    return {
        "rows": len(result.table),
        "maps": len(result.maps),
        "complete": result.complete,
        "parts": parts,
        "bytes": size,
        "open": opened,
        "table": table_s,
        "both": both,
        "same": bool(np.array_equal(result.table["row"].to_numpy(), frame["row"].to_numpy())),
        "repeats": repeats,
    }


def memory_lines(memory: list[dict[str, float]]) -> list[str]:
    mb = lambda n: f"{n / 1e6:.1f}"  # noqa: E731
    lines = [
        "## Memory",
        "",
        "tracemalloc's count of what stays allocated (numpy and pandas buffers included), each size in a forked "
        "process: the table (the synthetic DataFrame and its 14×14 float16 maps), the Gallery's table logic "
        "(a `GalleryTable` with every column's keys, a filter and a sort cached, and a `GalleryView` on page 4), "
        "and one page of 24 thumbnails (96 px RGB arrays and their JPEGs). 'dataset images' is what the "
        "dataset's images would take decoded at 224×224 RGB, had they been kept. The tracemalloc peak is the "
        "highest total (table included) while the Gallery's logic and the page were built; RSS growth is the "
        "child's, from the fork to the end, and also holds the temporaries of building the synthetic table and "
        "maps, and the modules first imported there.",
        "",
        "| rows | images | table MB | Gallery logic MB (peak while building) | page of thumbnails MB | "
        "bytes per row (table + logic) | tracemalloc peak MB | RSS growth MB | images decoded | dataset images MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in memory:
        per_row = (m["data"] + m["gallery"]) / m["rows"]
        lines.append(
            f"| {int(m['rows']):,} | {int(m['images']):,} | {mb(m['data'])} | {mb(m['gallery'])} "
            f"({mb(m['gallery_peak'])}) | {mb(m['thumbnails'])} | {per_row:.0f} | {mb(m['peak'])} | {mb(m['rss'])} | "
            f"{int(m['decoded'])} | {mb(m['dataset_images'])} |"
        )
    if len(memory) >= 2:
        small, large = memory[0], memory[-1]
        grow = lambda key: large[key] / small[key]  # noqa: E731
        lines += [
            "",
            f"From {int(small['rows']):,} to {int(large['rows']):,} rows (× {large['rows'] / small['rows']:.0f}): "
            f"the table grows × {grow('data'):.1f}, the Gallery's logic × {grow('gallery'):.1f}, the page of "
            f"thumbnails × {grow('thumbnails'):.2f}. Only the page's images are decoded "
            f"({int(large['decoded'])} calls of the display function for the page's 24 thumbnails, out of "
            f"{int(large['images']):,} images).",
        ]
    return lines + [""]


def opening_lines(opening: dict[str, Any]) -> list[str]:
    verdict = "met" if opening["open"] <= 5.0 else "MISSED"
    return [
        "## Opening a Ray run's parts",
        "",
        f"A parts folder of {opening['rows']:,} rows ({opening['parts']} parts of {RAY_BATCH} images, "
        f"{opening['bytes'] / 1e6:.1f} MB, {opening['maps']:,} maps of 14×14 float16: error rows have none) "
        "written with the runner's own writer (`PartsFolder.write(positions, encode_part(positions, "
        "BatchResult(rows, maps)))`), then read back; median of "
        f"{opening['repeats']}, files in the page cache. Rows read back in order: {opening['same']}; "
        f"complete: {opening['complete']}.",
        "",
        "| operation | s | target |",
        "|---|---:|---|",
        f"| `open_result(parts folder)` (table, summary, maps) | {opening['open']:.2f} | ≤ 5 s: {verdict} |",
        f"| `GalleryTable(result.table)` + all column keys | {opening['table']:.2f} |  |",
        f"| both | {opening['both']:.2f} |  |",
        "",
    ]


def report(
    args: argparse.Namespace,
    t: dict[str, float],
    sizes: dict[str, int],
    load_start: str,
    rows: int,
    memory: list[dict[str, float]],
    opening: dict[str, Any],
) -> str:
    floor_sort, floor_mask = t["floor: np.argsort(energy)"], t["floor: mask + np.flatnonzero"]
    lines = [
        "# Gallery table logic on the CPU",
        "",
        f"`python benchmarks/bench_gallery.py --rows {args.rows} --repeats {args.repeats} --memory-rows "
        f"{' '.join(map(str, args.memory_rows))}`: {rows:,} rows, "
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
    lines += memory_lines(memory) + opening_lines(opening)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--memory-rows", type=int, nargs="+", default=[5_000, 50_000])
    parser.add_argument("--out", default=str(RESULTS / "gallery_cpu.md"))
    args = parser.parse_args()
    text = run(args)
    with open(args.out, "w") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
