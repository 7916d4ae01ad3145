// Decodes Pantheon's Kafka events with the TypeScript code generated from
// proto/ (generated/ts, the package @pantheon-scdt/api) and @bufbuild/protobuf,
// and checks their CloudEvents headers and metadata against what the ingest
// responses promised.
//
//   tsx check.ts capture.json
//
// capture.json is written by tests/interop/test_typescript.py (the format of
// the Go checker in ../go/capture.go): the source, the expected events and
// the raw Kafka records (base64 values, headers in order). Exits 1 naming
// every missing or wrong header and field.

import { readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";

import { type DescMessage, fromBinary } from "@bufbuild/protobuf";
import {
  type DataStored,
  DataStoredSchema,
  type RecordIngested,
  RecordIngestedSchema,
} from "@pantheon-scdt/api/pantheon_api/events/v1/events_pb.js";
import { Format, FormatSchema, type Metadata } from "@pantheon-scdt/api/pantheon_api/metadata/v1/metadata_pb.js";

interface ExpectedObject {
  id: string;
  event_id: string;
  data_type: string;
  format: string;
  media_type: string;
  bucket: string;
  key: string;
  sha256: string;
  size_bytes: string;
}

interface ExpectedRecord {
  id: string;
  event_id: string;
  data_type: string;
  entity_id: string;
  batch_id: string;
  batch_key: string;
  batch_index: number;
  payload: Record<string, unknown>;
}

interface KafkaRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string;
  headers: [string, string][];
  value: string;
}

interface Capture {
  source: string;
  expected: { objects: ExpectedObject[]; records: ExpectedRecord[] };
  records: KafkaRecord[];
}

// The CloudEvents Kafka binding as documented in events.proto.
const SPEC_VERSION = "1.0";
const CONTENT_TYPE = "application/protobuf";
const SCHEMA_PREFIX = "proto:";
const PAYLOADS: Record<string, { schema: DescMessage; type: string }> = {
  [DataStoredSchema.typeName]: { schema: DataStoredSchema, type: "pantheon.data.stored.v1" },
  [RecordIngestedSchema.typeName]: { schema: RecordIngestedSchema, type: "pantheon.record.ingested.v1" },
};
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

class Problems {
  readonly list: string[] = [];

  add(where: string, message: string): void {
    this.list.push(`${where}: ${message}`);
  }

  equal(where: string, field: string, got: unknown, want: unknown): void {
    if (!isDeepStrictEqual(got, want)) {
      this.add(where, `${field} is ${show(got)}, want ${show(want)}`);
    }
  }

  present(where: string, field: string, ok: boolean): void {
    if (!ok) {
      this.add(where, `${field} is missing`);
    }
  }
}

function show(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value);
}

function header(record: KafkaRecord, name: string): string | undefined {
  let found: string | undefined;
  for (const [key, value] of record.headers) {
    if (key === name) found = value;
  }
  return found;
}

function formatName(format: Format): string {
  return FormatSchema.values.find((v) => v.number === format)?.name ?? `unknown format ${format}`;
}

/** Checks the headers and returns the decoded payload, if it decodes. */
function checkHeaders(p: Problems, where: string, record: KafkaRecord, source: string): DataStored | RecordIngested | undefined {
  const get = (name: string): string | undefined => {
    const value = header(record, name);
    p.present(where, `header ${name}`, value !== undefined && value !== "");
    return value || undefined;
  };
  const spec = get("ce_specversion");
  if (spec) p.equal(where, "header ce_specversion", spec, SPEC_VERSION);
  get("ce_id");
  get("ce_subject");
  const ceSource = get("ce_source");
  if (ceSource) p.equal(where, "header ce_source", ceSource, `/pantheon/${source}`);
  const time = get("ce_time");
  if (time && (!RFC3339.test(time) || Number.isNaN(Date.parse(time)))) {
    p.add(where, `header ce_time ${show(time)} is not RFC 3339`);
  }
  const content = get("content-type");
  if (content) p.equal(where, "header content-type", content, CONTENT_TYPE);
  const schema = get("ce_dataschema");
  if (!schema) return undefined;
  const payload = schema.startsWith(SCHEMA_PREFIX) ? PAYLOADS[schema.slice(SCHEMA_PREFIX.length)] : undefined;
  if (payload === undefined) {
    p.add(where, `header ce_dataschema ${show(schema)} names no payload this test expects`);
    return undefined;
  }
  const type = get("ce_type");
  if (type) p.equal(where, "header ce_type", type, payload.type);
  try {
    const bytes = new Uint8Array(Buffer.from(record.value, "base64"));
    return fromBinary(payload.schema, bytes) as DataStored | RecordIngested;
  } catch (e) {
    p.add(where, `value does not decode as ${payload.schema.typeName}: ${String(e)}`);
    return undefined;
  }
}

function checkMetadata(p: Problems, where: string, record: KafkaRecord, m: Metadata | undefined, source: string, dataType: string): void {
  if (m === undefined) {
    p.add(where, "metadata is missing");
    return;
  }
  p.present(where, "metadata.id", m.id !== "");
  p.equal(where, "metadata.source", m.source, source);
  p.equal(where, "metadata.data_type", m.dataType, dataType);
  p.present(where, "metadata.observed_at", m.observedAt !== undefined);
  p.present(where, "metadata.ingested_at", m.ingestedAt !== undefined);
  p.present(where, "metadata.location", m.location !== undefined);
  p.present(where, "metadata.format", m.format !== Format.UNSPECIFIED);
  p.present(where, "metadata.media_type", m.mediaType !== "");
  const subject = header(record, "ce_subject");
  if (subject) p.equal(where, "header ce_subject", subject, m.id);
}

