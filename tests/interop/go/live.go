package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	ingestv1 "github.com/pantheon-scdt/pantheon/generated/go/pantheon_api/ingest/v1"
	metadatav1 "github.com/pantheon-scdt/pantheon/generated/go/pantheon_api/metadata/v1"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// env holds the endpoints and credentials `scripts/stack env` exports.
type env struct {
	grpcTarget, caFile                  string
	clientCert, clientKey               string
	kafkaBootstrap, kafkaUser, kafkaPwd string
	eventsTopic, recordsTopic           string
}

func envFromOS() (env, error) {
	var missing []string
	get := func(name string) string {
		value := os.Getenv(name)
		if value == "" {
			missing = append(missing, name)
		}
		return value
	}
	e := env{
		grpcTarget:     get("PANTHEON_GRPC_TARGET"),
		caFile:         get("PANTHEON_CA_FILE"),
		clientCert:     get("PANTHEON_CLIENT_CERT_FILE"),
		clientKey:      get("PANTHEON_CLIENT_KEY_FILE"),
		kafkaBootstrap: get("KAFKA_BOOTSTRAP"),
		kafkaUser:      get("KAFKA_SASL_USERNAME"),
		kafkaPwd:       get("KAFKA_SASL_PASSWORD"),
		eventsTopic:    get("PANTHEON_EVENTS_TOPIC"),
		recordsTopic:   get("PANTHEON_RECORDS_TOPIC"),
	}
	if len(missing) > 0 {
		return e, fmt.Errorf("environment variables not set (run `eval \"$(scripts/stack env)\"`): %v", missing)
	}
	return e, nil
}

func randomSource() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "interop-go-" + hex.EncodeToString(b)
}

// live ingests a record batch and a CSV object as a new source, reads the
// events they caused from Kafka and returns them with what the responses
// promised.
func live(ctx context.Context, e env, wait time.Duration) (*Capture, error) {
	pem, err := os.ReadFile(e.caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", e.caFile)
	}
	tlsConfig := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	kafka, err := kgo.NewClient(
		kgo.SeedBrokers(e.kafkaBootstrap),
		kgo.DialTLSConfig(tlsConfig.Clone()),
		kgo.SASL(scram.Auth{User: e.kafkaUser, Pass: e.kafkaPwd}.AsSha512Mechanism()),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer kafka.Close()
	// The end offsets before ingesting: everything this run causes lies after them.
	ends, err := kadm.NewClient(kafka).ListEndOffsets(ctx, e.eventsTopic, e.recordsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka end offsets: %w", err)
	}
	start := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if start[o.Topic] == nil {
			start[o.Topic] = map[int32]kgo.Offset{}
		}
		start[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})

	// The services require mutual TLS: present this program's workload
	// identity (a client certificate whose SPIFFE ID the mesh policy knows).
	identity, err := tls.LoadX509KeyPair(e.clientCert, e.clientKey)
	if err != nil {
		return nil, fmt.Errorf("client identity: %w", err)
	}
	mesh := tlsConfig.Clone()
	mesh.Certificates = []tls.Certificate{identity}
	conn, err := grpc.NewClient(e.grpcTarget, grpc.WithTransportCredentials(credentials.NewTLS(mesh)))
	if err != nil {
		return nil, fmt.Errorf("grpc client: %w", err)
	}
	defer conn.Close()
	c := &Capture{Source: randomSource()}
	if err := ingest(ctx, ingestv1.NewIngestionServiceClient(conn), c); err != nil {
		return nil, err
	}

	want := len(c.Expected.Objects) + len(c.Expected.Records)
	c.Records, err = consume(ctx, kafka, start, c.Source, want, wait)
	return c, err
}

