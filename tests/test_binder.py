"""The Binder spec (`binder/`, read by repo2docker) installs everything the notebooks import, with a
CPU-only PyTorch, and the README's badge opens a notebook that exists.

"Installed" means named in `binder/requirements.txt`, or in setup.cfg's `install_requires` when the
requirements install the repository itself (`.` or `-e .`). Transitive dependencies do not count:
a notebook that imports a package should make sure it is there.
"""

from __future__ import annotations

import ast
import configparser
import functools
import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
BINDER = REPO / "binder"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What every Jupyter kernel has, whatever the spec: the kernel is IPython.
KERNEL_PROVIDED = {"ipython", "ipykernel"}
LOCAL = {".", "-e .", "-e.", "./", "-e ./"}


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def lines(text: str) -> list[str]:
    return [
        line.split(" #")[0].strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")
    ]


def binder_requirements() -> tuple[list[str], list[Requirement], bool]:
    """(pip options, requirements, whether the repository itself is installed)."""
    options, requirements, local = [], [], False
    for line in lines((BINDER / "requirements.txt").read_text()):
        if line in LOCAL:
            local = True
        elif line.startswith("-"):
            options.append(line)
        else:
            requirements.append(Requirement(line))
    return options, requirements, local


def install_requires() -> list[Requirement]:
    return [Requirement(line) for line in lines(setup_cfg()["options"]["install_requires"])]


def installed_by_binder() -> set[str]:
    _, requirements, local = binder_requirements()
    names = {canonicalize_name(r.name) for r in requirements} | KERNEL_PROVIDED
    if local:
        names |= {canonicalize_name(setup_cfg()["metadata"]["name"])}
        names |= {canonicalize_name(r.name) for r in install_requires()}
    return names


def code_of(cell_source: str) -> str:
    """A code cell as plain Python: IPython magics and shell escapes become `pass`."""
    out = []
    for line in cell_source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            out.append(line[: len(line) - len(stripped)] + "pass")
        else:
            out.append(line)
    return "\n".join(out)


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in the notebook's code cells."""
    nb = nbformat.read(path, as_version=4)
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(code_of(cell.source), filename=f"{path.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value).split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__"}


@functools.cache
def _providers() -> dict[str, list[str]]:
    return packages_distributions()  # scans every installed distribution: once per session


def distributions_of(module: str) -> set[str]:
    """The distributions (canonical names) that provide a top-level import name, from this venv."""
    own = setup_cfg()["metadata"]["name"]
    if module == "xcam_widgets":
        return {canonicalize_name(own)}
    return {canonicalize_name(d) for d in _providers().get(module, [])}


def test_binder_installs_a_cpu_only_torch_and_the_package():
    options, requirements, local = binder_requirements()
    assert local, "binder/requirements.txt must install the repository itself ('.')"
    assert any(CPU_INDEX in option for option in options), f"use PyTorch's CPU wheels: --extra-index-url {CPU_INDEX}"
    names = {canonicalize_name(r.name) for r in requirements}
    assert {"torch", "torchvision"} <= names, "name torch and torchvision so they resolve against the CPU index"
    for option in options:
        assert option.split()[0] in {"--extra-index-url", "--index-url", "--find-links", "--pre"}, option


def test_binder_requirements_agree_with_setup_cfg():
    """Where both name a package, the Binder spec allows a version setup.cfg allows."""
    ours = {canonicalize_name(r.name): r.specifier for r in install_requires()}
    _, requirements, _ = binder_requirements()
    for req in requirements:
        spec = ours.get(canonicalize_name(req.name))
        if spec is None or not req.specifier:
            continue
        pins = [s.version for s in req.specifier if s.operator in ("==", ">=", "~=")]
        for version in pins:
            assert spec.contains(version, prereleases=True), f"{req} contradicts setup.cfg's {req.name}{spec}"


def test_binder_python_matches_python_requires():
    runtime = BINDER / "runtime.txt"
    if not runtime.exists():
        pytest.skip("no binder/runtime.txt: repo2docker's default Python")
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime.read_text().strip())
    assert match, "runtime.txt must read python-X.Y"
    requires = SpecifierSet(setup_cfg()["options"]["python_requires"])
    assert requires.contains(match.group(1) + ".0"), f"{match.group(0)} is outside python_requires {requires}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_import_is_installed_by_binder(path: Path):
    available = installed_by_binder()
    missing = []
    for module in sorted(imported_modules(path)):
        provided_by = distributions_of(module)
        if not provided_by:
            missing.append(f"{module} (not installed here either; which distribution provides it?)")
        elif not provided_by & available:
            missing.append(f"{module} (from {', '.join(sorted(provided_by))})")
    assert not missing, (
        f"{path.name} imports packages that binder/requirements.txt does not install: {'; '.join(missing)}"
    )


def test_the_import_scanner_sees_imports(tmp_path):
    """The scanner itself: plain, dotted, from-imports, magics and relative imports."""
    source = "%matplotlib inline\nimport numpy as np, os.path\nfrom plotly import express\nfrom . import x\n!ls\n"
    path = tmp_path / "scanner.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    assert imported_modules(path) == {"numpy", "plotly"}


def test_readme_badge_opens_an_existing_notebook():
    readme = (REPO / "README.md").read_text()
    badges = re.findall(r"https://mybinder\.org/v2/gh/[^\s)]+", readme)
    assert badges, "README.md has no Binder badge"
    for url in badges:
        query = parse_qs(urlparse(url).query)
        target = (query.get("urlpath") or query.get("labpath") or [""])[0]
        path = re.sub(r"^(lab/tree|tree|voila/render|notebooks)/", "", target)
        assert path and (REPO / path).exists(), f"the badge {url} opens {path!r}, which does not exist"


def test_the_binder_distributions_exist_here():
    """Each name in the Binder spec is a real distribution (installed in this dev environment)."""
    _, requirements, _ = binder_requirements()
    for req in requirements:
        try:
            distribution(req.name)
        except PackageNotFoundError:
            pytest.fail(f"{req.name} from binder/requirements.txt is not installed here; is the name right?")


def test_post_build_turns_on_voila_progressive_rendering(tmp_path):
    """binder/postBuild runs with repo2docker's `bash` and `python`, keeps existing server settings and
    sets Voila's progressive rendering (the first map reaches the app page)."""
    script = BINDER / "postBuild"
    assert os.access(script, os.X_OK), "binder/postBuild must be executable (chmod +x)"
    config = tmp_path / ".jupyter" / "jupyter_server_config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"ServerApp": {"iopub_data_rate_limit": 1e9}}))
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    subprocess.run(["bash", str(script)], env=env, cwd=REPO, check=True, timeout=60)
    written = json.loads(config.read_text())
    assert written["VoilaConfiguration"]["progressive_rendering"] is True
    assert written["ServerApp"] == {"iopub_data_rate_limit": 1e9}
