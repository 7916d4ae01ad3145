"""Generate code for everything under proto/ (see scripts/gen).

Output, all under generated/ and all committed:

- Python messages, gRPC stubs and mypy stubs: generated/pantheon_api/,
  generated/buf/ (grpcio-tools and mypy-protobuf from .venv);
- Go messages and gRPC stubs: generated/go/, the Go module GO_MODULE
  (protoc-gen-go and protoc-gen-go-grpc, built with `go install` through the
  Go module proxy into the cache);
- TypeScript messages: generated/ts/, the npm package TS_PACKAGE
  (protoc-gen-es, installed with npm into the cache).

Every language is compiled by the protoc bundled with grpcio-tools, so all of
them see the same parse of the same files.
"""

from __future__ import annotations

import argparse
import fcntl
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
OUT = ROOT / "generated"
CACHE = Path(os.environ.get("PANTHEON_CACHE_DIR", Path.home() / ".cache" / "pantheon"))
WELL_KNOWN = Path(grpc_tools.__file__).parent / "_proto"

# google/rpc comes from googleapis-common-protos at run time; generating it
# again would shadow that package's modules, so it is vendored for protoc and
# buf only.
NOT_GENERATED_PYTHON = ("google/",)

#: Import path of the generated Go module.
GO_MODULE = "github.com/pantheon-scdt/pantheon/generated/go"
#: The `go` directive of its go.mod (grpc 1.85 needs 1.26).
GO_VERSION = "1.26.0"
#: Direct requirements of the generated Go code, pinned so `go mod tidy`
#: never goes looking for "latest". buf/validate and google/rpc are imported
#: from the modules their go_package options name, so a program that also
#: uses protovalidate-go or grpc's status package registers each file once.
GO_REQUIRE = {
    "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go": "v1.36.12-20260825204119-511051f7f437.2",
    "google.golang.org/genproto/googleapis/rpc": "v0.0.0-20260817212433-ac3dfec99bb1",
    "google.golang.org/grpc": "v1.85.0",
    "google.golang.org/protobuf": "v1.36.12",
}
#: Go plugins: binary name -> (package, version, what `--version` prints).
GO_PLUGINS = {
    "protoc-gen-go": ("google.golang.org/protobuf/cmd/protoc-gen-go", "v1.36.12", "protoc-gen-go v1.36.12"),
    "protoc-gen-go-grpc": (
        "google.golang.org/grpc/cmd/protoc-gen-go-grpc",
        "v1.6.2",
        "protoc-gen-go-grpc 1.6.2",
    ),
}

#: Name of the generated npm package and the plugin/runtime version.
TS_PACKAGE = "@pantheon-scdt/api"
PROTOBUF_ES = "2.17.0"
# .js import suffixes resolve under Node ESM, TypeScript's nodenext, bundlers and tsx alike.
ES_OPTIONS = "target=ts,import_extension=js"


def proto_files(exclude: Sequence[str] = ()) -> list[str]:
    found = sorted(p.relative_to(PROTO).as_posix() for p in PROTO.rglob("*.proto"))
    return [p for p in found if not p.startswith(tuple(exclude))]


def own_files() -> list[str]:
    """Our own contracts (not the vendored third-party protos)."""
    return [p for p in proto_files() if p.startswith("pantheon_api/")]


def protoc(*args: str) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"-I{WELL_KNOWN}", *args]
    # Plugins chatter on stderr; show it only when protoc fails.
    done = subprocess.run(cmd, cwd=PROTO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"protoc failed with exit code {done.returncode}")


def tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"scripts/gen needs `{name}` on PATH ({hint})")
    return found


