"""The Dockerfile, checked without a Docker engine (none runs on these machines, DESIGN
section 13): what it copies exists and covers every installed package, and its entrypoint
is the console script, which runs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tools.hot_path import SUFFIX

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def _copied() -> list[str]:
    sources: list[str] = []
    for args in _instructions("COPY"):
        if not args.startswith("--from="):
            sources += shlex.split(args)[:-1]
    return sources


def test_every_copied_path_exists() -> None:
    missing = [source for source in _copied() if not (ROOT / source).exists()]
    assert missing == []


def test_every_package_the_project_installs_is_copied() -> None:
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {source.rstrip("/") for source in _copied()}
    assert packages - copied == set()
    assert {"pyproject.toml", "constraints.txt"} <= copied


def test_both_stages_are_the_same_python_and_one_the_project_supports() -> None:
    """The image copies the build stage's virtualenv, whose interpreter must be the same."""
    build, image = (args.split()[0] for args in _instructions("FROM"))
    versions = {base.split(":")[1].split("-")[0] for base in (build, image)}
    (version,) = versions
    wanted = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, version.split("."))) >= tuple(map(int, wanted.split(".")))
    assert build.split("-")[1:] == image.split("-")[2:]  # the same Debian release


def test_the_build_stage_compiles_the_hot_path_and_checks_the_installed_copy() -> None:
    (run, _) = _instructions("RUN")
    assert "-m tools.hot_path &&" in " ".join(run.split())  # compiled in the source tree
    assert run.rstrip().endswith("python -P -m tools.hot_path --check")  # not the cwd's copy
    assert "COPY --from=build /opt/venv /opt/venv" in DOCKERFILE


@pytest.mark.usefixtures("compiled_hot_path")
def test_the_wheel_the_build_stage_installs_carries_the_compiled_hot_path(
    tmp_path: Path,
) -> None:
    """The build stage's `pip install .`, without Docker: a wheel of what it copies, taken
    from this compiled checkout, holds the extensions, and they load from where it installs."""
    tree, site = tmp_path / "tree", tmp_path / "site"
    tree.mkdir()
    for source in _copied():
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, tree / source, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / source, tree / source)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, tree]
    subprocess.run(pip_wheel, check=True, capture_output=True, timeout=240)
    (wheel,) = tmp_path.glob("spotmatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import shard.engine.book as b; print(b.__file__)"
    for argv in (["-m", "tools.hot_path", "--check"], ["-c", probe]):
        done = subprocess.run(
            [sys.executable, "-P", *argv], cwd=tmp_path, env=env,
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(site / "shard" / "engine" / f"book{SUFFIX}")


def test_it_runs_as_a_numeric_non_root_user() -> None:
    (user,) = _instructions("USER")
    assert user.isdigit() and int(user) != 0


def test_the_entrypoint_is_the_console_script_and_it_runs() -> None:
    (entrypoint,) = _instructions("ENTRYPOINT")
    (cmd,) = _instructions("CMD")
    argv: list[str] = [*json.loads(entrypoint), *json.loads(cmd)]  # exec form: JSON arrays
    program, *args = argv
    assert program in PYPROJECT["project"]["scripts"]
    script = Path(sys.executable).parent / program
    done = subprocess.run([script, *args], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "shard" in done.stdout and "router" in done.stdout
