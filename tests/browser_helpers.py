"""What the browser tests need besides the test logic: Chromium, servers run as process groups,
JupyterLab pages that run a test's notebook, and waiting on the page (the JavaScript it runs is in
`browser_js`).

Nothing here imports Playwright, so the module imports everywhere; `test_browser.py` does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest
from browser_js import JS_ERROR_OUTPUTS

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
DOCS = REPO / "docs"
DOCS_SCREENSHOT_BYTES = 500_000

# Flags that keep a headless Chromium quiet and self-contained (no sandbox: we may run as root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """A Chromium or Chrome executable on this machine, or None."""
    env = os.environ.get("XCAM_CHROMIUM")
    if env and os.access(env, os.X_OK):
        return env
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium(timeout: float = 900) -> tuple[str | None, str]:
    """`(path, "")`, installing Debian's `chromium` with apt-get when it is missing and we are root;
    `(None, why)` when it truly cannot be had."""
    found = find_chromium()
    if found:
        return found, ""
    if not shutil.which("apt-get"):
        return None, "Chromium is not installed and this system has no apt-get to install it"
    if os.geteuid() != 0:
        return None, "Chromium is not installed and installing it needs root: run `sudo make browser-deps`"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for command in (
        ["apt-get", "install", "-y", "-q", "chromium"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "chromium"],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.append(f"{' '.join(command)}: {err}")
            continue
        log.append(f"{' '.join(command)}: exit {done.returncode} {done.stderr[-300:]}")
        if done.returncode == 0 and command[1] == "install" and find_chromium():
            return find_chromium(), ""
    return None, "Chromium is not installed and `apt-get install -y chromium` failed: " + " | ".join(log)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A command run in its own process group (so everything it spawns, kernels included, can be
    stopped together), its output in a log file, `wait_until_up` polling an HTTP URL."""

    def __init__(self, command: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (open while the process runs; closed in stop())
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_until_up(self, url: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as err:
                if err.code < 500:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{url} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")

    def stop(self, grace: float = 10) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left after `grace` seconds."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:  # kernels live in the same group and may outlive the server's own exit
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.wait(5)
        self._log.close()


def lab_settings(settings_dir: Path) -> None:
    """JupyterLab user settings for a test: no autosave (the notebook on disk stays as it is), every
    cell kept in the DOM (no windowing), no news or update pop-ups over the page."""
    overrides = {
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "windowingMode": "none",
            "autoStartDefaultKernel": True,
        },
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, values in overrides.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def save_docs_screenshot(png: bytes, name: str, limit: int = DOCS_SCREENSHOT_BYTES) -> Path:
    """Write a screenshot for the docs, reduced to a 256-colour palette (and then scaled down) until
    it is under `limit` bytes."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    data = png
    scale = 1.0
    while len(data) >= limit:
        shown = (
            image
            if scale == 1.0
            else image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS)
        )
        buffer = io.BytesIO()
        shown.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, format="PNG", optimize=True
        )
        data = buffer.getvalue()
        scale *= 0.85
    path = DOCS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


BIN = Path(sys.executable).parent  # the venv's jupyter and voila


def server_env(home: Path) -> dict[str, str]:
    """A private Jupyter config, data and runtime dir: nothing from the user's own setup leaks in,
    and nothing is left behind. The kernel spec comes from the venv (sys.prefix), as in `make lab`."""
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    env.pop("JUPYTER_PATH", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def lab_command(port: int, token: str, root: Path, home: Path) -> list[str]:
    """JupyterLab on loopback `port` with `token`, serving `root`, its settings and workspaces in `home`."""
    command = [
        str(BIN / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--ServerApp.open_browser=False",
        "--ServerApp.port_retries=0",
    ]
    return [*command, "--allow-root"] if os.geteuid() == 0 else command


@contextlib.contextmanager
def chromium_context(chromium: str, profile: Path) -> Iterator[Any]:
    """Headless Chromium with a fresh profile at 1280×1200, as a Playwright browser context."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed; `make setup` installs the dev extra (pip install -e '.[dev]')")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1200},
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()


# --- a JupyterLab page that runs a test's own notebook ----------------------------------------------
@contextlib.contextmanager
def notebook_lab(cells: list[str], notebook: str, home: Path, log: Path) -> Iterator[tuple[str, str, Server]]:
    """(base URL, token, server) of JupyterLab on a free loopback port with a random token and a private
    Jupyter setup under `home`, serving a folder that holds only `notebook`, made of `cells`."""
    root = home / "root"
    root.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells],
        metadata={"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
    )
    nbformat.write(nb, root / notebook)
    lab_settings(home / "settings")
    port, token = free_port(), secrets.token_hex(16)
    server = Server(lab_command(port, token, root, home), log, cwd=root, env=server_env(home))
    try:
        server.wait_until_up(f"http://127.0.0.1:{port}/api/status?token={token}")
        yield f"http://127.0.0.1:{port}", token, server
    finally:
        server.stop()


def screenshot(page: Any, folder: Path, name: str) -> bytes:
    """A screenshot of the window, saved as `folder/<name>.png` (the name made file-safe)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    return page.screenshot(path=str(folder / f"{name}.png"), full_page=False)


def wait_for(
    page: Any, predicate: Any, what: str, timeout: float, server: Server | None, folder: Path, poll: float = 0.5
) -> Any:
    """Poll `predicate()` until it returns something truthy; on timeout save a screenshot in `folder` and
    fail with the server's log."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            screenshot(page, folder, "timeout-" + what)
            log = server.log_tail() if server else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}.\nServer log:\n{log}")
        page.wait_for_timeout(int(poll * 1000))


def kernel_idle(page: Any) -> bool:
    """The notebook's kernel is connected and idle (accepting the kernel dialog if one shows)."""
    dialog = page.locator(".jp-Dialog button.jp-mod-accept")
    if dialog.count():
        dialog.first.click()
    text = page.locator("#jp-main-statusbar").inner_text()
    return "Idle" in text and "No Kernel" not in text


def expected_line(page: Any) -> dict | None:
    """The JSON that a cell printed as one `EXPECTED {...}` line (what the kernel computed on its own)."""
    for text in page.locator(".jp-CodeCell .jp-OutputArea-output").all_inner_texts():
        match = re.search(r"^EXPECTED (\{.*\})$", text.strip(), re.M)
        if match:
            return json.loads(match.group(1))
    return None


def assert_no_error_outputs(page: Any) -> None:
    errors = [e for e in page.evaluate(JS_ERROR_OUTPUTS) if "Traceback" in e or "Error" in e]
    assert not errors, "error output in the page:\n" + "\n---\n".join(errors)


def run_notebook_in_page(context: Any, url: str, server: Server, folder: Path) -> tuple[Any, list[str]]:
    """(a new page, the page errors it records): the notebook at `url` opened, its kernel waited for, and
    every cell run through the menu bar (Run > Run All Cells), as a user does."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    wait_for(page, lambda: kernel_idle(page), "the kernel to start", 120, server, folder)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    return page, errors
