package main

import (
	"fmt"
	"reflect"
	"time"

	eventsv1 "github.com/pantheon-scdt/pantheon/generated/go/pantheon_api/events/v1"
	metadatav1 "github.com/pantheon-scdt/pantheon/generated/go/pantheon_api/metadata/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The CloudEvents Kafka binding as documented in events.proto.
const (
	specVersion  = "1.0"
	contentType  = "application/protobuf"
	schemaPrefix = "proto:"
)

// ce_type of each payload, by full message name.
var eventTypes = map[protoreflect.FullName]string{
	(&eventsv1.DataStored{}).ProtoReflect().Descriptor().FullName():     "pantheon.data.stored.v1",
	(&eventsv1.RecordIngested{}).ProtoReflect().Descriptor().FullName(): "pantheon.record.ingested.v1",
}

// problems collects everything wrong with a capture, so one run names all of it.
type problems []string

func (p *problems) add(where, format string, args ...any) {
	*p = append(*p, where+": "+fmt.Sprintf(format, args...))
}

func (p *problems) equal(where, field string, got, want any) {
	if !reflect.DeepEqual(got, want) {
		p.add(where, "%s is %#v, want %#v", field, got, want)
	}
}

func (p *problems) present(where, field string, ok bool) {
	if !ok {
		p.add(where, "%s is missing", field)
	}
}

// check decodes every record of c with the generated Go code and returns
// every missing or wrong header and field, and every expected event not seen.
func check(c *Capture) problems {
	var p problems
	if len(c.Expected.Objects) == 0 || len(c.Expected.Records) == 0 {
		p.add("capture", "expects no DataStored or no RecordIngested events: nothing to check")
	}
	objects := map[string]ExpectedObject{}
	for _, o := range c.Expected.Objects {
		objects[o.ID] = o
	}
	records := map[string]ExpectedRecord{}
	for _, r := range c.Expected.Records {
		records[r.ID] = r
	}
	seen := map[string]int{}
	for _, rec := range c.Records {
		where := fmt.Sprintf("%s[%d]@%d", rec.Topic, rec.Partition, rec.Offset)
		payload := checkHeaders(&p, where, rec, c.Source)
		switch event := payload.(type) {
		case *eventsv1.DataStored:
			id := event.GetMetadata().GetId()
			seen[id]++
			checkDataStored(&p, where, rec, event, c.Source, objects)
		case *eventsv1.RecordIngested:
			id := event.GetMetadata().GetId()
			seen[id]++
			checkRecordIngested(&p, where, rec, event, c.Source, records)
		}
	}
	for id := range objects {
		if seen[id] != 1 {
			p.add("DataStored "+id, "seen %d times, want exactly once", seen[id])
		}
	}
	for id := range records {
		if seen[id] != 1 {
			p.add("RecordIngested "+id, "seen %d times, want exactly once", seen[id])
		}
	}
	return p
}

// checkHeaders checks the CloudEvents headers and returns the decoded payload
// (nil if it cannot be decoded).
func checkHeaders(p *problems, where string, rec KafkaRecord, source string) proto.Message {
	header := func(name string) string {
		value, ok := rec.Header(name)
		p.present(where, "header "+name, ok && value != "")
		return value
	}
	if v := header("ce_specversion"); v != "" {
		p.equal(where, "header ce_specversion", v, specVersion)
	}
	header("ce_id")
	header("ce_subject")
	if v := header("ce_source"); v != "" {
		p.equal(where, "header ce_source", v, "/pantheon/"+source)
	}
	if v := header("ce_time"); v != "" {
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			p.add(where, "header ce_time %q is not RFC 3339", v)
		}
	}
	if v := header("content-type"); v != "" {
		p.equal(where, "header content-type", v, contentType)
	}
	schema := header("ce_dataschema")
	var payload proto.Message
	switch schema {
	case schemaPrefix + string((&eventsv1.DataStored{}).ProtoReflect().Descriptor().FullName()):
		payload = &eventsv1.DataStored{}
	case schemaPrefix + string((&eventsv1.RecordIngested{}).ProtoReflect().Descriptor().FullName()):
		payload = &eventsv1.RecordIngested{}
	default:
		if schema != "" {
			p.add(where, "header ce_dataschema %q names no payload this test expects", schema)
		}
		return nil
	}
	name := payload.ProtoReflect().Descriptor().FullName()
	if v := header("ce_type"); v != "" {
		p.equal(where, "header ce_type", v, eventTypes[name])
	}
	if err := proto.Unmarshal(rec.Value, payload); err != nil {
		p.add(where, "value does not decode as %s: %v", name, err)
		return nil
	}
	return payload
}

