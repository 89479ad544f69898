#!/usr/bin/env python
"""End-to-end latency of the Explorer in JupyterLab in headless Chromium: control change to drawn map.

    .venv/bin/python benchmarks/bench_browser.py [--rounds 5] [--out PATH]

A private JupyterLab serves a one-cell notebook (`torch.set_num_threads(1)`, then `xw.Explorer()`:
EfficientNet-Lite0 and the bundled photo, offline, computing in its background thread as a user's
does). Playwright drives Chromium through the page's own controls: `select_option` on the class,
method, layer and colormap <select>s, and the arrow keys on the opacity slider's handle. Each round
makes five changes, each to a value different from the one shown:
  * class      a class not shown before (the next entry of the menu);
  * opacity    0.50 ↔ 0.55 (one slider step): a restyle, nothing recomputed;
  * colormap   Jet ↔ Viridis: a restyle, nothing recomputed;
  * method     XGrad-CAM ↔ Grad-CAM++;
  * layer      `features` ↔ `features.stage5` (a new gradient: the class changed since the last switch).
Timing is on the page's clock (`performance.now()`), so no Python round trip is inside it: from
the first input/change/keydown event of the control to the first Plotly event on the overlay
(`plotly_afterplot`, `plotly_restyle` or `plotly_update`) after which the heatmap's z and title
(or colorscale, or opacity) differ from before; "next frame" adds the wait for the following
animation frame. Bytes: every kernel websocket frame the page receives (counted in the page), from
the change to the draw, and to the end of the change (no frame for 1 s). The first round is a
warm-up; the figures are medians of `--rounds` rounds. Writes benchmarks/results/browser_latency_cpu.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _browser import (
    CHROMIUM_ARGS,
    JS_COUNT_WEBSOCKET_FRAMES,
    JS_DROPDOWN,
    JS_FIND_OVERLAY,
    JS_INSTALL_PROBE,
    JupyterLab,
    find_chromium,
    notebook_json,
)
from _common import RESULTS, load_average, machine_info, machine_markdown, package_version
from playwright.sync_api import Page, sync_playwright

CELL = "import torch\ntorch.set_num_threads(1)\nimport xcam_widgets as xw\n\nexplorer = xw.Explorer()\nexplorer"
CHANGES = ("class", "opacity", "colormap", "method", "layer")
WATCHED = {"class": "map", "opacity": "opacity", "colormap": "colorscale", "method": "map", "layer": "map"}
# the kernel-side benchmark's row for the same change (benchmarks/results/latency_cpu.json)
KERNEL_ROWS = {
    "class": "class",
    "opacity": "display",
    "colormap": "display",
    "method": "method (cached)",
    "layer": "layer",
}
START_TIMEOUT_MS = 300_000  # the notebook's first map: kernel start, model load, layer discovery, a loaded CPU
CHANGE_TIMEOUT_MS = 60_000
QUIET_S = 1.0  # a change has ended when no kernel frame arrived for this long


def select(page: Page, label: str, pattern: str) -> None:
    """Choose, through its <select>, the first option of the dropdown `label` whose text matches `pattern`."""
    menu = page.evaluate(JS_DROPDOWN, label)
    index = next(i for i, text in enumerate(menu["options"]) if re.search(pattern, text))
    box = (
        page.locator('[data-xcam="explorer"] .widget-dropdown')
        .filter(has=page.locator("label", has_text=re.compile(f"^{re.escape(label)}$")))
        .first
    )
    box.locator("select").select_option(index=index)


def change(page: Page, kind: str, round_: int) -> None:
    """Make the `round_`-th change of `kind` through the page's controls (alternating values)."""
    even = round_ % 2 == 0
    if kind == "class":
        menu = page.evaluate(JS_DROPDOWN, "class")
        select(page, "class", "^" + re.escape(menu["options"][round_ + 1]) + "$")
    elif kind == "opacity":
        slider = (
            page.locator('[data-xcam="explorer"] .widget-slider')
            .filter(has=page.locator("label", has_text=re.compile("^opacity$")))
            .first
        )
        slider.locator(".noUi-handle").first.press("ArrowRight" if even else "ArrowLeft")
    elif kind == "colormap":
        select(page, "colormap", "^Viridis$" if even else "^Jet$")
    elif kind == "method":
        select(page, "method", "^Grad-CAM\\+\\+$" if even else "^XGrad-CAM$")
    else:
        select(page, "layer", r"^\s*features\.stage5 " if even else r"^\s*features ")