func ingest(ctx context.Context, client ingestv1.IngestionServiceClient, c *Capture) error {
	observed := time.Now().Add(-time.Minute).UTC()
	payloads := []map[string]any{
		{"temperature_c": 21.5, "humidity_pct": 40.0},
		{"temperature_c": 22.25, "status": "ok"},
		{"temperature_c": -3.0, "flags": []any{"calibrated", true}},
	}
	entities := []string{"go-sensor-1", "go-sensor-2", "go-sensor-1"}
	request := &ingestv1.IngestRecordsRequest{
		DataType:       "sensor.temperature",
		Source:         c.Source,
		IdempotencyKey: "interop-go-batch",
		Labels:         map[string]string{"suite": "interop-go"},
	}
	for i, payload := range payloads {
		values, err := structpb.NewStruct(payload)
		if err != nil {
			return err
		}
		request.Records = append(request.Records, &ingestv1.Record{
			EntityId:   entities[i],
			ObservedAt: timestamppb.New(observed.Add(time.Duration(i) * time.Second)),
			Location:   &metadatav1.GeoPoint{Latitude: 48.2082 + float64(i)/1000, Longitude: 16.3738},
			Payload:    values,
		})
	}
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	batch, err := client.IngestRecords(callCtx, request)
	if err != nil {
		return fmt.Errorf("IngestRecords: %w", err)
	}
	if batch.GetAcceptedCount() != uint32(len(payloads)) || batch.GetRejectedCount() != 0 {
		return fmt.Errorf("IngestRecords accepted %d and rejected %d of %d records",
			batch.GetAcceptedCount(), batch.GetRejectedCount(), len(payloads))
	}
	c.Expected.Objects = append(c.Expected.Objects, expectedObject(batch.GetMetadata(), batch.GetObject(), batch.GetEventId()))
	for _, result := range batch.GetResults() {
		c.Expected.Records = append(c.Expected.Records, ExpectedRecord{
			ID:         result.GetId(),
			EventID:    result.GetEventId(),
			DataType:   request.GetDataType(),
			EntityID:   entities[result.GetIndex()],
			BatchID:    batch.GetMetadata().GetId(),
			BatchKey:   batch.GetObject().GetKey(),
			BatchIndex: result.GetIndex(),
			Payload:    payloads[result.GetIndex()],
		})
	}

	// An object: the header first, then the content in chunks.
	stream, err := client.IngestObject(callCtx)
	if err != nil {
		return fmt.Errorf("IngestObject: %w", err)
	}
	header := &ingestv1.ObjectHeader{
		Metadata: &metadatav1.Metadata{
			DataType:   "sensor.air_quality",
			Source:     c.Source,
			EntityId:   "go-station-7",
			ObservedAt: timestamppb.New(observed),
			Location:   &metadatav1.GeoPoint{Latitude: 48.2082, Longitude: 16.3738},
			Labels:     map[string]string{"suite": "interop-go"},
		},
		DeclaredMediaType: "text/csv",
	}
	parts := [][]byte{[]byte("entity_id,pm25,pm10\n"), []byte("go-station-7,12.5,20.1\n"), []byte("go-station-8,8.0,14.9\n")}
	if err := stream.Send(&ingestv1.IngestObjectRequest{Part: &ingestv1.IngestObjectRequest_Header{Header: header}}); err != nil {
		return fmt.Errorf("IngestObject header: %w", err)
	}
	for _, part := range parts {
		if err := stream.Send(&ingestv1.IngestObjectRequest{Part: &ingestv1.IngestObjectRequest_Chunk{Chunk: part}}); err != nil {
			return fmt.Errorf("IngestObject chunk: %w", err)
		}
	}
	object, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("IngestObject: %w", err)
	}
	if object.GetMetadata().GetFormat() != metadatav1.Format_FORMAT_CSV {
		return fmt.Errorf("IngestObject stored format %v, want FORMAT_CSV", object.GetMetadata().GetFormat())
	}
	c.Expected.Objects = append(c.Expected.Objects, expectedObject(object.GetMetadata(), object.GetObject(), object.GetEventId()))
	return nil
}

func expectedObject(m *metadatav1.Metadata, ref *metadatav1.ObjectRef, eventID string) ExpectedObject {
	return ExpectedObject{
		ID:        m.GetId(),
		EventID:   eventID,
		DataType:  m.GetDataType(),
		Format:    m.GetFormat().String(),
		MediaType: m.GetMediaType(),
		Bucket:    ref.GetBucket(),
		Key:       ref.GetKey(),
		SHA256:    ref.GetSha256(),
		SizeBytes: ref.GetSizeBytes(),
	}
}

// consume reads from the given offsets until `want` records of `source`
// arrived or `wait` passed. Records of other sources are skipped.
func consume(ctx context.Context, kafka *kgo.Client, start map[string]map[int32]kgo.Offset, source string, want int, wait time.Duration) ([]KafkaRecord, error) {
	kafka.AddConsumePartitions(start)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var found []KafkaRecord
	for len(found) < want {
		fetches := kafka.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		for _, fe := range fetches.Errors() {
			return found, fmt.Errorf("kafka fetch %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			rec := KafkaRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: r.Value}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, [2]string{h.Key, string(h.Value)})
			}
			if s, _ := rec.Header("ce_source"); s == "/pantheon/"+source {
				found = append(found, rec)
			}
		})
	}
	return found, nil
}