def run_quietly(
    cmd: Sequence[str], what: str, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{what} failed with exit code {done.returncode}")


@contextmanager
def installing() -> Iterator[None]:
    """Serialises plugin installs of concurrent `scripts/gen` runs on one cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "gen-plugins.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- Python -----------------------------------------------------------------


def generate_python(out: Path) -> None:
    bin_dir = Path(sys.executable).parent
    protoc(
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *proto_files(exclude=NOT_GENERATED_PYTHON),
    )
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


# --- Go ---------------------------------------------------------------------


def go_env() -> dict[str, str]:
    # -mod=mod lets `go mod tidy` write go.sum; GOWORK=off keeps a developer's
    # go.work out of the result.
    return {**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"}


def go_plugins() -> dict[str, Path]:
    """The pinned Go plugins, installed into the cache on first use."""
    bin_dir = CACHE / "bin"
    found = {}
    for name, (package, version, banner) in GO_PLUGINS.items():
        exe = bin_dir / name
        if exe.exists() and _version(exe) == banner:
            found[name] = exe
            continue
        with installing():
            if not (exe.exists() and _version(exe) == banner):  # another run may have just done it
                go = tool("go", "Go 1.26 or newer")
                bin_dir.mkdir(parents=True, exist_ok=True)
                print(f"installing {package}@{version} into {bin_dir}", file=sys.stderr)
                run_quietly(
                    [go, "install", f"{package}@{version}"],
                    f"go install {package}@{version}",
                    env={**go_env(), "GOBIN": str(bin_dir), "GOFLAGS": ""},
                )
            if _version(exe) != banner:
                raise SystemExit(f"{exe} does not report {banner!r} after installing it")
        found[name] = exe
    return found


def _version(exe: Path) -> str:
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def go_package(proto: str) -> str:
    """`<import path>;<package name>` of one of our files, e.g. `.../metadata/v1;metadatav1`.

    The mapping lives here rather than in `option go_package`: adding that
    option to a published file is a change `buf breaking` (FILE) reports.
    """
    directory = Path(proto).parent
    return f"{GO_MODULE}/{directory.as_posix()};{directory.parent.name}{directory.name}"


def go_mod() -> str:
    require = "".join(f"\t{module} {version}\n" for module, version in sorted(GO_REQUIRE.items()))
    return (
        "// Generated by scripts/gen from proto/. DO NOT EDIT.\n"
        f"module {GO_MODULE}\n\ngo {GO_VERSION}\n\nrequire (\n{require})\n"
    )


def generate_go(out: Path) -> None:
    out.mkdir(parents=True)
    plugins = go_plugins()
    mapping = ",".join(f"M{f}={go_package(f)}" for f in own_files())
    options = f"module={GO_MODULE},{mapping}"
    protoc(
        f"--plugin=protoc-gen-go={plugins['protoc-gen-go']}",
        f"--plugin=protoc-gen-go-grpc={plugins['protoc-gen-go-grpc']}",
        f"--go_out={out}",
        f"--go_opt={options}",
        f"--go-grpc_out={out}",
        f"--go-grpc_opt={options}",
        *own_files(),
    )
    (out / "go.mod").write_text(go_mod())
    # go.sum (and the indirect requirements) from the pinned direct ones.
    go = tool("go", "Go 1.26 or newer")
    run_quietly([go, "mod", "tidy"], "go mod tidy (generated/go)", cwd=out, env=go_env())


# --- TypeScript -------------------------------------------------------------


def es_plugin() -> Path:
    """protoc-gen-es, installed with npm into the cache on first use."""
    prefix = CACHE / f"protoc-gen-es-{PROTOBUF_ES}"
    exe = prefix / "node_modules" / ".bin" / "protoc-gen-es"
    if exe.exists():
        return exe
    with installing():
        if not exe.exists():  # another run may have just done it
            npm = tool("npm", "Node.js 20 or newer")
            prefix.mkdir(parents=True, exist_ok=True)
            print(f"installing @bufbuild/protoc-gen-es@{PROTOBUF_ES} into {prefix}", file=sys.stderr)
            run_quietly(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                 f"@bufbuild/protoc-gen-es@{PROTOBUF_ES}"],
                "npm install @bufbuild/protoc-gen-es",
            )  # fmt: skip
    return exe


def package_json() -> str:
    package = {
        "name": TS_PACKAGE,
        "version": "1.0.0",
        "description": "Pantheon contracts (proto/) as TypeScript, generated by scripts/gen: do not edit.",
        "private": True,
        "license": "Apache-2.0",
        "type": "module",
        "peerDependencies": {"@bufbuild/protobuf": f"^{PROTOBUF_ES}"},
    }
    return json.dumps(package, indent=2) + "\n"


def generate_ts(out: Path) -> None:
    out.mkdir(parents=True)
    tool("node", "Node.js 20 or newer")
    # The vendored protos are generated too: npm has no package that holds
    # google/rpc or buf/validate for protobuf-es v2.
    protoc(
        f"--plugin=protoc-gen-es={es_plugin()}",
        f"--es_out={out}",
        f"--es_opt={ES_OPTIONS}",
        *proto_files(),
    )
    (out / "package.json").write_text(package_json())


# --- drift check and main ---------------------------------------------------


def generate(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        python = Path(tmp) / "python"
        python.mkdir()
        generate_python(python)
        shutil.copytree(python, out, dirs_exist_ok=True)
    generate_go(out / "go")
    generate_ts(out / "ts")


def tree(path: Path) -> set[str]:
    skip = {"__pycache__", "node_modules"}
    return {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not skip.intersection(p.relative_to(path).parts)
    }


def stale_files(have_root: Path, want_root: Path) -> list[str]:
    have = tree(have_root) if have_root.exists() else set()
    want = tree(want_root)
    differ = {f for f in have & want if not filecmp.cmp(have_root / f, want_root / f, shallow=False)}
    return sorted((have ^ want) | differ)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail, naming the files, if generated/ is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "generated"
        fresh.mkdir()
        generate(fresh)
        if args.check:
            stale = stale_files(OUT, fresh)
            for name in stale:
                print(f"stale: generated/{name}", file=sys.stderr)
            if stale:
                print("generated/ is out of date: run scripts/gen", file=sys.stderr)
                return 1
            return 0
        sync(fresh, OUT)
    return 0


def sync(fresh: Path, out: Path) -> None:
    """Make `out` equal `fresh`, touching only files that differ, so a
    process importing generated code meanwhile never finds it missing."""
    for name in stale_files(out, fresh):
        target, source = out / name, fresh / name
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        else:
            target.unlink()
    # Directories left empty by removed files.
    for directory in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()


if __name__ == "__main__":
    sys.exit(main())
