package main

import (
	"encoding/json"
	"fmt"
	"os"
)

// Capture is what a checker needs: the Kafka records one source's ingest
// calls caused, and what the gRPC responses said they must contain. The
// TypeScript checker (../ts) reads the same JSON, which the pytest wrapper
// writes from records it captured with Python.
type Capture struct {
	Source   string        `json:"source"`
	Expected Expected      `json:"expected"`
	Records  []KafkaRecord `json:"records"`
}

// Expected lists the events the ingest calls promised, from their responses.
type Expected struct {
	// DataStored events: one per stored object (an object or a record batch).
	Objects []ExpectedObject `json:"objects"`
	// RecordIngested events: one per accepted record of a batch.
	Records []ExpectedRecord `json:"records"`
}

// ExpectedObject is one stored object as an ingest response described it.
type ExpectedObject struct {
	ID        string `json:"id"`
	EventID   string `json:"event_id"`
	DataType  string `json:"data_type"`
	Format    string `json:"format"`
	MediaType string `json:"media_type"`
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	SHA256    string `json:"sha256"`
	SizeBytes uint64 `json:"size_bytes,string"`
}

// ExpectedRecord is one accepted record as IngestRecords described it.
type ExpectedRecord struct {
	ID         string         `json:"id"`
	EventID    string         `json:"event_id"`
	DataType   string         `json:"data_type"`
	EntityID   string         `json:"entity_id"`
	BatchID    string         `json:"batch_id"`
	BatchKey   string         `json:"batch_key"`
	BatchIndex uint32         `json:"batch_index"`
	Payload    map[string]any `json:"payload"`
}

// KafkaRecord is one record as read from Kafka; Value is the raw payload
// (base64 in JSON) and Headers keep their order.
type KafkaRecord struct {
	Topic     string      `json:"topic"`
	Partition int32       `json:"partition"`
	Offset    int64       `json:"offset"`
	Key       string      `json:"key"`
	Headers   [][2]string `json:"headers"`
	Value     []byte      `json:"value"`
}

// Header returns the last value of a header and whether it is present.
func (r KafkaRecord) Header(name string) (string, bool) {
	value, found := "", false
	for _, h := range r.Headers {
		if h[0] == name {
			value, found = h[1], true
		}
	}
	return value, found
}

func loadCapture(path string) (*Capture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Capture
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func saveCapture(path string, c *Capture) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
