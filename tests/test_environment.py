"""Install hygiene: the lock pins one torch build, the venv matches it, set-up is idempotent."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: '{line}' is not pinned with =="
            pins[name.lower()] = version
    return pins


def test_lock_pins_the_torch_build_of_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pyproject = {d.split("==")[0]: d.split("==")[1] for d in deps if "==" in d}
    pins = lock_pins()
    assert pyproject["torch"] == pins["torch"] == "2.14.1"
    assert pyproject["torchaudio"] == pins["torchaudio"] == "2.11.0"
    assert not [n for n in pins if n.startswith("torch") and n not in ("torch", "torchaudio")], (
        "another torch package"
    )


def test_installed_versions_match_the_lock() -> None:
    mismatched = {}
    for name, version in lock_pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            mismatched[name] = (version, None)
            continue
        if installed.split("+")[0] != version.split("+")[0]:
            mismatched[name] = (version, installed)
    assert not mismatched


def test_setup_is_idempotent() -> None:
    res = subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    assert "packages up to date" in res.stdout
    assert "installing" not in res.stdout


def test_ci_runs_the_lint_then_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    test_cmd = next(
        line.split(" #")[0].strip()
        for b in blocks
        for line in b.splitlines()
        if line.startswith("make test")
    )
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert ci == ["make lint", test_cmd]
    # the two commands are the first thing a reader sees: before the first section heading
    head = readme.split("\n## ", 1)[0]
    assert "make demo" in head and "make test" in head