def frames_since(page: Page, start: float) -> list[list[Any]]:
    return page.evaluate("(t) => window.__xcamFrames.filter(f => f[0] >= t)", start)


def wait_quiet(page: Page, limit: float = 20.0) -> None:
    """Until no kernel frame arrived for QUIET_S (at most `limit` s)."""
    deadline, count, since = time.monotonic() + limit, -1, time.monotonic()
    while time.monotonic() < deadline:
        now_count = page.evaluate("window.__xcamFrames.length")
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif time.monotonic() - since >= QUIET_S:
            return
        page.wait_for_timeout(100)


def measure_one(page: Page, kind: str, round_: int) -> dict[str, Any]:
    page.evaluate("(k) => window.__xcamArm(k)", WATCHED[kind])
    change(page, kind, round_)
    page.wait_for_function("() => window.__xcamResult", timeout=CHANGE_TIMEOUT_MS, polling=20)
    result = page.evaluate("window.__xcamResult")
    expected = {
        "method": "Grad-CAM++" if round_ % 2 == 0 else "XGrad-CAM",
        "layer": "features.stage5" if round_ % 2 == 0 else "features · ",
    }.get(kind, "")
    if expected and not result["title"].startswith(expected) and f"· {expected}" not in result["title"]:
        raise RuntimeError(f"after the {kind} change the map's title is {result['title']!r}, expected {expected!r}")
    wait_quiet(page)
    frames = frames_since(page, result["start"])
    to_draw = [f for f in frames if f[0] <= result["drawn"]]
    by_type: dict[str, int] = {}
    for _, size, msg_type, _ in to_draw:
        by_type[msg_type] = by_type.get(msg_type, 0) + size
    return {
        "round": round_,
        "title": result["title"],
        "event": result["event"],
        "drawn ms": result["drawn"] - result["start"],
        "next frame ms": result["frame"] - result["start"],
        "update arrived ms": next((f[0] for f in to_draw if f[3]), float("nan")) - result["start"],
        "bytes to draw": sum(f[1] for f in to_draw),
        "frames to draw": len(to_draw),
        "bytes to draw by msg_type": by_type,
        "bytes": sum(f[1] for f in frames),
        "frames": len(frames),
        "comm_msg bytes": sum(f[1] for f in frames if f[2] == "comm_msg"),
    }


