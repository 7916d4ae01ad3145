"""The golden wire corpus (tests/golden/v1): old producers and new consumers,
new producers and old consumers, agree on what every v1 message means."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message

from pantheon.validation import violations
from tests.golden import corpus

ROOT = Path(__file__).resolve().parents[2]
NAMES = corpus.corpus_names()
EXAMPLES = corpus.examples()


def test_the_corpus_covers_every_message_of_its_schema_and_of_todays() -> None:
    covered = {corpus.full_name(n) for n in NAMES}
    snapshot = corpus.own_messages(corpus.snapshot_pool(), corpus.snapshot_files())
    today = corpus.own_messages(descriptor_pool.Default(), corpus.own_proto_files())
    events = {f"pantheon_api.events.v1.{m}" for m in ("DataStored", "RecordIngested", "DeadLetter")}
    assert events <= snapshot and "pantheon_api.storage.v1.ReleaseIdempotencyKeyResponse" in snapshot
    assert snapshot - covered == set()
    assert today - covered == set(), (
        "new messages need corpus files: add them to examples(), scripts/golden --refresh"
    )
    for name in NAMES:
        assert (corpus.CORPUS / f"{name}.json").exists(), f"{name}.json is missing"


@pytest.mark.parametrize("name", NAMES)
def test_todays_code_decodes_the_corpus_alike(name: str) -> None:
    # Binary re-encodes to the same bytes, JSON and binary decode to the same
    # message, and the binary re-encodes to the same JSON.
    assert corpus.decode_problems(name) == []


@pytest.mark.parametrize("name", NAMES)
def test_corpus_messages_are_valid_and_realistic(name: str) -> None:
    message = corpus.current_class(name).FromString((corpus.CORPUS / f"{name}.binpb").read_bytes())
    assert violations(message) == []
    assert message.ByteSize() > 0 or not message.DESCRIPTOR.fields  # only field-less messages are empty


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_todays_encodings_decode_with_the_corpus_schema(name: str) -> None:
    assert corpus.old_schema_problems(EXAMPLES[name], corpus.snapshot_pool()) == []


def test_the_corpus_exercises_every_kind_of_field() -> None:
    kinds: set[str] = set()

    def walk(message: Message) -> None:
        for fd, value in message.ListFields():
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                kinds.add("map")
                continue
            if fd.is_repeated:
                kinds.add("repeated")
            # proto3 `optional` fields sit in synthetic oneofs named `_<field>`.
            if fd.containing_oneof is not None and not fd.containing_oneof.name.startswith("_"):
                kinds.add("oneof")
            if fd.enum_type is not None:
                kinds.add("enum")
            if fd.type == fd.TYPE_BYTES:
                kinds.add("bytes")
            if fd.message_type is not None:
                kinds.add("any" if fd.message_type.full_name == "google.protobuf.Any" else "nested")
                for item in value if fd.is_repeated else [value]:
                    walk(item)

    for message in EXAMPLES.values():
        walk(message)
    assert kinds >= {"map", "repeated", "oneof", "enum", "nested", "bytes", "any"}


def _changed_snapshot(edit: object) -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(corpus.DESCRIPTORS.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        if file.name == "pantheon_api/metadata/v1/metadata.proto":
            metadata = next(m for m in file.message_type if m.name == "Metadata")
            edit(metadata)  # type: ignore[operator]
        pool.Add(file)
    return pool


def test_the_field_by_field_comparison_notices_a_rename() -> None:
    def rename(metadata: descriptor_pb2.DescriptorProto) -> None:
        field = next(f for f in metadata.field if f.name == "provider")
        field.name, field.json_name = "supplier", "supplier"

    problems = corpus.old_schema_problems(
        EXAMPLES["pantheon_api.metadata.v1.Metadata"], _changed_snapshot(rename)
    )
    assert "supplier: field 19 is now named provider" in problems


def test_the_field_by_field_comparison_notices_a_changed_type() -> None:
    def retype(metadata: descriptor_pb2.DescriptorProto) -> None:
        field = next(f for f in metadata.field if f.name == "record_count")
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING

    problems = corpus.old_schema_problems(
        EXAMPLES["pantheon_api.metadata.v1.Metadata"], _changed_snapshot(retype)
    )
    assert any(p.startswith("record_count:") for p in problems), problems
    assert any("a known field decoded as unknown" in p for p in problems), problems


def _digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_scripts_golden_verifies_without_changing_the_corpus() -> None:
    before = _digest(corpus.CORPUS)
    done = subprocess.run(
        [str(ROOT / "scripts" / "golden")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok:") or "\nok:" in done.stdout
    assert _digest(corpus.CORPUS) == before


def test_refresh_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digests = []
    for attempt in ("a", "b"):
        target = tmp_path / attempt / "v1"
        monkeypatch.setattr(corpus, "CORPUS", target)
        monkeypatch.setattr(corpus, "DESCRIPTORS", target / "descriptors.binpb")
        reported: list[str] = []
        corpus.refresh(reported.append)
        assert len(reported) == 2 * len(EXAMPLES) + 1 and all(r.startswith("added: ") for r in reported)
        digests.append(_digest(target))
    assert digests[0] == digests[1]


def test_a_corpus_file_that_changed_meaning_is_noticed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "pantheon_api.events.v1.DataStored"
    copy = tmp_path / "v1"
    copy.mkdir()
    for path in corpus.CORPUS.glob(f"{name}.*"):
        (copy / path.name).write_bytes(path.read_bytes())
    json_file = copy / f"{name}.json"
    json_file.write_text(json_file.read_text().replace('"sensor.temperature"', '"sensor.humidity"'))
    binary = copy / f"{name}.binpb"
    binary.write_bytes(binary.read_bytes() + b"\xa0\x06\x01")  # field 100, varint 1: unknown today
    monkeypatch.setattr(corpus, "CORPUS", copy)
    assert corpus.decode_problems(name) == [
        "JSON and binary decode to different messages",
        "binary re-encodes to different JSON",
        "binary holds fields today's schema does not know",
    ]
