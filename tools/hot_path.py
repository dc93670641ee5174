"""The hot path compiled with mypyc (decision 0021): which modules, building them, and the
check that every compiled extension was built from the source beside it.

An extension module shadows its ``.py``: after an edit, a stale one would run the old code
without a word. So the build records each source's SHA-256 in ``tools/hot_path.json``, and
every entry point (the ``spotmatch`` command, ``python -m shard|router``, the test suite)
refuses to start while an extension's source has changed since.

    python -m tools.hot_path            build, unless what is built matches the sources
    python -m tools.hot_path --clean    remove the extensions: run as pure Python
    python -m tools.hot_path --check    exit 1 (saying why) unless all is compiled and fresh
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

# What one command costs on the shard's event loop: the engine, admission and recording of
# each command, the rows and their COPY text, and the edge's conversions; and the protobuf
# bytes routers and publishers write themselves (api.protowire, marketdata.wire). Measured
# in docs/benchmarks.md (2026-12-07); pipeline, server and I/O code stays interpreted.
MODULES = (
    "shard.engine.types",
    "shard.engine.levels",
    "shard.engine.book",
    "shard.engine.matching",
    "shard.engine.validation",
    "shard.engine.engine",
    "shard.recording",
    "shard.idempotency",
    "shard.admission",
    "shard.edge",
    "shard.results",
    "persistence.copy_text",
    "persistence.rows",
    "api.validation",
    "api.protowire",
    "marketdata.wire",
)
# Interpreted modules whose `Final` constants compiled code reads: mypyc copies their values
# into the extensions, so an edit there makes every extension stale too
# (tests/tools/test_hot_path.py finds any such module missing here).
INLINED = ("api.limits",)
GROUP = "shard.hot_path"  # the shared library: shard/hot_path__mypyc.<suffix>
PACKAGES = ("api", "cluster", "marketdata", "persistence", "router", "shard", "spotmatch",
            "telemetry", "tools")  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).with_name("hot_path.json")
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


class HotPathError(Exception):
    """A compiled extension does not match its source, or the build failed."""


def source_of(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extensions(root: Path = ROOT) -> dict[str, Path]:
    """Every module of ours that an extension provides (the group's library aside)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob(f"*{SUFFIX}")):
            name = path.name.removesuffix(SUFFIX)
            if not name.endswith("__mypyc"):
                parts = path.relative_to(root).parent.parts
                found[".".join((*parts, name))] = path
    return found


def stale(root: Path = ROOT, manifest: Path = MANIFEST) -> list[str]:
    """Why each stale extension is stale; empty when all match (or there are none)."""
    built = json.loads(manifest.read_text()) if manifest.exists() else {}
    found = extensions(root)
    reasons = []
    for module in found:
        if module not in built:
            reasons.append(f"{module}: an extension no build of ours recorded")
        elif _changed(module, root, built):
            reasons.append(
                f"{source_of(module, root).relative_to(root)} changed since it was compiled"
            )
    for module in INLINED if found else ():
        if _changed(module, root, built):
            reasons.append(
                f"{source_of(module, root).relative_to(root)} changed since the hot path was"
                " compiled (the extensions hold copies of its Final constants)"
            )
    return reasons


def _changed(module: str, root: Path, built: dict[str, str]) -> bool:
    source = source_of(module, root)
    return not source.exists() or built.get(module) != digest(source)


def check(root: Path = ROOT, manifest: Path = MANIFEST) -> None:
    reasons = stale(root, manifest)
    if reasons:
        raise HotPathError(
            "stale compiled modules (they would run old code): "
            + "; ".join(reasons)
            + ". Run `make compile` (or `python -m tools.hot_path --clean` for pure Python)."
        )


def refuse_stale_build() -> None:
    """For entry points: exit with the reason rather than run a stale extension."""
    try:
        check()
    except HotPathError as exc:
        raise SystemExit(f"error: {exc}") from None


def up_to_date(root: Path = ROOT, manifest: Path = MANIFEST) -> bool:
    return set(extensions(root)) == set(MODULES) and not stale(root, manifest)


def clean(root: Path = ROOT, manifest: Path = MANIFEST) -> None:
    for package in PACKAGES:
        for path in (root / package).rglob(f"*{SUFFIX}"):
            path.unlink()
    manifest.unlink(missing_ok=True)
    shutil.rmtree(root / "build" / "mypyc", ignore_errors=True)


def build(root: Path = ROOT, manifest: Path = MANIFEST) -> None:
    """Compile MODULES in place (about 30 s on 2 cores), then record their sources."""
    # Imported here: every entry point imports check(), and mypyc is a build-time dependency.
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import setup  # noqa: PLC0415

    clean(root, manifest)
    work = root / "build" / "mypyc"
    cwd = Path.cwd()
    os.chdir(root)  # mypyc names the modules by their paths relative to here
    try:
        setup(
            name="spotmatch-hot-path",
            ext_modules=mypycify(
                [str(source_of(m, Path())) for m in MODULES],
                group_name=GROUP,
                target_dir=str(work / "c"),
            ),
            script_args=[
                *("--quiet", "build_ext", "--inplace"),
                *("--build-temp", str(work / "o"), "--build-lib", str(work / "lib")),
            ],
        )
    except SystemExit as exc:  # distutils reports a failed build by exiting
        raise HotPathError(f"mypyc build failed: {exc}") from exc
    finally:
        os.chdir(cwd)
    if set(extensions(root)) != set(MODULES):
        raise HotPathError(f"the build left {sorted(extensions(root))}, not {list(MODULES)}")
    recorded = {m: digest(source_of(m, root)) for m in (*MODULES, *INLINED)}
    manifest.write_text(json.dumps(recorded, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.hot_path", description=__doc__.split("\n\n")[0]
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--clean", action="store_true", help="remove the extensions")
    action.add_argument(
        "--check", action="store_true", help="fail unless every module is compiled and fresh"
    )
    args = parser.parse_args(argv)
    try:
        if args.clean:
            clean()
        elif args.check:
            check()
            missing = sorted(set(MODULES) - set(extensions()))
            if missing:
                raise HotPathError(f"not compiled: {', '.join(missing)}")
            print("hot path: compiled and up to date")
        elif up_to_date():
            print("hot path: compiled and up to date")
        else:
            build()
            print(f"hot path: compiled {len(MODULES)} modules")
    except HotPathError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