// checkMetadata checks the fields every event's metadata must carry.
func checkMetadata(p *problems, where string, rec KafkaRecord, m *metadatav1.Metadata, source, dataType string) {
	if m == nil {
		p.add(where, "metadata is missing")
		return
	}
	p.present(where, "metadata.id", m.GetId() != "")
	p.equal(where, "metadata.source", m.GetSource(), source)
	p.equal(where, "metadata.data_type", m.GetDataType(), dataType)
	p.present(where, "metadata.observed_at", m.GetObservedAt() != nil)
	p.present(where, "metadata.ingested_at", m.GetIngestedAt() != nil)
	p.present(where, "metadata.location", m.GetLocation() != nil)
	p.present(where, "metadata.format", m.GetFormat() != metadatav1.Format_FORMAT_UNSPECIFIED)
	p.present(where, "metadata.media_type", m.GetMediaType() != "")
	if subject, _ := rec.Header("ce_subject"); subject != "" {
		p.equal(where, "header ce_subject", subject, m.GetId())
	}
}

func checkEventID(p *problems, where string, rec KafkaRecord, eventID, want string) {
	p.equal(where, "event_id", eventID, want)
	if ceID, _ := rec.Header("ce_id"); ceID != "" {
		p.equal(where, "header ce_id", ceID, eventID)
	}
}

func checkDataStored(p *problems, where string, rec KafkaRecord, e *eventsv1.DataStored, source string, objects map[string]ExpectedObject) {
	m := e.GetMetadata()
	want, ok := objects[m.GetId()]
	if !ok {
		p.add(where, "DataStored for %q, which no ingest response returned", m.GetId())
		return
	}
	where += " DataStored " + want.ID
	checkEventID(p, where, rec, e.GetEventId(), want.EventID)
	checkMetadata(p, where, rec, m, source, want.DataType)
	p.equal(where, "record key", rec.Key, source)
	p.equal(where, "metadata.format", m.GetFormat().String(), want.Format)
	p.equal(where, "metadata.media_type", m.GetMediaType(), want.MediaType)
	p.equal(where, "metadata.sha256", m.GetSha256(), want.SHA256)
	p.equal(where, "metadata.size_bytes", m.GetSizeBytes(), want.SizeBytes)
	p.present(where, "metadata.geohash", m.GetGeohash() != "")
	ref := e.GetObject()
	if ref == nil {
		p.add(where, "object is missing")
		return
	}
	p.equal(where, "object.bucket", ref.GetBucket(), want.Bucket)
	p.equal(where, "object.key", ref.GetKey(), want.Key)
	p.equal(where, "object.sha256", ref.GetSha256(), want.SHA256)
	p.equal(where, "object.size_bytes", ref.GetSizeBytes(), want.SizeBytes)
}

func checkRecordIngested(p *problems, where string, rec KafkaRecord, e *eventsv1.RecordIngested, source string, records map[string]ExpectedRecord) {
	m := e.GetMetadata()
	want, ok := records[m.GetId()]
	if !ok {
		p.add(where, "RecordIngested for %q, which no ingest response returned", m.GetId())
		return
	}
	where += " RecordIngested " + want.ID
	checkEventID(p, where, rec, e.GetEventId(), want.EventID)
	checkMetadata(p, where, rec, m, source, want.DataType)
	p.equal(where, "record key", rec.Key, source+"/"+want.EntityID)
	p.equal(where, "metadata.entity_id", m.GetEntityId(), want.EntityID)
	p.equal(where, "metadata.lineage.parent_ids", m.GetLineage().GetParentIds(), []string{want.BatchID})
	p.equal(where, "batch_index", e.GetBatchIndex(), want.BatchIndex)
	if e.GetBatchObject() == nil {
		p.add(where, "batch_object is missing")
	} else {
		p.equal(where, "batch_object.key", e.GetBatchObject().GetKey(), want.BatchKey)
	}
	if e.GetPayload() == nil {
		p.add(where, "payload is missing")
	} else {
		p.equal(where, "payload", e.GetPayload().AsMap(), want.Payload)
	}
}
