"""The compiled hot path (tools/hot_path.py): a stale extension is refused, and CI tests the
compiled modules (tests/test_dockerfile.py checks that the image's wheel carries them)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from tools.hot_path import MODULES, SUFFIX, HotPathError, check, digest, extensions, stale


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


@pytest.mark.usefixtures("compiled_hot_path")
def test_every_hot_path_module_imported_is_the_compiled_one() -> None:
    for module in MODULES:
        assert str(importlib.import_module(module).__file__).endswith(SUFFIX), module
