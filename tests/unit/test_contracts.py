"""The proto contracts: generated code is current, buf lint is clean, and
nothing breaks wire, JSON or source compatibility with the released contract.

The evolution gate compares proto/ with `proto/released.binpb`, the buf image
of the contract as last released, not with a git branch (on main, main
compared with itself could never fail). The tests run the gate exactly as
documented in proto/README.md ("Schema evolution"), in this checkout and in
copies of it whose protos were broken on purpose, so they show it rejecting a
renumbered field, a removed field and a changed type on any branch.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
BASELINE = "proto/released.binpb"
#: The evolution gate (run from the repository root).
GATE = ("scripts/buf", "breaking", "--against", BASELINE)
#: The one command that moves the baseline forward when a release is cut.
RELEASE = ("scripts/buf", "build", "--exclude-source-info", "-o", BASELINE)
METADATA = "proto/pantheon_api/metadata/v1/metadata.proto"
INGEST = "proto/pantheon_api/ingest/v1/ingest_service.proto"
V1_FILES = {
    "pantheon_api/metadata/v1/metadata.proto",
    "pantheon_api/events/v1/events.proto",
    "pantheon_api/ingest/v1/ingest_service.proto",
    "pantheon_api/storage/v1/storage_service.proto",
}


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240)


def test_generated_code_matches_protos() -> None:
    done = run("scripts/gen", "--check")
    assert done.returncode == 0, done.stderr


def test_buf_lint_is_clean() -> None:
    done = run("scripts/buf", "lint")
    assert done.returncode == 0, done.stdout + done.stderr


# --- the evolution gate ------------------------------------------------------


@dataclass
class Verdict:
    returncode: int
    #: (rule, path relative to the checkout, message), one per violation.
    findings: list[tuple[str, str, str]]
    output: str

    def report(self) -> str:
        return "\n".join(f"{rule}: {message}" for rule, _, message in self.findings) or self.output


def gate(checkout: Path = ROOT) -> Verdict:
    """Run GATE in `checkout` (this repository or a copy), as a schema owner would."""
    done = run(*GATE, "--error-format", "json", cwd=checkout)
    findings = []
    for line in done.stdout.splitlines():
        finding = json.loads(line)
        path = Path(finding["path"])
        where = path.relative_to(checkout) if path.is_absolute() else path
        findings.append((finding["type"], where.as_posix(), finding["message"]))
    return Verdict(done.returncode, findings, done.stdout + done.stderr)


def test_the_protos_keep_the_released_contract() -> None:
    verdict = gate()
    assert verdict.returncode == 0, verdict.report()
    assert verdict.findings == []


def test_the_baseline_is_a_whole_release() -> None:
    """An empty or partial baseline would let the gate pass vacuously."""
    image = descriptor_pb2.FileDescriptorSet.FromString((ROOT / BASELINE).read_bytes())
    names = {file.name for file in image.file}
    assert names >= V1_FILES, f"the baseline lacks {sorted(V1_FILES - names)}"
    for file in image.file:
        missing = set(file.dependency) - names
        assert not missing, f"{file.name}: imports {sorted(missing)}, which the baseline lacks"
        assert not file.HasField("source_code_info"), f"{file.name}: written without --exclude-source-info"
    metadata = next(f for f in image.file if f.name == "pantheon_api/metadata/v1/metadata.proto")
    assert any(m.name == "Metadata" and len(m.field) > 20 for m in metadata.message_type)


def test_proto_readme_gives_the_gate_and_the_release_command() -> None:
    readme = (ROOT / "proto" / "README.md").read_text()
    for command in (GATE, RELEASE):
        assert " ".join(command) in readme, f"proto/README.md does not show `{' '.join(command)}`"


Edit = Callable[[Path], None]


def replace(path: str, pattern: str, new: str) -> Edit:
    """Substitute a regular expression that must match exactly once in `path`."""

    def edit(checkout: Path) -> None:
        file = checkout / path
        text, count = re.subn(pattern, new, file.read_text(), flags=re.MULTILINE)
        assert count == 1, f"{pattern!r} matched {count} times in {path}"
        file.write_text(text)

    return edit


def each(*edits: Edit) -> Edit:
    def edit(checkout: Path) -> None:
        for e in edits:
            e(checkout)

    return edit


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of what the gate reads: buf.yaml, proto/ (with the committed
    baseline) and scripts/buf, which runs in the directory above its own."""
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy2(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "buf", tmp_path / "scripts" / "buf")
    assert (tmp_path / BASELINE).read_bytes() == (ROOT / BASELINE).read_bytes()
    return tmp_path


