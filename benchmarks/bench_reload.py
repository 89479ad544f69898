#!/usr/bin/env python
"""Reload stress run: how often a reloaded JupyterLab page restores the Explorer.

    .venv/bin/python benchmarks/bench_reload.py [--reloads 20] [--out PATH]

A private JupyterLab (the browser tests' helpers, `tests/browser_helpers.py`) runs a two-cell notebook: the
quick start's `xw.Explorer()` and a change of class from code. The page is saved, then reloaded
`--reloads` times; after each reload the run waits until the Explorer's heatmap is drawn with the last
state's title ("restored"), a widget output shows "Error displaying widget: …" (the failure of issue 25,
item 20), or 240 s pass ("timeout"). It goes on after a failure and counts every outcome. The kernel
also prints the size of the widget state a reloading page restores in one message (ipywidgets'
`request_states` reply). Writes benchmarks/results/browser_reload_cpu.md with the machine and its
load (the load average before and after: the failure is a race that load makes likelier).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_helpers import chromium_context, find_chromium, kernel_idle, notebook_lab, run_notebook_in_page, wait_for  # noqa: E402
from browser_js import JS_FIND_EXPLORER, JS_HEATMAP, JS_WIDGET_ERRORS  # noqa: E402

CELLS = [
    """\
import torch
torch.set_num_threads(1)
import xcam_widgets as xw

explorer = xw.Explorer()
explorer""",
    """\
import json
from ipywidgets.widgets.widget import _instances
explorer.wait()
explorer.target.value = explorer.target.options[1][1]
explorer.wait()
states = {w.model_id: w.get_state() for w in list(_instances.values())}
print("RESTORE", len(states), len(json.dumps(states, default=str)))
print("TITLE", explorer.overlay.layout.title.text)""",
]
TIMEOUT = 240  # s for one reload


def _drawn(page) -> dict | None:
    if not page.evaluate(JS_FIND_EXPLORER):
        return None
    heat = page.evaluate(JS_HEATMAP)
    return heat if heat and heat["rows"] > 1 and heat["title"] and heat["painted"] else None


def _printed(page, tag: str) -> str | None:
    for text in page.locator(".jp-CodeCell .jp-OutputArea-output").all_inner_texts():
        match = re.search(rf"^{tag} (.+)$", text.strip(), re.M)
        if match:
            return match.group(1)
    return None


def _outcome(page, title: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        if page.evaluate(JS_WIDGET_ERRORS):
            return "model not found"
        shown = _drawn(page)
        if shown and shown["title"] == title:
            return "restored"
        page.wait_for_timeout(500)
    return "timeout"


def run(reloads: int, home: Path) -> dict:
    folder = home / "artifacts"
    chromium = find_chromium()
    if chromium is None:
        sys.exit("Chromium is missing: `make browser-deps` installs it")
    load_before = os.getloadavg()
    outcomes, seconds = [], []
    with notebook_lab(CELLS, "reload.ipynb", home, folder / "jupyterlab.log") as (base, token, server):
        with chromium_context(chromium, home / "profile") as context:
            url = f"{base}/lab/tree/reload.ipynb?token={token}"
            page, _ = run_notebook_in_page(context, url, server, folder)
            title = wait_for(page, lambda: _printed(page, "TITLE"), "the notebook", 300, server, folder)
            count, size = (int(v) for v in _printed(page, "RESTORE").split())
            wait_for(page, lambda: (_drawn(page) or {}).get("title") == title, "the map", TIMEOUT, server, folder)
            page.locator(".jp-Notebook").first.click()
            page.keyboard.press("Control+s")
            wait_for(page, lambda: page.locator(".jp-mod-dirty").count() == 0, "the save", 60, server, folder)
            for i in range(reloads):
                start = time.monotonic()
                page.reload(wait_until="domcontentloaded", timeout=120_000)
                page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
                wait_for(page, lambda: kernel_idle(page), "the kernel", 120, server, folder)
                outcomes.append(_outcome(page, title, start + TIMEOUT))
                seconds.append(time.monotonic() - start)
                print(f"reload {i + 1}: {outcomes[-1]} after {seconds[-1]:.1f} s", flush=True)
    return dict(
        outcomes=outcomes,
        seconds=seconds,
        widgets=count,
        restore_bytes=size,
        load_before=load_before,
        load_after=os.getloadavg(),
    )


def report(result: dict, reloads: int) -> str:
    counts = Counter(result["outcomes"])
    rows = "\n".join(f"| {name} | {counts.get(name, 0)} |" for name in ("restored", "model not found", "timeout"))
    before, after = (", ".join(f"{v:.2f}" for v in result[key]) for key in ("load_before", "load_after"))
    when = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    machine = f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores · Python {platform.python_version()}"
    return f"""# Reload stress run (`benchmarks/bench_reload.py`)

{when} · {machine} · load average (1, 5, 15 min) before: {before}; after: {after}

JupyterLab runs the quick start's Explorer and a class change from code; the saved page is reloaded
{reloads} times in headless Chromium. The widget state a reloading page restores: {result["widgets"]} widgets,
{result["restore_bytes"] / 1e6:.1f} MB of JSON.

| outcome | reloads |
|---|---|
{rows}

Seconds per reload (to the drawn map or the error): {", ".join(f"{s:.1f}" for s in result["seconds"])}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "browser_reload_cpu.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xcam-reload-") as home:
        result = run(args.reloads, Path(home))
    text = report(result, args.reloads)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