def open_explorer(page: Page, lab: JupyterLab) -> float:
    """Open the notebook, Run All Cells from the menu; the seconds until the first map is drawn."""
    page.goto(lab.url, wait_until="domcontentloaded", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    page.wait_for_function(
        "() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')", timeout=120_000, polling=500
    )
    start = time.monotonic()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    page.wait_for_function(
        f"() => {{ const o = ({JS_FIND_OVERLAY})(); return o && o.rows > 1 && o.title && o.title !== 'computing…'; }}",
        timeout=START_TIMEOUT_MS,
        polling=500,
    )
    return time.monotonic() - start


def run(rounds: int) -> dict[str, Any]:
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium: install Debian's `chromium` (make browser-deps) or set XCAM_CHROMIUM")
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in CHANGES}
    with (
        JupyterLab(notebook_json([CELL]), env={"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}) as lab,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        version = browser.version
        page = browser.new_page(viewport={"width": 1280, "height": 1200}, device_scale_factor=1)
        page.add_init_script(JS_COUNT_WEBSOCKET_FRAMES)
        try:
            first_map_s = open_explorer(page, lab)
            page.evaluate(JS_INSTALL_PROBE)
            wait_quiet(page)
            for round_ in range(rounds + 1):  # round 0 is a warm-up
                for kind in CHANGES:
                    sample = measure_one(page, kind, round_)
                    print(kind, json.dumps(sample), flush=True)
                    if round_:
                        samples[kind].append(sample)
            status = page.locator('[data-xcam="explorer"] .widget-html-content').last.inner_text().strip()
        except Exception:
            shot = Path(tempfile.gettempdir()) / "xcam-bench-browser-failure.png"
            page.screenshot(path=str(shot))
            print(f"failed; screenshot {shot}; JupyterLab log:\n{lab.log_tail()}", flush=True)
            raise
        finally:
            browser.close()
    return {"first map s": first_map_s, "status": status, "samples": samples, "chromium": version}


def summary(samples: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("drawn ms", "next frame ms", "update arrived ms", "bytes to draw", "bytes", "frames", "comm_msg bytes")
    out = {key: statistics.median(s[key] for s in samples) for key in keys}
    out["min drawn ms"] = min(s["drawn ms"] for s in samples)
    out["max drawn ms"] = max(s["drawn ms"] for s in samples)
    return out


def kernel_side() -> dict[str, float]:
    """EfficientNet-Lite0's kernel-side medians from the committed latency_cpu.json (another run)."""
    path = RESULTS / "latency_cpu.json"
    if not path.exists():
        return {}
    rows = [r for r in json.loads(path.read_text()) if r["model"] == "efficientnet_lite0"]
    return rows[0]["changes ms"] if rows else {}


def report(data: dict[str, Any], info: str, end_load: str, rounds: int) -> str:
    kernel = kernel_side()
    lines = [
        f"# Explorer latency in a real browser, CPU ({dt.date.today().isoformat()})",
        "",
        f"`.venv/bin/python benchmarks/bench_browser.py --rounds {rounds}`",
        "",
        "JupyterLab in headless Chromium, driven by Playwright through the page's own controls; EfficientNet-Lite0",
        "(`xw.Explorer()`, offline default weights, layer `features`), 1 torch thread set in the notebook, the",
        "Explorer computing in its background thread. Times are on the page's clock: from the control's first",
        "input/change/keydown event to the Plotly event on the overlay after which the heatmap shows the new",
        'value ("drawn"), and to the next animation frame. Bytes: kernel websocket frames the page received,',
        "from the change to the draw, and for the whole change (until 1 s without a frame). Medians of "
        f"{rounds} changes per row",
        "(after a warm-up round), each to a value different from the one shown.",
        "",
        "Machine at the start of the run:",
        "",
        info,
        f"- load average at the end: {end_load}",
        f"- Chromium {data['chromium']}, JupyterLab {package_version('jupyterlab')}, ipywidgets "
        f"{package_version('ipywidgets')}, plotly {package_version('plotly')}",
        "",
        f"From Run All Cells to the first map drawn: {data['first map s']:.1f} s. Explorer status at the end: "
        f"{data['status']!r}.",
        "",
        "| change | drawn (median) | min–max | update arrived | next frame | bytes to draw (by msg_type) "
        "| bytes per change (frames) | of which comm_msg | kernel side* | Plotly event |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in CHANGES:
        samples = data["samples"][kind]
        s = summary(samples)
        events = "/".join(sorted({x["event"].removeprefix("plotly_") for x in samples}))
        types = sorted({t for x in samples for t in x["bytes to draw by msg_type"]})
        split = ", ".join(
            f"{t} {statistics.median(x['bytes to draw by msg_type'].get(t, 0) for x in samples):,.0f}" for t in types
        )
        own = kernel.get(KERNEL_ROWS[kind])
        lines.append(
            f"| {kind} | {s['drawn ms']:.0f} ms | {s['min drawn ms']:.0f}–{s['max drawn ms']:.0f} ms | "
            f"{s['update arrived ms']:.0f} ms | {s['next frame ms']:.0f} ms | {s['bytes to draw']:,.0f} "
            f"({split}) | {s['bytes']:,.0f} ({s['frames']:.0f}) | {s['comm_msg bytes']:,.0f} | "
            f"{'–' if own is None else f'{own:.1f} ms'} | {events} |"
        )
    lines += [
        "",
        "- *update arrived*: the first kernel frame after the change that carries a Plotly update "
        "(`_py2js_…`): the overlay's,",
        "  which the Explorer sends first; drawn − update arrived is the "
        "page's handling of it (ipywidgets and Plotly's redraw).",
        "- *bytes to draw*: every kernel frame from the change to the draw: the status messages, the "
        "control's echo and the",
        "  overlay's update. *Bytes per change* adds what follows the draw: the "
        "predictions and conservation figures, and the",
        "  kernel's answers to the figure's own page-to-kernel messages (Plotly's restyle/relayout deltas).",
        "- \\* *kernel side*: `latency_cpu.md` (`bench_latency.py`, no browser, `background=False`), "
        "another run on this machine;",
        "  the row that matches: display for opacity and colormap, method (cached) for method.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "browser_latency_cpu.md")
    args = parser.parse_args()
    info = machine_info()
    info["torch threads"] = "1 (set in the notebook's kernel)"
    data = run(args.rounds)
    data["load average at the end"] = load_average()
    text = report(data, machine_markdown(info), data["load average at the end"], args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"machine": info, **data}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
