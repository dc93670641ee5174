"""The compiled hot path (tools/hot_path.py): a stale extension is refused, and CI tests the
compiled modules (tests/test_dockerfile.py checks that the image's wheel carries them)."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

from tools.hot_path import (
    INLINED,
    MODULES,
    PACKAGES,
    ROOT,
    SUFFIX,
    HotPathError,
    check,
    digest,
    extensions,
    source_of,
    stale,
)


def a_compiled_tree(tmp_path: Path) -> tuple[Path, Path]:
    """shard/engine/book.py with a (fake) extension beside it, and api/limits.py (whose
    Final constants compiled code copies), both recorded in a manifest."""
    source = tmp_path / "shard" / "engine" / "book.py"
    source.parent.mkdir(parents=True)
    source.write_text("X = 1\n")
    source.with_name(f"book{SUFFIX}").write_bytes(b"")
    (tmp_path / "shard" / f"hot_path__mypyc{SUFFIX}").write_bytes(b"")  # the group's library
    limits = tmp_path / "api" / "limits.py"
    limits.parent.mkdir()
    limits.write_text("LIMIT: Final = 1\n")
    manifest = tmp_path / "hot_path.json"
    built = {"shard.engine.book": digest(source), "api.limits": digest(limits)}
    manifest.write_text(json.dumps(built))
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


def test_an_edited_module_whose_constants_are_compiled_in_makes_all_stale(
    tmp_path: Path,
) -> None:
    root, manifest = a_compiled_tree(tmp_path)
    (root / "api" / "limits.py").write_text("LIMIT: Final = 2\n")
    assert stale(root, manifest) == [
        "api/limits.py changed since the hot path was compiled (the extensions hold copies"
        " of its Final constants)"
    ]


def _imported(module: str) -> set[str]:
    """Our modules that ``module`` imports: ``from a.b import c`` may import module a.b or
    module a.b.c; ``from . import c`` is relative to the module's package."""
    found: set[str] = set()
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source_of(module).read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    ours = {n for n in found if n.split(".")[0] in PACKAGES}
    return {n for n in ours if source_of(n).exists()}  # names and packages' __init__ aside


def _has_final(module: str) -> bool:
    tree = ast.parse(source_of(module).read_text())
    return any(
        isinstance(node, ast.AnnAssign) and "Final" in ast.unparse(node.annotation)
        for node in tree.body
    )


def test_every_interpreted_module_with_constants_compiled_code_reads_is_watched() -> None:
    """mypyc copies the values of imported Final names into the extensions: each module of
    such names that a compiled module imports must be recorded (INLINED) or compiled."""
    imported = set().union(*(_imported(m) for m in MODULES))
    assert "api.limits" in imported  # the scan sees what api.validation reads
    with_finals = {m for m in imported - set(MODULES) if _has_final(m)}
    assert with_finals <= set(INLINED), with_finals - set(INLINED)
    assert all(source_of(m, ROOT).exists() for m in INLINED)


def test_an_extension_no_build_recorded_is_stale(tmp_path: Path) -> None:
    root, manifest = a_compiled_tree(tmp_path)
    manifest.unlink()
    reasons = stale(root, manifest)
    assert reasons[0] == "shard.engine.book: an extension no build of ours recorded"
    assert reasons[1].startswith("api/limits.py changed since the hot path was compiled")


@pytest.mark.usefixtures("compiled_hot_path")
def test_every_hot_path_module_imported_is_the_compiled_one() -> None:
    for module in MODULES:
        assert str(importlib.import_module(module).__file__).endswith(SUFFIX), module
