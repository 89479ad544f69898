"""What a browser benchmark needs: a private JupyterLab serving one notebook, headless Chromium,
and JavaScript that timestamps control changes, Plotly redraws and kernel websocket frames on the
page's own clock (`performance.now()`), so no Python round trip enters a measured interval.

Nothing here imports Playwright: the benchmark that drives the browser does.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent
# Headless, quiet and self-contained (no sandbox: we may run as root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def find_chromium() -> str | None:
    """`$XCAM_CHROMIUM`, Debian's /usr/bin/chromium, or a Chromium/Chrome on the PATH; None if none."""
    for candidate in (os.environ.get("XCAM_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notebook_json(cells: list[str]) -> str:
    """A notebook of code cells, for the venv's `python3` kernel."""
    return json.dumps(
        {
            "cells": [
                {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
                for source in cells
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


class JupyterLab:
    """`jupyter lab` on a free loopback port with a random token, in its own process group (so its
    kernels stop with it), serving a temporary folder that holds one notebook; Jupyter's config, data
    and runtime dirs are private to the run. `url` opens the notebook."""

    def __init__(self, notebook: str, env: dict[str, str] | None = None):
        self.home = Path(tempfile.mkdtemp(prefix="xcam-bench-lab-"))
        root = self.home / "root"
        root.mkdir()
        (root / "bench.ipynb").write_text(notebook)
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.env = {
            **os.environ,
            **(env or {}),
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.env.pop("JUPYTER_PATH", None)
        self.command = [
            str(BIN / "jupyter"),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={self.home / 'settings'}",
            f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
            "--ServerApp.port_retries=0",
        ]
        if os.geteuid() == 0:
            self.command.append("--allow-root")
        self.log_path = self.home / "jupyterlab.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/bench.ipynb?token={self.token}"

    def __enter__(self) -> JupyterLab:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.home / "root",
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_until_up(f"http://127.0.0.1:{self.port}/api/status?token={self.token}", timeout=120)
        return self

    def _wait_until_up(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status < 500:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace") if self.log_path.exists() else ""

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """SIGTERM to the server's process group (kernels included), SIGKILL to what is left after 10 s."""
        if self.process is not None:
            for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.process.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    self.process.wait(grace)
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.home, ignore_errors=True)


# --- JavaScript run in the page ------------------------------------------------------------------
# Installed before any page script: every message a kernel websocket receives is logged as
# [performance.now(), bytes, msg_type, plotly], `plotly` true when the message carries a Plotly figure
# update (`_py2js_…`); frames are Jupyter's binary v1 protocol or JSON text.
JS_COUNT_WEBSOCKET_FRAMES = r"""
(() => {
  const Native = window.WebSocket;
  window.__xcamFrames = [];
  const decoder = new TextDecoder();
  const describe = (data) => {
    try {
      if (typeof data === 'string') return [JSON.parse(data).header.msg_type, data.includes('"_py2js_')];
      const view = new DataView(data);                       // v1: n, offsets[n] (uint64 LE), parts
      const at = (i) => Number(view.getBigUint64(8 * (i + 1), true));
      const part = (i) => decoder.decode(new Uint8Array(data, at(i), at(i + 1) - at(i)));
      // parts: channel, header, parent_header, metadata, content, buffers…
      return [JSON.parse(part(1)).msg_type, part(4).includes('"_py2js_')];
    } catch (e) { return ['?', false]; }
  };
  class CountingWebSocket extends Native {
    constructor(...args) {
      super(...args);
      if (!String(args[0]).includes('/api/kernels/')) return;
      this.addEventListener('message', (event) => {
        const t = performance.now(), data = event.data;
        const bytes = typeof data === 'string' ? new TextEncoder().encode(data).length : (data.byteLength ?? data.size);
        window.__xcamFrames.push([t, bytes, ...describe(data)]);
      });
    }
  }
  window.WebSocket = CountingWebSocket;
})();
"""

# Marks the Explorer (the outermost widget box holding a dropdown labelled "method") and returns the
# overlay: the Plotly graph div whose last trace is the heatmap named "map".
JS_FIND_OVERLAY = r"""
() => {
  const labelled = (root, text) => [...root.querySelectorAll('.widget-dropdown')]
      .some(d => (d.querySelector('label')?.textContent || '').trim() === text);
  const roots = [...document.querySelectorAll('.widget-vbox')].filter(v => labelled(v, 'method'));
  const root = roots.find(r => !roots.some(o => o !== r && o.contains(r)));
  if (!root) return null;
  root.setAttribute('data-xcam', 'explorer');
  for (const gd of root.querySelectorAll('.js-plotly-plot')) {
    const heat = (gd.data || [])[(gd.data || []).length - 1];
    if (heat && heat.type === 'heatmap' && heat.name === 'map') {
      gd.setAttribute('data-xcam', 'overlay');
      const title = gd.layout?.title?.text ?? gd.layout?.title ?? '';
      return {title, rows: (heat.z?.length ?? 0)};
    }
  }
  return null;
}
"""

# window.__xcamArm(kind): the next input/change/keydown event on the page starts a measurement;
# it ends at the first Plotly event on the overlay after which `kind`'s value differs from the
# value before: "map" (z and title), "colorscale", or "opacity". __xcamResult then holds the start,
# the drawing event and the next animation frame (ms of performance.now()), and the overlay's title.
JS_INSTALL_PROBE = r"""
() => {
  const gd = document.querySelector('[data-xcam="overlay"]');
  const plain = (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v;
  const watched = {
    map: () => { const h = gd.data[gd.data.length - 1];
                 return JSON.stringify([h.z, gd.layout?.title?.text ?? gd.layout?.title], plain); },
    colorscale: () => JSON.stringify(gd.data[gd.data.length - 1].colorscale),
    opacity: () => String(gd.data[gd.data.length - 1].opacity),
  };
  let probe = null;
  window.__xcamArm = (kind) => {
    probe = {kind, before: watched[kind](), start: null};
    window.__xcamResult = null;
  };
  for (const type of ['input', 'change', 'keydown']) {
    document.addEventListener(type, () => { if (probe && probe.start === null) probe.start = performance.now(); },
                              true);
  }
  for (const type of ['plotly_afterplot', 'plotly_restyle', 'plotly_update', 'plotly_relayout']) {
    gd.on(type, () => {
      if (!probe || probe.start === null || watched[probe.kind]() === probe.before) return;
      const result = {start: probe.start, drawn: performance.now(), event: type, frame: null,
                      title: gd.layout?.title?.text ?? gd.layout?.title ?? ''};
      probe = null;
      requestAnimationFrame(() => { result.frame = performance.now(); window.__xcamResult = result; });
    });
  }
}
"""

# The dropdown labelled `label` in the Explorer: its options' texts and the selected index.
JS_DROPDOWN = r"""
(label) => {
  const box = [...document.querySelectorAll('[data-xcam="explorer"] .widget-dropdown')]
      .find(d => (d.querySelector('label')?.textContent || '').trim() === label);
  const select = box.querySelector('select');
  return {options: [...select.options].map(o => o.textContent.replace(/\u00a0/g, ' ')),
          selected: select.selectedIndex};
}
"""
