"""Packaging: the wheel built from this tree, installed into a fresh virtual environment, works on its own.

The wheel is built from a copy of the tree (the packaging files and ``featcache/``: nothing is written
into the checkout, no stale ``build/`` is reused), offline and without build isolation. It is
installed with ``--no-deps`` into a new venv; the dependencies the tests already have are made visible
through a ``.pth`` line naming this interpreter's site-packages, which comes *after* the new venv's
own. Lines of a ``.pth`` file only extend ``sys.path``: the ``.pth`` files in the directory they add
are not run, so the editable install's finder (``__editable__.featcache-*.pth``) never loads and the
installed wheel cannot be shadowed by the source tree. Every command runs from an empty directory.

Skipped only where a wheel cannot be built here (no setuptools, or pip missing).
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import featcache
from featcache.demo import demo_counts, demo_raw_counts

REPO = Path(__file__).resolve().parents[1]
SOURCE_PKG = REPO / "featcache"


def _build_tools_missing() -> str | None:
    """Why a wheel cannot be built with this interpreter, or None (setuptools is not imported here)."""
    from importlib import metadata
    from importlib.util import find_spec

    if find_spec("setuptools") is None:
        return "building the wheel needs setuptools in the test environment (pip install setuptools)"
    if find_spec("pip") is None:
        return "building the wheel needs pip in the test environment"
    version = metadata.version("setuptools")
    major_minor = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if major_minor < (70, 1) and find_spec("wheel") is None:  # older setuptools has no bdist_wheel of its own
        return f"setuptools {version} needs the wheel package to build a wheel"
    return None


_MISSING = _build_tools_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))


def _clean_env(venv: Path | None = None) -> dict[str, str]:
    """The environment with nothing that could point an interpreter at the source tree or .venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONEXECUTABLE"}}
    env["PYTHONNOUSERSITE"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INDEX"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


class Installed:
    def __init__(self, root: Path, wheel: Path, src: Path, venv: Path, site: Path, cwd: Path) -> None:
        self.root, self.wheel, self.src, self.venv, self.site, self.cwd = root, wheel, src, venv, site, cwd
        self.python = venv / "bin" / "python"
        self.featcache = venv / "bin" / "featcache"
        self.env = _clean_env(venv)

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run([str(a) for a in args], cwd=self.cwd, env=self.env, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    cwd = root / "cwd"
    cwd.mkdir()

    # 1. A copy of what the build reads: the top-level files (pyproject.toml, setup.cfg, README.md, ...)
    #    and the package, without bytecode.
    src = root / "src"
    src.mkdir()
    for p in REPO.iterdir():
        if p.is_file() and not p.name.startswith("."):
            shutil.copy2(p, src / p.name)
    shutil.copytree(SOURCE_PKG, src / "featcache", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(dist), str(src)], cwd=cwd, env=_clean_env())
    wheels = sorted(dist.glob("featcache-*.whl"))
    assert len(wheels) == 1, wheels

    # 2. A fresh venv from this interpreter, the wheel installed with its own pip and nothing else.
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=cwd, env=_clean_env())
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
          str(wheels[0])], cwd=cwd, env=_clean_env(venv))

    # 3. Only now the dependencies: this interpreter's site-packages, after the venv's own.
    probe = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"
    paths = json.loads(_run([str(venv / "bin" / "python"), "-c", probe], cwd=cwd, env=_clean_env(venv)).stdout)
    site = Path(paths["purelib"])
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz_featcache_test_deps.pth").write_text("".join(f"{p}\n" for p in ours), encoding="utf-8")
    return Installed(root, wheels[0], src, venv, site, cwd)


def _wheel_names(whl: Path) -> list[str]:
    with zipfile.ZipFile(whl) as z:
        return z.namelist()


def _metadata(whl: Path) -> email.message.Message:
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(name))


def test_wheel_ships_every_module_and_data_file(installed: Installed) -> None:
    names = set(_wheel_names(installed.wheel))
    source = {p.relative_to(installed.src).as_posix() for p in (installed.src / "featcache").rglob("*") if p.is_file()}
    modules = {n for n in source if n.endswith(".py")}
    data = source - modules
    assert len(modules) > 50 and "featcache/cli/__init__.py" in modules
    assert modules - names == set(), "modules missing from the wheel (a package without __init__.py?)"
    # Every non-Python file of the package is read at run time (the report's assets, read through
    # importlib.resources in featcache/report/html.py): setup.cfg's package_data must ship them all.
    assert {"featcache/report/assets/report.css", "featcache/report/assets/report.js"} <= data
    assert data - names == set(), "package data missing from the wheel: add it to [options.package_data]"
    dist_info = f"featcache-{featcache.__version__}.dist-info/"
    stray = {n for n in names if not n.startswith(("featcache/", dist_info))}
    assert stray == set(), "the wheel holds files outside the package (tests, bench, ...)"
    with zipfile.ZipFile(installed.wheel) as z:
        entry_points = z.read(dist_info + "entry_points.txt").decode()
    script = re.search(r"^\[console_scripts\]\s*^featcache = featcache\.cli:main$", entry_points, re.MULTILINE)
    assert script, entry_points


