"""Generate Python code for everything under proto/ (see scripts/gen)."""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
OUT = ROOT / "generated"
# google/rpc comes from googleapis-common-protos at run time; generating it
# again would shadow that package's modules, so it is vendored for protoc and
# buf only.
NOT_GENERATED = ("google/",)


def sources() -> list[str]:
    found = sorted(p.relative_to(PROTO).as_posix() for p in PROTO.rglob("*.proto"))
    return [p for p in found if not p.startswith(NOT_GENERATED)]


def generate(out: Path) -> None:
    bin_dir = Path(sys.executable).parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources(),
    ]
    # The mypy plugins chatter on stderr; show it only when protoc fails.
    done = subprocess.run(cmd, cwd=PROTO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"protoc failed with exit code {done.returncode}")
    # Packages, so setuptools installs them and mypy follows them.
    for directory in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        if directory != out:
            (directory / "__init__.py").touch()
    for top in out.iterdir():
        if top.is_dir():
            (top / "py.typed").touch()
    # Both plugins emit a gRPC module for every file, also those without a
    # service; those hold nothing, so drop them.
    for module in out.rglob("*_pb2_grpc.py"):
        if "def add_" not in module.read_text():
            module.unlink()
    for stub in out.rglob("*_pb2_grpc.pyi"):
        if not stub.with_suffix(".py").exists():
            stub.unlink()


def tree(path: Path) -> set[str]:
    skip = {"__pycache__"}
    return {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not skip.intersection(p.parts)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated/ is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            have, want = tree(OUT) if OUT.exists() else set(), tree(fresh)
            stale = sorted(
                (have ^ want) | {f for f in have & want if not filecmp.cmp(OUT / f, fresh / f, shallow=False)}
            )
            for name in stale:
                print(f"stale: generated/{name}", file=sys.stderr)
            if stale:
                print("generated/ is out of date: run scripts/gen", file=sys.stderr)
                return 1
            return 0
        if OUT.exists():
            shutil.rmtree(OUT)
        shutil.copytree(fresh, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
