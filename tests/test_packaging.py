"""The release path as a user meets it (issue 14).

The sdist and the wheel are built from this tree the way a release builds them
(``python -m build``: isolated build environments, the sdist first, the wheel from the
sdist), reusing the built front end, so with no Node on PATH; ``twine check`` reads them;
the wheel is installed into a fresh venv (no system site-packages, its dependencies from
the package index through pip's cache) whose PATH has no Node either, and there:

- ``jupyter server extension list`` shows jupyter_tus enabled and OK;
- ``jupyter labextension list`` shows jupyter-tus enabled and OK, provided by the Python
  package jupyter-tus (``install.json``);
- a ``jupyter server`` started from that venv takes a tus upload (tuspy: POST, then PATCHes)
  and lands the file in its root_dir.

The version is written once, in ``labextension/package.json``; every place that shows one
(wheel name, metadata, ``jupyter_tus.__version__``, the lab extension's package.json, the
extension lists) must show that one.

``JUPYTER_TUS_DIST=<dir>`` tests the sdist and wheel found in ``<dir>`` instead of building
them (``.github/workflows/check-release.yml`` builds them first).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from tusclient import client as tus_client

from .conftest import file_sha256
from .servers import JupyterProcess

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_JSON = ROOT / "labextension" / "package.json"
VERSION = json.loads(PACKAGE_JSON.read_text())["version"]
# What hatch-jupyter-builder checks before skipping the npm build (pyproject's skip-if-exists).
BUILT = [ROOT / "jupyter_tus/labextension/static/style.js", ROOT / "jupyter_tus/static/widget.js"]
LABEXT = f"jupyter_tus-{VERSION}.data/data/share/jupyter/labextensions/jupyter-tus"


def pip_cache_dir() -> str:
    """The user's pip cache (the fresh venv's HOME is elsewhere, its cache is not)."""
    if os.environ.get("PIP_CACHE_DIR"):
        return os.environ["PIP_CACHE_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "pip")


def clean_env(bin_dir: Path, home: Path) -> dict[str, str]:
    """An environment for a process from ``bin_dir`` alone: PATH is that folder (no Node,
    no npm), HOME and Jupyter's user folders are fresh, nothing points at this tree."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV", "CONDA", "NODE", "NPM"))
    }
    env.update(
        PATH=str(bin_dir),
        HOME=str(home),
        PIP_CACHE_DIR=pip_cache_dir(),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONNOUSERSITE="1",
    )
    assert shutil.which("node", path=env["PATH"]) is None
    assert shutil.which("npm", path=env["PATH"]) is None
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> str:
    """Run a command; its stdout and stderr together, or a failure showing them."""
    p = subprocess.run(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout.decode(errors="replace"))  # no colours
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited with {p.returncode}:\n{out}"
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``{"sdist": path, "wheel": path}``: built here, or taken from $JUPYTER_TUS_DIST."""
    if os.environ.get("JUPYTER_TUS_DIST"):
        out = Path(os.environ["JUPYTER_TUS_DIST"])
    else:
        out = tmp_path_factory.mktemp("dist")
        home = tmp_path_factory.mktemp("build-home")
        env = clean_env(Path(sys.executable).parent, home)
        if not all(p.exists() for p in BUILT):
            # No built front end: the build runs npm (hatch-jupyter-builder) and needs Node.
            env["PATH"] = os.environ["PATH"]
        run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], env, cwd=home)
    sdists = sorted(out.glob("jupyter_tus-*.tar.gz"))
    wheels = sorted(out.glob("jupyter_tus-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> dict:
    """A fresh venv with the wheel (and the ``lab`` extra) installed: ``{"bin", "env", "cwd"}``."""
    base = tmp_path_factory.mktemp("fresh")
    home = base / "home"
    home.mkdir()
    # The interpreter this venv was made from, not this venv's packages.
    run([sys._base_executable, "-m", "venv", str(base / "venv")], os.environ.copy(), cwd=base)
    bin_dir = base / "venv" / "bin"
    env = clean_env(bin_dir, home)
    env["VIRTUAL_ENV"] = str(base / "venv")
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{dist['wheel']}[lab]"], env, base)
    return {"bin": bin_dir, "env": env, "cwd": home, "prefix": base / "venv"}


def test_one_version_source():
    """package.json is the version; hatch reads it; the installed package reports it."""
    import importlib.metadata

    import jupyter_tus

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["hatch"]["version"] == {
        "source": "nodejs",
        "path": "labextension/package.json",
    }
    assert "hatch-nodejs-version" in " ".join(pyproject["build-system"]["requires"])
    assert importlib.metadata.version("jupyter-tus") == VERSION, (
        "the installed metadata is older than labextension/package.json: reinstall (make venv)"
    )
    assert jupyter_tus.__version__ == VERSION
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{VERSION}]" in changelog, f"CHANGELOG.md has no section for {VERSION}"


def test_sdist_carries_license_sources_and_built_front_end(dist):
    with tarfile.open(dist["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        license_text = tar.extractfile(f"jupyter_tus-{VERSION}/LICENSE").read().decode()
    assert dist["sdist"].name == f"jupyter_tus-{VERSION}.tar.gz"
    assert "Copyright (c) 2026, jupyter-tus contributors" in license_text
    for name in [
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "labextension/package.json",
        "labextension/install.json",
        "jupyter_tus/labextension/package.json",
        "jupyter_tus/labextension/install.json",
        "jupyter_tus/labextension/static/style.js",
        "jupyter_tus/static/widget.js",
        "jupyter-config/jupyter_server_config.d/jupyter_tus.json",
    ]:
        assert name in names, f"the sdist lacks {name}"
    assert not [n for n in names if "node_modules" in n or n.startswith(".venv/")]


def test_wheel_carries_license_install_json_and_one_version(dist):
    wheel = dist["wheel"]
    assert wheel.name == f"jupyter_tus-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(f"jupyter_tus-{VERSION}.dist-info/METADATA").decode()
        assert (
            "Copyright (c) 2026, jupyter-tus contributors"
            in z.read(f"jupyter_tus-{VERSION}.dist-info/licenses/LICENSE").decode()
        )
        install = json.loads(z.read(f"{LABEXT}/install.json"))
        labext_pkg = json.loads(z.read(f"{LABEXT}/package.json"))
    assert install == json.loads((ROOT / "labextension" / "install.json").read_text())
    assert install["packageManager"] == "python" and install["packageName"] == "jupyter-tus"
    assert labext_pkg["version"] == VERSION, (
        "the built lab extension is stale: cd labextension && npm run build"
    )
    headers = [line for line in meta.splitlines() if ": " in line]
    assert f"Version: {VERSION}" in headers
    assert "License-Expression: BSD-3-Clause" in headers
    for extra in ("lab", "data", "cli", "s3", "test"):
        assert f"Provides-Extra: {extra}" in headers
    assert "jupyter_tus/static/widget.js" in names
    assert f"{LABEXT}/static/style.js" in names
    assert (
        f"jupyter_tus-{VERSION}.data/data/etc/jupyter/jupyter_server_config.d/jupyter_tus.json"
        in names
    )


def test_twine_check(dist):
    files = [str(dist["sdist"]), str(dist["wheel"])]
    out = run([sys.executable, "-m", "twine", "check", "--strict", *files], os.environ.copy(), ROOT)
    assert out.count("PASSED") == 2, out


def test_installed_wheel_lists_both_extensions(venv):
    bin_dir, env, cwd = venv["bin"], venv["env"], venv["cwd"]
    out = run(
        [str(bin_dir / "python"), "-c", "import jupyter_tus; print(jupyter_tus.__file__)"],
        env,
        cwd,
    )
    assert out.strip().startswith(str(venv["prefix"])), out  # the wheel's, not this tree's

    out = run([str(bin_dir / "jupyter"), "server", "extension", "list"], env, cwd)
    assert "jupyter_tus enabled" in out, out
    assert f"jupyter_tus {VERSION} OK" in out, out

    out = run([str(bin_dir / "jupyter"), "labextension", "list"], env, cwd)
    assert str(venv["prefix"] / "share" / "jupyter" / "labextensions") in out, out
    assert f"jupyter-tus v{VERSION} enabled OK (python, jupyter-tus)" in out, out


class VenvServer(JupyterProcess):
    """``jupyter server`` from the fresh venv, in its clean environment."""

    def __init__(self, root_dir: Path, venv: dict) -> None:
        super().__init__(root_dir)
        self.venv = venv

    def command(self) -> list[str]:
        cmd = super().command()
        return [str(self.venv["bin"] / "jupyter"), *cmd[1:]]

    def start(self, timeout: float = 60) -> VenvServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.venv["env"],
            cwd=self.venv["cwd"],
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)
        return self


def test_installed_wheel_takes_a_tus_upload(venv, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "small.bin"
    src.write_bytes(os.urandom(300_000))
    with VenvServer(root, venv) as server:
        c = tus_client.TusClient(server.endpoint, headers=server.auth)
        c.uploader(
            str(src), chunk_size=128 * 1024, metadata={"filename": "small.bin", "path": "in"}
        ).upload()
        landed = root / "in" / "small.bin"
        assert landed.is_file(), server.log()
        assert file_sha256(landed) == file_sha256(src)