#: Breaking change -> (edit, the buf rule that must reject it, a regular
#: expression its message must match). Rule names as in
#: `scripts/buf config ls-breaking-rules`.
BREAKING: dict[str, tuple[Edit, str, str]] = {
    # A field moved to a new number: to buf (and to every decoder) field 19
    # is gone and an unrelated field 23 appeared.
    "renumbered-field": (
        replace(METADATA, r"^  string provider = 19 \[", "  string provider = 23 ["),
        "FIELD_NO_DELETE",
        r'Previously present field "19" with name "provider" on message "Metadata" was deleted',
    ),
    # Two fields trade numbers: old bytes would land in the wrong field.
    "renumbered-fields-swapped": (
        each(
            replace(METADATA, r"^  string provider = 19 \[", "  string provider = 13 ["),
            replace(METADATA, r"^  string admin_area = 13 \[", "  string admin_area = 19 ["),
        ),
        "FIELD_SAME_NAME",
        r'Field "19" on message "Metadata" changed name from "provider" to "admin_area"',
    ),
    "removed-field": (
        replace(METADATA, r"^  string admin_area = 13 \[.*\];\n", ""),
        "FIELD_NO_DELETE",
        r'Previously present field "13" with name "admin_area" on message "Metadata" was deleted',
    ),
    "changed-type": (
        replace(METADATA, r"^  uint64 record_count = 9;", "  string record_count = 9;"),
        "FIELD_SAME_TYPE",
        r'Field "9" with name "record_count" on message "Metadata" changed type from "uint64" to "string"',
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_the_gate_rejects_a_breaking_change(case: str, checkout: Path) -> None:
    edit, rule, message = BREAKING[case]
    edit(checkout)
    verdict = gate(checkout)
    assert verdict.returncode != 0, f"the gate accepted {case}"
    assert verdict.findings, verdict.output  # rejected by a rule, not by a parse error
    assert {path for _, path, _ in verdict.findings} == {METADATA}, verdict.report()
    assert any(r == rule and re.search(message, m) for r, _, m in verdict.findings), verdict.report()


def test_an_unchanged_copy_passes_the_gate(checkout: Path) -> None:
    verdict = gate(checkout)
    assert verdict.returncode == 0, verdict.report()


LICENSE_FIELD = (
    "  // Licence of the data as an SPDX identifier, such as `CC-BY-4.0`.\n"
    "  string license = 23 [(buf.validate.field).string.max_len = 64];\n"
)
ADD_LICENSE = replace(METADATA, r"^(  string provider = 19 \[.*\];\n)", r"\g<1>" + LICENSE_FIELD)

ADDITIONS = each(
    ADD_LICENSE,
    replace(METADATA, r"^(  FORMAT_TIFF = 7;\n)", r"\g<1>  // A Parquet file.\n  FORMAT_PARQUET = 8;\n"),
    # A new RPC with new messages, as IngestionService and StorageService
    # have grown since v1 was first published.
    replace(
        INGEST,
        r"^(  rpc Reconcile\(ReconcileRequest\) returns \(ReconcileResponse\);\n)",
        r"\g<1>  // Lists recent batches.\n"
        "  rpc ListBatches(ListBatchesRequest) returns (ListBatchesResponse);\n",
    ),
    replace(
        INGEST,
        r"\Z",
        "\n// ListBatchesRequest asks for recent batches.\nmessage ListBatchesRequest {\n"
        "  // At most this many.\n  uint32 page_size = 1;\n}\n\n"
        "// ListBatchesResponse lists batches.\nmessage ListBatchesResponse {\n"
        "  // Their ids.\n  repeated string ids = 1;\n}\n",
    ),
)


def test_additions_pass_the_gate(checkout: Path) -> None:
    ADDITIONS(checkout)
    assert run("scripts/buf", "lint", cwd=checkout).returncode == 0
    verdict = gate(checkout)
    assert verdict.returncode == 0, verdict.report()


def test_the_release_command_moves_the_baseline(checkout: Path) -> None:
    """Until a release is cut, an addition may still be taken back; once
    RELEASE ran, it is part of the contract the gate holds."""
    ADD_LICENSE(checkout)
    assert gate(checkout).returncode == 0
    done = run(*RELEASE, cwd=checkout)
    assert done.returncode == 0, done.stderr
    assert (checkout / BASELINE).read_bytes() != (ROOT / BASELINE).read_bytes()
    assert gate(checkout).returncode == 0
    replace(METADATA, re.escape(LICENSE_FIELD), "")(checkout)
    verdict = gate(checkout)
    assert verdict.returncode != 0, "the released field was removed unnoticed"
    assert ("FIELD_NO_DELETE", METADATA) in {(r, p) for r, p, _ in verdict.findings}, verdict.report()
    assert re.search(r'field "23" with name "license"', verdict.report()), verdict.report()
