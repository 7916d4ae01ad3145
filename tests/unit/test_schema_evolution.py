"""The `buf breaking` gate really compares: deliberately breaking changes to a
copy of proto/ are rejected against a git baseline of it, additive ones pass.

Each case copies a baseline repository (proto/ and buf.yaml committed on a
`main` branch, as in this checkout), edits the work tree and runs the pinned
buf exactly as scripts/test does: `buf breaking --against '<repo>/.git#branch=main'`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METADATA = "proto/pantheon_api/metadata/v1/metadata.proto"
EVENTS = "proto/pantheon_api/events/v1/events.proto"
INGEST = "proto/pantheon_api/ingest/v1/ingest_service.proto"

pytestmark = pytest.mark.timeout(300)

Edit = Callable[[Path], None]


def replace(path: str, old: str, new: str) -> Edit:
    def edit(repo: Path) -> None:
        file = repo / path
        text = file.read_text()
        assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
        file.write_text(text.replace(old, new))

    return edit


def both(*edits: Edit) -> Edit:
    def edit(repo: Path) -> None:
        for e in edits:
            e(repo)

    return edit


ADMIN_AREA = "  string admin_area = 13 [(buf.validate.field).string.max_len = 128];\n"

#: Breaking change -> (edit, a regular expression buf's report must match).
BREAKING: dict[str, tuple[Edit, str]] = {
    "renumbered-field": (
        replace(METADATA, "string provider = 19 [", "string provider = 23 ["),
        r'Previously present field "19" with name "provider" on message "Metadata" was deleted',
    ),
    "removed-field": (
        replace(METADATA, ADMIN_AREA, ""),
        r'Previously present field "13" with name "admin_area" on message "Metadata" was deleted',
    ),
    # FILE compatibility is source compatibility too: even a removal that
    # reserves the number and name breaks generated code in v1.
    "removed-field-even-if-reserved": (
        replace(METADATA, ADMIN_AREA, '  reserved 13;\n  reserved "admin_area";\n'),
        r'field "13" with name "admin_area" on message "Metadata" was deleted',
    ),
    "changed-type": (
        replace(METADATA, "uint64 record_count = 9;", "string record_count = 9;"),
        r'Field "9" with name "record_count" on message "Metadata" changed type from "uint64" to "string"',
    ),
    "changed-message-type": (
        replace(EVENTS, "  pantheon_api.metadata.v1.ObjectRef object = 3;", "  string object = 3;"),
        r'Field "3" with name "object" on message "DataStored" changed type',
    ),
    "renamed-field": (
        replace(METADATA, "string provider = 19 [", "string provider_name = 19 ["),
        r'Field "19" on message "Metadata" changed name from "provider" to "provider_name"',
    ),
    "removed-enum-value": (
        replace(METADATA, "  // A TIFF image (GeoTIFF included).\n  FORMAT_TIFF = 7;\n", ""),
        r'Previously present enum value "7" on enum "Format" was deleted',
    ),
    "removed-rpc": (
        replace(
            INGEST,
            "  rpc GetIngestResult(GetIngestResultRequest) returns (GetIngestResultResponse) {\n"
            "    option idempotency_level = NO_SIDE_EFFECTS;\n  }\n",
            "",
        ),
        r'Previously present RPC "GetIngestResult" on service "IngestionService" was deleted',
    ),
    "field-moved-into-oneof": (
        both(
            replace(METADATA, ADMIN_AREA, ""),
            replace(
                METADATA,
                "  string provider = 19 [(buf.validate.field).string.max_len = 128];\n",
                "  // Who.\n  oneof who {\n"
                "    // Organisation.\n    string provider = 19;\n"
                "    // Area.\n    string admin_area = 13;\n  }\n",
            ),
        ),
        r'Field "19" with name "provider" on message "Metadata" moved from outside to inside a oneof',
    ),
}

ADDITIVE = both(
    # A new field with a new number and a comment (buf lint COMMENTS).
    replace(
        METADATA,
        ADMIN_AREA,
        ADMIN_AREA + "  // Licence of the data as an SPDX identifier, such as `CC-BY-4.0`.\n"
        "  string license = 23 [(buf.validate.field).string.max_len = 64];\n",
    ),
    # A new enum value.
    replace(
        METADATA,
        "  FORMAT_TIFF = 7;\n",
        "  FORMAT_TIFF = 7;\n  // A Parquet file.\n  FORMAT_PARQUET = 8;\n",
    ),
    # A new event message.
    replace(
        EVENTS,
        "// DeadLetter describes input",
        "// DataDeleted announces that an object was deleted.\nmessage DataDeleted {\n"
        "  // The event id (also in the `ce_id` header).\n  string event_id = 1;\n"
        "  // Where the object was stored.\n  pantheon_api.metadata.v1.ObjectRef object = 2;\n}\n\n"
        "// DeadLetter describes input",
    ),
    # A deprecated field keeps its number and name.
    replace(
        METADATA,
        "  string provider = 19 [(buf.validate.field).string.max_len = 128];",
        "  string provider = 19 [deprecated = true, (buf.validate.field).string.max_len = 128];",
    ),
)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=baseline", "-c", "user.email=baseline@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding today's proto/ and buf.yaml, committed on main."""
    repo = tmp_path_factory.mktemp("baseline")
    shutil.copytree(ROOT / "proto", repo / "proto")
    shutil.copy2(ROOT / "buf.yaml", repo / "buf.yaml")
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "proto", "buf.yaml")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", "baseline")
    return repo


def changed_copy(baseline: Path, where: Path, edit: Edit) -> Path:
    repo = where / "repo"
    shutil.copytree(baseline, repo, symlinks=True)
    edit(repo)
    return repo


def buf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "buf"), *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def breaking(repo: Path) -> subprocess.CompletedProcess[str]:
    return buf("breaking", str(repo), "--against", f"{repo}/.git#branch=main")


def test_the_unchanged_copy_is_compatible(baseline: Path, tmp_path: Path) -> None:
    done = breaking(changed_copy(baseline, tmp_path, lambda repo: None))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_a_breaking_change_is_rejected(case: str, baseline: Path, tmp_path: Path) -> None:
    edit, report = BREAKING[case]
    repo = changed_copy(baseline, tmp_path, edit)
    # The change itself compiles and lints; only compatibility is at stake.
    assert buf("build", str(repo)).returncode == 0
    done = breaking(repo)
    assert done.returncode != 0, f"buf breaking accepted {case}"
    assert re.search(report, done.stdout), done.stdout + done.stderr


def test_an_additive_change_is_accepted(baseline: Path, tmp_path: Path) -> None:
    repo = changed_copy(baseline, tmp_path, ADDITIVE)
    lint = buf("lint", str(repo))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    done = breaking(repo)
    assert done.returncode == 0, done.stdout + done.stderr