function checkEventId(p: Problems, where: string, record: KafkaRecord, eventId: string, want: string): void {
  p.equal(where, "event_id", eventId, want);
  const ceId = header(record, "ce_id");
  if (ceId) p.equal(where, "header ce_id", ceId, eventId);
}

function checkDataStored(p: Problems, where: string, record: KafkaRecord, e: DataStored, source: string, want: ExpectedObject): void {
  const m = e.metadata;
  checkEventId(p, where, record, e.eventId, want.event_id);
  checkMetadata(p, where, record, m, source, want.data_type);
  p.equal(where, "record key", record.key, source);
  if (m !== undefined) {
    p.equal(where, "metadata.format", formatName(m.format), want.format);
    p.equal(where, "metadata.media_type", m.mediaType, want.media_type);
    p.equal(where, "metadata.sha256", m.sha256, want.sha256);
    p.equal(where, "metadata.size_bytes", m.sizeBytes, BigInt(want.size_bytes));
    p.present(where, "metadata.geohash", m.geohash !== "");
  }
  const ref = e.object;
  if (ref === undefined) {
    p.add(where, "object is missing");
    return;
  }
  p.equal(where, "object.bucket", ref.bucket, want.bucket);
  p.equal(where, "object.key", ref.key, want.key);
  p.equal(where, "object.sha256", ref.sha256, want.sha256);
  p.equal(where, "object.size_bytes", ref.sizeBytes, BigInt(want.size_bytes));
}

function checkRecordIngested(p: Problems, where: string, record: KafkaRecord, e: RecordIngested, source: string, want: ExpectedRecord): void {
  const m = e.metadata;
  checkEventId(p, where, record, e.eventId, want.event_id);
  checkMetadata(p, where, record, m, source, want.data_type);
  p.equal(where, "record key", record.key, `${source}/${want.entity_id}`);
  if (m !== undefined) {
    p.equal(where, "metadata.entity_id", m.entityId, want.entity_id);
    p.equal(where, "metadata.lineage.parent_ids", m.lineage?.parentIds ?? [], [want.batch_id]);
  }
  p.equal(where, "batch_index", e.batchIndex, want.batch_index);
  if (e.batchObject === undefined) {
    p.add(where, "batch_object is missing");
  } else {
    p.equal(where, "batch_object.key", e.batchObject.key, want.batch_key);
  }
  if (e.payload === undefined) {
    p.add(where, "payload is missing");
  } else {
    p.equal(where, "payload", e.payload, want.payload);
  }
}

function check(c: Capture): Problems {
  const p = new Problems();
  if (c.expected.objects.length === 0 || c.expected.records.length === 0) {
    p.add("capture", "expects no DataStored or no RecordIngested events: nothing to check");
  }
  const objects = new Map(c.expected.objects.map((o) => [o.id, o]));
  const records = new Map(c.expected.records.map((r) => [r.id, r]));
  const seen = new Map<string, number>();
  for (const record of c.records) {
    let where = `${record.topic}[${record.partition}]@${record.offset}`;
    const event = checkHeaders(p, where, record, c.source);
    if (event === undefined) continue;
    const id = event.metadata?.id ?? "";
    seen.set(id, (seen.get(id) ?? 0) + 1);
    if (event.$typeName === DataStoredSchema.typeName) {
      const want = objects.get(id);
      if (want === undefined) {
        p.add(where, `DataStored for ${show(id)}, which no ingest response returned`);
        continue;
      }
      where += ` DataStored ${id}`;
      checkDataStored(p, where, record, event, c.source, want);
    } else {
      const want = records.get(id);
      if (want === undefined) {
        p.add(where, `RecordIngested for ${show(id)}, which no ingest response returned`);
        continue;
      }
      where += ` RecordIngested ${id}`;
      checkRecordIngested(p, where, record, event, c.source, want);
    }
  }
  for (const id of objects.keys()) {
    const n = seen.get(id) ?? 0;
    if (n !== 1) p.add(`DataStored ${id}`, `seen ${n} times, want exactly once`);
  }
  for (const id of records.keys()) {
    const n = seen.get(id) ?? 0;
    if (n !== 1) p.add(`RecordIngested ${id}`, `seen ${n} times, want exactly once`);
  }
  return p;
}

function main(): number {
  const path = process.argv[2];
  if (path === undefined || process.argv.length !== 3) {
    console.error("usage: tsx check.ts capture.json");
    return 1;
  }
  const capture = JSON.parse(readFileSync(path, "utf8")) as Capture;
  const problems = check(capture);
  for (const problem of problems.list) console.error(`FAIL: ${problem}`);
  if (problems.list.length > 0) {
    console.error(`interop-ts: ${problems.list.length} problems in ${capture.records.length} Kafka records of source ${capture.source}`);
    return 1;
  }
  console.log(
    `ok: ${capture.records.length} Kafka records of source ${capture.source} ` +
      `(${capture.expected.objects.length} DataStored, ${capture.expected.records.length} RecordIngested expected) ` +
      "decoded and checked in TypeScript",
  );
  return 0;
}

process.exitCode = main();
