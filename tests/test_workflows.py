"""The GitHub workflows a fork runs are valid YAML and run what CI runs (issue 14).

``.ci/run`` is CI's entry point; ``.github/workflows/build.yml`` must run it (the same
commands, on Debian as root, where ``make test`` may apt-get chromium), and
``check-release.yml`` must build, ``twine check`` and smoke-test the distributions the
way RELEASE.md and ``tests/test_packaging.py`` do. The pre-commit hooks run the tools
``make lint`` runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 (pyyaml) reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def run_lines(workflow: dict) -> list[str]:
    """Every shell line of every ``run:`` step, comments and ``set`` lines left out."""
    lines = []
    for step in steps(workflow):
        for line in step.get("run", "").splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "set ")):
                lines.append(line)
    return lines


def ci_run_commands() -> list[str]:
    """The commands of .ci/run, less its preamble (set, cd to the clone)."""
    commands = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "set ", "cd ")):
            continue
        commands.append(line)
    return commands


def make_recipe(target: str) -> str:
    """The prerequisites and recipe lines of one Makefile target."""
    text = (ROOT / "Makefile").read_text()
    m = re.search(rf"^{re.escape(target)}:(.*?)\n((?:\t.*\n)*)", text, re.MULTILINE)
    assert m, f"Makefile has no target {target}"
    return m.group(1) + "\n" + m.group(2)


def test_every_workflow_is_valid_yaml_with_jobs():
    names = sorted(p.name for p in WORKFLOWS.glob("*.y*ml"))
    assert names == ["build.yml", "check-release.yml"]
    for name in names:
        wf = load(name)
        assert wf["name"] and wf["on"] and wf["jobs"], name
        assert "pull_request" in wf["on"] and "push" in wf["on"], name
        for job in wf["jobs"].values():
            assert job["runs-on"] == "ubuntu-latest"
            # Debian as root, as on CI: apt-get works without sudo, chromium is Debian's.
            assert job["container"] == "python:3.11-bookworm"
            uses = [s.get("uses", "") for s in job["steps"]]
            assert "actions/checkout@v4" in uses
            node = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-node")]
            assert node and str(node[0]["with"]["node-version"]) == "20"


def test_build_runs_what_ci_runs():
    commands = ci_run_commands()
    assert commands == ["make test"], commands  # .ci/run is make test, nothing more
    lines = run_lines(load("build.yml"))
    assert lines == ["bash .ci/run"], lines
    # make test runs the linters and installs Debian's chromium when missing.
    test = make_recipe("test")
    assert "lint" in test.split("\n")[0] and "chromium" in test.split("\n")[0]
    assert "apt-get install -y chromium" in make_recipe("chromium")
    lint = make_recipe("lint")
    for tool in ("ruff check", "ruff format --check", "npm run lint:check"):
        assert tool in lint, tool


def test_check_release_builds_checks_and_smoke_tests():
    lines = run_lines(load("check-release.yml"))
    text = "\n".join(lines)
    assert "make venv" in lines
    assert ".venv/bin/python -m build --outdir dist ." in lines
    assert ".venv/bin/python -m twine check --strict dist/*" in lines
    # Node gone before the wheel is installed and tested.
    removed = next(
        i for i, line in enumerate(lines) if line.startswith('rm -f "$(command -v node)"')
    )
    installed = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert removed < installed
    assert re.search(r"jupyter server extension list", text)
    assert re.search(r"jupyter labextension list", text)
    assert r"\(python, jupyter-tus\)" in text
    smoke = [line for line in lines if "tests/test_packaging.py" in line]
    assert smoke == [
        "JUPYTER_TUS_DIST=dist .venv/bin/python -m pytest -q -ra tests/test_packaging.py"
    ]
    # The same build and check as RELEASE.md's steps.
    release = (ROOT / "RELEASE.md").read_text()
    assert ".venv/bin/python -m build" in release
    assert ".venv/bin/python -m twine check --strict dist/*" in release
    assert "JUPYTER_TUS_DIST=dist .venv/bin/python -m pytest -q tests/test_packaging.py" in release


def test_pre_commit_hooks_run_the_lint_tools():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff", "ruff-format", "prettier", "eslint"} <= set(hooks)
    for hook in hooks.values():
        if hook.get("language") == "system":
            exe = shlex.split(hook["entry"])[0]
            if exe == "bash":  # bash -c 'cd labextension && <tool> ...'
                script = shlex.split(hook["entry"])[2]
                exe = "labextension/" + script.split("&&")[1].split()[0]
            assert (ROOT / exe).exists(), f"{hook['id']}: {exe} is not installed by make"
    assert "ruff check" in hooks["ruff"]["entry"]
    assert "ruff format" in hooks["ruff-format"]["entry"]
    assert "prettier" in hooks["prettier"]["entry"]
    assert "eslint" in hooks["eslint"]["entry"]