def test_wheel_states_ranges_and_the_bootstrap_pin_fits(installed: Installed) -> None:
    from packaging.requirements import Requirement
    from packaging.version import Version

    meta = _metadata(installed.wheel)
    assert meta["Name"] == "featcache" and meta["Version"] == featcache.__version__
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    base = {r.name.lower(): r for r in reqs if r.marker is None}
    pinned = [str(r) for r in reqs if any(s.operator in {"==", "==="} for s in r.specifier)]
    assert pinned == [], "install_requires states ranges; exact pins belong in scripts/bootstrap.sh"
    torch = base["torch"]
    assert {s.operator for s in torch.specifier} >= {">=", "<"}, torch
    # The CPU pin of the bootstrap (and so of CI) lies in the range the package states.
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    pins = re.findall(r"\btorch==([0-9][0-9A-Za-z.+]*)", bootstrap)
    assert pins, "scripts/bootstrap.sh no longer pins torch"
    for pin in pins:
        assert torch.specifier.contains(Version(pin), prereleases=True), (pin, str(torch))


def test_installed_wheel_is_what_the_venv_imports(installed: Installed) -> None:
    script = r"""
import importlib.metadata as md, json, sys
from importlib import resources
import featcache, featcache.cli, featcache.report.html
from packaging.requirements import Requirement
dist = md.distribution("featcache")
unmet = []
for line in dist.requires or []:
    r = Requirement(line)
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        continue
    try:
        v = md.version(r.name)
    except md.PackageNotFoundError:
        unmet.append(f"{r}: not installed")
        continue
    if not r.specifier.contains(v, prereleases=True):
        unmet.append(f"{r}: {v} installed")
assets = {n: len(resources.files("featcache.report").joinpath("assets", n).read_text(encoding="utf-8"))
          for n in ("report.css", "report.js")}
print(json.dumps({
    "file": featcache.__file__, "cli": featcache.cli.__file__, "version": featcache.__version__,
    "dist_version": dist.version, "dist_path": str(dist.locate_file("")), "sys_path": sys.path,
    "finders": [type(f).__name__ if not isinstance(f, type) else f.__name__ for f in sys.meta_path],
    "modules": sorted(m for m in sys.modules if "editable" in m), "unmet": unmet, "assets": assets,
}))
"""
    info = json.loads(installed.run(installed.python, "-c", script).stdout)
    site = installed.site.resolve()
    for key in ("file", "cli"):
        assert Path(info[key]).resolve().is_relative_to(site), (key, info[key], site)
    assert Path(info["dist_path"]).resolve() == site, info["dist_path"]
    assert info["version"] == info["dist_version"] == featcache.__version__
    assert not any(Path(p).resolve() == REPO for p in info["sys_path"] if p), info["sys_path"]
    assert not [f for f in info["finders"] if "Editable" in f], info["finders"]
    assert info["modules"] == [], info["modules"]
    assert info["unmet"] == [], "the test environment does not satisfy the wheel's Requires-Dist"
    assert all(n > 0 for n in info["assets"].values()), info["assets"]


def test_featcache_version(installed: Installed) -> None:
    assert installed.featcache.is_file()
    first = installed.featcache.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#!") and Path(first[2:].strip()).parent == installed.venv / "bin", first
    out = installed.run(installed.featcache, "--version").stdout.strip()
    assert out == f"featcache, version {featcache.__version__}"


def test_featcache_demo_data_writes_the_corpus(installed: Installed) -> None:
    help_text = installed.run(installed.featcache, "demo-data", "--help").stdout
    assert "Usage: featcache demo-data [OPTIONS] DIRECTORY" in help_text, help_text
    out_dir = installed.root / "demo-corpus"
    r = installed.run(installed.featcache, "demo-data", out_dir)
    n_turns = sum(sum(by_session.values()) for by_session in demo_raw_counts().values())
    n_kept = sum(sum(by_session.values()) for by_session in demo_counts().values())
    assert f"wrote the demo corpus to {out_dir} ({n_kept} utterances kept of {n_turns} turns" in r.stdout, r.stdout
    assert (out_dir / "README_DEMO.txt").is_file()
    assert sorted(p.name for p in out_dir.glob("Session*")) == [f"Session{i}" for i in range(1, 6)]
    for s in range(1, 6):
        session = out_dir / f"Session{s}"
        emo = sorted((session / "dialog" / "EmoEvaluation").glob("*.txt"))
        trans = sorted((session / "dialog" / "transcriptions").glob("*.txt"))
        assert emo and [p.name for p in emo] == [p.name for p in trans], session
    assert len(list(out_dir.glob("Session*/sentences/wav/*/*.wav"))) == n_turns
    # Read back by this checkout's reader: the installed package wrote the corpus it documents.
    from featcache.data import load_corpus
    assert len(load_corpus(f"iemocap:{out_dir}")) == n_kept
