"""The compiled hot path (tools/hot_path.py): a stale extension is refused, CI tests the
compiled modules, and a wheel built from a compiled tree carries them (the image's build)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.hot_path import (
    MODULES,
    ROOT,
    SUFFIX,
    HotPathError,
    check,
    digest,
    extensions,
    stale,
    up_to_date,
)


def a_compiled_tree(tmp_path: Path) -> tuple[Path, Path]:
    """shard/engine/book.py with a (fake) extension beside it, recorded in a manifest."""
    source = tmp_path / "shard" / "engine" / "book.py"
    source.parent.mkdir(parents=True)
    source.write_text("X = 1\n")
    source.with_name(f"book{SUFFIX}").write_bytes(b"")
    (tmp_path / "shard" / f"hot_path__mypyc{SUFFIX}").write_bytes(b"")  # the group's library
    manifest = tmp_path / "hot_path.json"
    manifest.write_text(json.dumps({"shard.engine.book": digest(source)}))
    return tmp_path, manifest


def test_an_extension_built_from_its_current_source_is_fresh(tmp_path: Path) -> None:
    root, manifest = a_compiled_tree(tmp_path)
    assert list(extensions(root)) == ["shard.engine.book"]
    assert stale(root, manifest) == []
    check(root, manifest)


def test_an_edited_source_makes_its_extension_stale_and_refused(tmp_path: Path) -> None:
    root, manifest = a_compiled_tree(tmp_path)
    (root / "shard" / "engine" / "book.py").write_text("X = 2\n")
    assert stale(root, manifest) == ["shard/engine/book.py changed since it was compiled"]
    with pytest.raises(HotPathError, match="make compile"):
        check(root, manifest)


def test_an_extension_no_build_recorded_is_stale(tmp_path: Path) -> None:
    root, manifest = a_compiled_tree(tmp_path)
    manifest.unlink()
    assert stale(root, manifest) == ["shard.engine.book: an extension no build of ours recorded"]


@pytest.fixture
def compiled() -> None:
    """CI tests the compiled hot path, as it ships; elsewhere it may be pure (make pure)."""
    if not up_to_date():
        if os.environ.get("CI"):
            pytest.fail("CI must test the compiled hot path: `make compile` did not run")
        pytest.skip("the hot path is not compiled here (make compile)")


@pytest.mark.usefixtures("compiled")
def test_every_hot_path_module_imported_is_the_compiled_one() -> None:
    for module in MODULES:
        assert str(importlib.import_module(module).__file__).endswith(SUFFIX), module


@pytest.mark.usefixtures("compiled")
def test_a_wheel_built_from_the_compiled_tree_carries_it(tmp_path: Path) -> None:
    """What the Dockerfile's build stage does after compiling: `pip install .` of the tree."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, ROOT],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("spotmatch-*.whl")
    site = tmp_path / "site"
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
