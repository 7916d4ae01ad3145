"""Provisioning for the cross-language tests: the Go program built once per
content, the Node packages installed once per lock file and generated code.

Both are keyed by a digest of everything they are built from, so a rerun
with nothing changed costs a few file reads and no `go` or `npm` call, and a
change to generated/ (or to the programs) rebuilds exactly once. A file lock
keeps concurrent test sessions on one checkout from building at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GO_DIR = ROOT / "tests" / "interop" / "go"
TS_DIR = ROOT / "tests" / "interop" / "ts"
GENERATED_GO = ROOT / "generated" / "go"
GENERATED_TS = ROOT / "generated" / "ts"
CACHE = Path(os.environ.get("PANTHEON_CACHE_DIR", Path.home() / ".cache" / "pantheon"))
BUILD_TIMEOUT_S = 900


class ProvisionError(RuntimeError):
    """A toolchain is missing or a build/install failed (the message says which)."""


def _files(*roots: Path, suffixes: tuple[str, ...] = ()) -> Iterable[Path]:
    for root in roots:
        if root.is_file():
            yield root
            continue
        for path in sorted(root.rglob("*")):
            if "node_modules" in path.relative_to(root).parts or not path.is_file():
                continue
            if not suffixes or path.name.endswith(suffixes):
                yield path


def digest(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ProvisionError(f"`{name}` is not on PATH: the cross-language tests need Go 1.26+ and Node 20+")
    return found


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise ProvisionError(f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout}{done.stderr}")


@contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def go_program() -> Path:
    """The Go interop program, built into the cache for this content."""
    key = digest([*_files(GO_DIR, suffixes=(".go", "go.mod", "go.sum")), *_files(GENERATED_GO)])
    binary = CACHE / "interop" / f"interop-go-{key}"
    if binary.exists():
        return binary
    go = _tool("go")
    with _locked("interop-go"):
        if not binary.exists():
            binary.parent.mkdir(parents=True, exist_ok=True)
            for old in binary.parent.glob("interop-go-*"):
                old.unlink()
            # Modules come from the module proxy into the default GOMODCACHE;
            # -mod=readonly: the committed go.sum must already be complete.
            env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false", "GOWORK": "off"}
            partial = binary.with_suffix(".partial")
            _run([go, "build", "-trimpath", "-o", str(partial), "."], GO_DIR, env)
            partial.rename(binary)
    return binary


def node_packages() -> Path:
    """tests/interop/ts with its node_modules installed (npm ci) for the
    current lock file and generated/ts; returns the directory."""
    key = digest(
        [TS_DIR / "package.json", TS_DIR / "package-lock.json", TS_DIR / ".npmrc", *_files(GENERATED_TS)]
    )
    stamp = TS_DIR / "node_modules" / ".pantheon-provisioned"
    if stamp.exists() and stamp.read_text() == key:
        return TS_DIR
    npm = _tool("npm")
    _tool("node")
    with _locked("interop-ts"):
        if not (stamp.exists() and stamp.read_text() == key):
            # ci: exactly the lock file; the generated package is copied in
            # (.npmrc install-links), so a changed generated/ts needs a new ci.
            _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], TS_DIR)
            stamp.write_text(key)
    return TS_DIR
