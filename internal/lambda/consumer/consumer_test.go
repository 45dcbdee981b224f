package consumer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/lambda/consumer"
	"github.com/les-streams/les/internal/logmetric"
	"github.com/les-streams/les/internal/logmetric/pattern"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/file"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// 2023-11-14T22:13:20Z
const t0 = int64(1_700_000_000) * 1e9

const partitions = 4

// record is one wire record as the agent publishes it: the parts of
// wire.Split, each finished with the agent's producer and a sequence
// number, and the partition key internal/stream/kinesis puts on it.
type record struct {
	key  string
	data []byte
	id   string
}

func agentRecords(t *testing.T, b *model.Batch, producer uint64, seq *uint64, c wire.Compression) []record {
	t.Helper()
	var out []record
	for _, p := range wire.Split(b, stream.OriginIngest, stream.OriginAgg, 1<<20, partitions) {
		*seq++
		data, err := p.Enc.Finish(nil, producer, *seq, c)
		if err != nil {
			t.Fatal(err)
		}
		h := wire.Header{Producer: producer, Seq: *seq}
		out = append(out, record{key: kinesis.PartitionKey(p.Origin, p.Enc.Signal(), p.Partition), data: data, id: h.ID()})
	}
	return out
}

// kinesisEvent puts recs on shard 0 with sequence numbers 4959…0001, …0002, …
func kinesisEvent(recs ...record) events.KinesisEvent {
	var ev events.KinesisEvent
	for i, r := range recs {
		seq := seqNo(i)
		ev.Records = append(ev.Records, events.KinesisEventRecord{
			EventSource: "aws:kinesis", EventName: "aws:kinesis:record", EventVersion: "1.0",
			EventID:        "shardId-000000000000:" + seq,
			EventSourceArn: "arn:aws:kinesis:eu-west-1:123456789012:stream/les",
			AwsRegion:      "eu-west-1",
			Kinesis: events.KinesisRecord{KinesisSchemaVersion: "1.0", PartitionKey: r.key,
				SequenceNumber: seq, Data: r.data},
		})
	}
	return ev
}

func seqNo(i int) string {
	return "4959033827149025660855969253836157109592157598913658" + strconv.Itoa(1000+i)
}

// metricsBatch is two points of one series (one record: one partition).
func metricsBatch() *model.Batch {
	var b model.Batch
	mark := b.TagMark()
	b.AddTag("env", "prod")
	tags := b.TagsSince(mark)
	b.Metrics = append(b.Metrics,
		model.Metric{Name: "orders.latency", Value: 3, Timestamp: t0, Source: "fn-a", Tags: tags, Kind: model.Gauge},
		model.Metric{Name: "orders.latency", Value: 12.5, Timestamp: t0 + 1e6, Source: "fn-a", Tags: tags, Kind: model.Gauge},
	)
	return &b
}

func logsBatch(msgs ...string) *model.Batch {
	var b model.Batch
	for i, m := range msgs {
		b.Logs = append(b.Logs, model.Log{Timestamp: t0 + int64(i)*1e9, Source: "checkout", RequestID: "8f50", Level: "INFO", Message: []byte(m)})
	}
	return &b
}

func newFileSink(t *testing.T) (*file.Sink, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s, err := file.New(file.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func newHandler(t *testing.T, cfg consumer.Config, deps consumer.Deps) *consumer.Handler {
	t.Helper()
	h, err := consumer.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func noFailures(t *testing.T, resp events.KinesisEventResponse) {
	t.Helper()
	if len(resp.BatchItemFailures) != 0 {
		t.Fatalf("batchItemFailures = %+v, want none", resp.BatchItemFailures)
	}
}

func failedAt(t *testing.T, resp events.KinesisEventResponse, seq string) {
	t.Helper()
	want := []events.KinesisBatchItemFailure{{ItemIdentifier: seq}}
	if d := cmp.Diff(want, resp.BatchItemFailures); d != "" {
		t.Fatalf("batchItemFailures (-want +got):\n%s", d)
	}
}

func TestDeliversAgentRecordsToFileSink(t *testing.T) {
	for _, c := range []wire.Compression{wire.CompressionNone, wire.CompressionGzip, wire.CompressionZstd} {
		t.Run(c.String(), func(t *testing.T) {
			fs, path := newFileSink(t)
			reg := selfmetric.New()
			h := newHandler(t, consumer.Config{Sinks: []consumer.Sink{{Name: "archive", Sink: fs}}, Rollup: consumer.RollupNone},
				consumer.Deps{Metrics: reg})
			var seq uint64
			recs := agentRecords(t, metricsBatch(), 0xfeedface, &seq, c)
			recs = append(recs, agentRecords(t, logsBatch("order 42 processed"), 0xfeedface, &seq, c)...)
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2 (the series and the source on one partition each)", len(recs))
			}
			resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
			if err != nil {
				t.Fatal(err)
			}
			noFailures(t, resp)
			want := []string{
				`{"type":"metric","record":"feedface-1","item":0,"items":2,"name":"orders.latency","value":3,"kind":"gauge","timestamp":"2023-11-14T22:13:20Z","source":"fn-a","tags":{"env":"prod"}}`,
				`{"type":"metric","record":"feedface-1","item":1,"items":2,"name":"orders.latency","value":12.5,"kind":"gauge","timestamp":"2023-11-14T22:13:20.001Z","source":"fn-a","tags":{"env":"prod"}}`,
				`{"type":"log","record":"feedface-2","item":0,"items":1,"timestamp":"2023-11-14T22:13:20Z","source":"checkout","request_id":"8f50","level":"INFO","message":"order 42 processed","attrs":{}}`,
			}
			if d := cmp.Diff(want, readLines(t, path)); d != "" {
				t.Fatalf("file sink (-want +got):\n%s", d)
			}
			if got := reg.Counter("les_sink_delivered_items_total", "sink", "archive").Get(); got != 3 {
				t.Errorf("delivered items = %d, want 3", got)
			}
			// The mapping delivers the batch again (a retry after a timeout):
			// the file sink skips records it has written.
			resp, err = h.HandleKinesis(context.Background(), kinesisEvent(recs...))
			if err != nil {
				t.Fatal(err)
			}
			noFailures(t, resp)
			if got := len(readLines(t, path)); got != 3 {
				t.Fatalf("%d lines after a re-delivery, want 3", got)
			}
		})
	}
}

// failSink fails every Send of the records in fail, permanently or not.
type failSink struct {
	mu        sync.Mutex
	fail      map[string]bool
	permanent bool
	got       []string // record ids delivered
	attempts  int
}

func (s *failSink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.fail[m.RecordID] {
		err := errors.New("backend says no")
		if s.permanent {
			return sink.Permanent(err)
		}
		return err
	}
	s.got = append(s.got, m.RecordID)
	return nil
}

func (s *failSink) Close() error { return nil }

func TestSinkFailureReportsFirstFailedSequenceNumber(t *testing.T) {
	var seq uint64
	var recs []record
	for range 4 {
		recs = append(recs, agentRecords(t, metricsBatch(), 0xabc, &seq, wire.CompressionNone)...)
	}
	fs, path := newFileSink(t)
	bad := &failSink{fail: map[string]bool{"abc-3": true}, permanent: true}
	reg := selfmetric.New()
	var logBuf bytes.Buffer
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Sinks: []consumer.Sink{
		{Name: "archive", Sink: fs},
		{Name: "backend", Sink: bad},
	}}, consumer.Deps{Metrics: reg, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	// Records 0 and 1 (abc-1, abc-2) are done; abc-3 is the third record.
	failedAt(t, resp, seqNo(2))
	if d := cmp.Diff([]string{"abc-1", "abc-2"}, bad.got); d != "" {
		t.Errorf("backend got (-want +got):\n%s", d)
	}
	// The file sink comes first, so it has abc-3 too (the retry re-sends
	// it and the sink skips it); it never saw abc-4.
	var ids []string
	for _, l := range readLines(t, path) {
		var v struct{ Record string }
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 || ids[len(ids)-1] != v.Record {
			ids = append(ids, v.Record)
		}
	}
	if d := cmp.Diff([]string{"abc-1", "abc-2", "abc-3"}, ids); d != "" {
		t.Errorf("file sink records (-want +got):\n%s", d)
	}
	if got := reg.Counter("les_lambda_consumer_failed_records_total", "reason", "sink").Get(); got != 1 {
		t.Errorf("failed{reason=sink} = %d, want 1", got)
	}
	if !strings.Contains(logBuf.String(), "failed_pos="+seqNo(2)) || !strings.Contains(logBuf.String(), "backend says no") {
		t.Errorf("log does not name the failed record and its cause:\n%s", logBuf.String())
	}
}

func TestRetryableFailureStopsAfterMaxAttempts(t *testing.T) {
	var seq uint64
	recs := agentRecords(t, metricsBatch(), 0xabc, &seq, wire.CompressionNone)
	recs = append(recs, agentRecords(t, metricsBatch(), 0xabc, &seq, wire.CompressionNone)...)
	bad := &failSink{fail: map[string]bool{"abc-1": true}}
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Sinks: []consumer.Sink{
		{Name: "backend", Sink: bad, Retry: sink.RetryConfig{MaxAttempts: 3, InitialBackoff: time.Millisecond}},
	}}, consumer.Deps{})
	resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	failedAt(t, resp, seqNo(0))
	if bad.attempts != 3 || len(bad.got) != 0 {
		t.Errorf("attempts = %d, delivered = %v; want 3 attempts, nothing delivered", bad.attempts, bad.got)
	}
}

func TestRecordsThatAreNotLesRecordsAreSkippedAndCounted(t *testing.T) {
	var seq uint64
	good := agentRecords(t, metricsBatch(), 0x1, &seq, wire.CompressionZstd)[0]
	key := good.key
	truncated := append([]byte(nil), good.data[:len(good.data)-3]...)
	// header still says the old body length: corrupt
	badCRCish := append([]byte(nil), good.data...)
	badCRCish[len(badCRCish)-1] ^= 0xff // a damaged zstd frame
	gzipGarbage := append([]byte(nil), good.data...)
	gzipGarbage[7] = byte(wire.CompressionGzip) // claims gzip, holds zstd
	unknownComp := append([]byte(nil), good.data...)
	unknownComp[7] = 9
	recs := []record{
		{key: key, data: []byte(`{"message":"a JSON document some other producer wrote","n":1}`)}, // 0 bad magic (JSON written by someone else)
		{key: "user-key-17", data: good.data},                                                     // 1 foreign partition key
		{key: key, data: []byte("LESR")},                                                          // 2 short
		{key: key, data: truncated},                                                               // 3 corrupt: body length
		{key: key, data: badCRCish},                                                               // 4 corrupt: zstd checksum
		{key: key, data: gzipGarbage},                                                             // 5 corrupt: not gzip
		{key: key, data: unknownComp},                                                             // 6 unknown compression
		{key: kinesis.PartitionKey("in", wire.SignalLogs, 0), data: good.data},                    // 7 key says logs, header metrics
		good, // 8 delivered
	}
	fs, path := newFileSink(t)
	reg := selfmetric.New()
	var logBuf bytes.Buffer
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Sinks: []consumer.Sink{{Name: "archive", Sink: fs}}},
		consumer.Deps{Metrics: reg, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, resp)
	if got := len(readLines(t, path)); got != 2 {
		t.Fatalf("%d lines, want the 2 items of the good record", got)
	}
	want := map[string]uint64{"bad_magic": 1, "foreign_partition_key": 1, "short": 1, "corrupt": 3,
		"unknown_compression": 1, "signal_mismatch": 1}
	for reason, n := range want {
		if got := reg.Counter("les_lambda_consumer_rejected_records_total", "reason", reason).Get(); got != n {
			t.Errorf("rejected{reason=%s} = %d, want %d", reason, got, n)
		}
	}
	if got := reg.Counter("les_lambda_consumer_records_total").Get(); got != 9 {
		t.Errorf("records = %d, want 9", got)
	}
	logs := logBuf.String()
	for _, s := range []string{"reason=bad_magic", "reason=foreign_partition_key", "pos=" + seqNo(0), "partition=shardId-000000000000",
		"rejected_corrupt=3", "wire: not a les record (bad magic)"} {
		if !strings.Contains(logs, s) {
			t.Errorf("log lacks %q:\n%s", s, logs)
		}
	}
}

func TestUnknownWireVersionBlocksInsteadOfSkipping(t *testing.T) {
	var seq uint64
	recs := agentRecords(t, metricsBatch(), 0x1, &seq, wire.CompressionNone)
	recs = append(recs, agentRecords(t, metricsBatch(), 0x1, &seq, wire.CompressionNone)...)
	recs = append(recs, agentRecords(t, metricsBatch(), 0x1, &seq, wire.CompressionNone)...)
	v2 := append([]byte(nil), recs[1].data...)
	v2[4] = 0xee // a much newer agent
	recs[1].data = v2
	fs, path := newFileSink(t)
	reg := selfmetric.New()
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Sinks: []consumer.Sink{{Name: "archive", Sink: fs}}},
		consumer.Deps{Metrics: reg})
	resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	failedAt(t, resp, seqNo(1))
	if got := len(readLines(t, path)); got != 2 {
		t.Fatalf("%d lines, want only the first record's 2", got)
	}
	if got := reg.Counter("les_lambda_consumer_failed_records_total", "reason", "unsupported_version").Get(); got != 1 {
		t.Errorf("failed{reason=unsupported_version} = %d, want 1", got)
	}
}

// blockSink fails retryably until its context ends.
type blockSink struct{ sends int }

func (s *blockSink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	s.sends++
	<-ctx.Done()
	return ctx.Err()
}
func (s *blockSink) Close() error { return nil }

// flakySink fails retryably every time without blocking.
type flakySink struct{ sends int }

func (s *flakySink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	s.sends++
	return errors.New("503 service unavailable")
}
func (s *flakySink) Close() error { return nil }

func TestDeadlineIsRespected(t *testing.T) {
	for _, tc := range []struct {
		name string
		sk   sink.Sink
	}{
		{"blocked send", &blockSink{}},
		{"retrying", &flakySink{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var seq uint64
				recs := agentRecords(t, metricsBatch(), 0x1, &seq, wire.CompressionNone)
				recs = append(recs, agentRecords(t, logsBatch("x"), 0x1, &seq, wire.CompressionNone)...)
				// Metrics go to a sink that works; logs to one that never does.
				good := &failSink{}
				h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Reserve: 300 * time.Millisecond, Sinks: []consumer.Sink{
					{Name: "good", Sink: good, Signals: []wire.Signal{wire.SignalMetrics}},
					{Name: "bad", Sink: tc.sk, Signals: []wire.Signal{wire.SignalLogs}, Retry: sink.RetryConfig{Timeout: 10 * time.Second}},
				}}, consumer.Deps{})
				start := time.Now()
				ctx, cancel := context.WithDeadline(context.Background(), start.Add(3*time.Second))
				defer cancel()
				resp, err := h.HandleKinesis(ctx, kinesisEvent(recs...))
				if err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took != 2700*time.Millisecond {
					t.Errorf("answered after %v, want 2.7s (deadline 3s − reserve 300ms)", took)
				}
				failedAt(t, resp, seqNo(1))
				if d := cmp.Diff([]string{"1-1"}, good.got); d != "" {
					t.Errorf("good sink (-want +got):\n%s", d)
				}
			})
		})
	}
}

func TestDeadlineInsideReserveDeliversNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seq uint64
		recs := agentRecords(t, metricsBatch(), 0x1, &seq, wire.CompressionNone)
		good := &failSink{}
		h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Sinks: []consumer.Sink{{Name: "good", Sink: good}}}, consumer.Deps{})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		resp, _ := h.HandleKinesis(ctx, kinesisEvent(recs...))
		failedAt(t, resp, seqNo(0))
		if len(good.got) != 0 {
			t.Errorf("delivered %v inside the reserve", good.got)
		}
	})
}

func reportLine(id string, dur float64) string {
	return "REPORT RequestId: " + id + "\tDuration: " + strconv.FormatFloat(dur, 'f', -1, 64) +
		" ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t"
}

func newLogmetric(t *testing.T, reg *selfmetric.Registry) *logmetric.Processor {
	t.Helper()
	mf, err := pattern.NewMetricFilter(`[level = "ERROR", ...]`, pattern.Transformation{MetricName: "app.errors_seen", MetricNamespace: "app", MetricValue: "7"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := logmetric.New(logmetric.Config{Lambda: true, Filters: []logmetric.Filter{{Name: "errors", Metric: mf, Kind: model.Gauge}}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type publisher struct {
	mu   sync.Mutex
	recs []stream.Record
	err  error
}

func (p *publisher) Publish(ctx context.Context, recs ...stream.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	for _, r := range recs {
		r.Data = append([]byte(nil), r.Data...)
		p.recs = append(p.recs, r)
	}
	return nil
}

// names lists "name=value kind" of metric lines or records.
func metricLines(t *testing.T, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var v struct {
			Type, Name, Kind, Source string
			Value                    float64
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		if v.Type == "metric" {
			out = append(out, v.Name+"="+strconv.FormatFloat(v.Value, 'g', -1, 64)+" "+v.Kind+" "+v.Source)
		}
	}
	return out
}

func TestLogmetricWithoutRollupDeliversDerivedPointsToSinks(t *testing.T) {
	fs, path := newFileSink(t)
	reg := selfmetric.New()
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Logmetric: newLogmetric(t, reg),
		Sinks: []consumer.Sink{{Name: "archive", Sink: fs}}}, consumer.Deps{Metrics: reg})
	var seq uint64
	recs := agentRecords(t, logsBatch(reportLine("8f50", 12.5), "ERROR boom"), 0x42, &seq, wire.CompressionZstd)
	resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, resp)
	lines := readLines(t, path)
	want := []string{
		"aws.lambda.invocations=1 counter checkout",
		"aws.lambda.errors=0 counter checkout",
		"aws.lambda.timeouts=0 counter checkout",
		"aws.lambda.duration=12.5 sample checkout",
		"aws.lambda.billed_duration=13 sample checkout",
		"aws.lambda.memory_size=128 gauge checkout",
		"aws.lambda.max_memory_used=70 sample checkout",
		"app.errors_seen=7 gauge checkout",
	}
	if d := cmp.Diff(want, metricLines(t, lines)); d != "" {
		t.Errorf("derived points (-want +got):\n%s\nlines:\n%s", d, strings.Join(lines, "\n"))
	}
	// The two logs plus the derived points, as two records.
	if n := len(lines); n != 2+len(want) {
		t.Errorf("%d lines, want %d", n, 2+len(want))
	}
	// A retried batch derives the same points under the same record id.
	if _, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...)); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, path)); n != len(lines) {
		t.Errorf("%d lines after a retry, want %d", n, len(lines))
	}
}

func TestLogmetricWithRollupPublishesRollupInput(t *testing.T) {
	fs, path := newFileSink(t)
	reg := selfmetric.New()
	pub := &publisher{}
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupStream, Partitions: partitions, Logmetric: newLogmetric(t, reg),
		Sinks: []consumer.Sink{{Name: "archive", Sink: fs}}}, consumer.Deps{Metrics: reg, Publish: pub.Publish})
	var seq uint64
	recs := agentRecords(t, logsBatch(reportLine("8f50", 12.5), "ERROR boom"), 0x42, &seq, wire.CompressionNone)
	// agg records on the stream (the agent's StatsD samples) are left to
	// the rollup: put one in the event.
	var sb model.Batch
	sb.Metrics = append(sb.Metrics, model.Metric{Name: "checkout.latency", Value: 5, Timestamp: t0, Source: "checkout", Kind: model.Sample})
	aggRecs := agentRecords(t, &sb, 0x42, &seq, wire.CompressionNone)
	if !strings.HasPrefix(aggRecs[0].key, "agg.metrics.") {
		t.Fatalf("sample record key %q, want agg.metrics.*", aggRecs[0].key)
	}
	recs = append(recs, aggRecs...)
	resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	noFailures(t, resp)
	// Sinks: the logs and the gauges (delivered as they are, as les consume's sinks get them).
	if d := cmp.Diff([]string{"aws.lambda.memory_size=128 gauge checkout", "app.errors_seen=7 gauge checkout"},
		metricLines(t, readLines(t, path))); d != "" {
		t.Errorf("sink metrics (-want +got):\n%s", d)
	}
	// The stream: counters and samples under origin agg, on the partition of their series.
	var got []string
	ids := map[string]bool{}
	for _, r := range pub.recs {
		if r.Origin != stream.OriginAgg || r.Signal != wire.SignalMetrics {
			t.Errorf("published %s %v, want agg metrics", r.Origin, r.Signal)
		}
		var b model.Batch
		var dec wire.Decoder
		hdr, err := dec.Decode(&b, r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.ID() != r.ID || ids[r.ID] {
			t.Errorf("record id %q: header says %q (or repeated)", r.ID, hdr.ID())
		}
		ids[r.ID] = true
		for i := range b.Metrics {
			m := &b.Metrics[i]
			if p := wire.MetricPartition(m, partitions); p != r.Partition {
				t.Errorf("%s on partition %d, its series is on %d", m.Name, r.Partition, p)
			}
			got = append(got, m.Name+"="+strconv.FormatFloat(m.Value, 'g', -1, 64))
		}
	}
	want := []string{"aws.lambda.invocations=1", "aws.lambda.errors=0", "aws.lambda.timeouts=0",
		"aws.lambda.duration=12.5", "aws.lambda.billed_duration=13", "aws.lambda.max_memory_used=70"}
	if d := cmp.Diff(want, got, cmpSorted); d != "" {
		t.Errorf("published (-want +got):\n%s", d)
	}
	if n := reg.Counter("les_lambda_consumer_skipped_records_total", "reason", "rollup_input").Get(); n != 1 {
		t.Errorf("skipped{reason=rollup_input} = %d, want 1", n)
	}
	// A retry publishes the same ids, which the rollup folds in once.
	first := pub.recs
	pub.recs = nil
	if _, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...)); err != nil {
		t.Fatal(err)
	}
	if len(pub.recs) != len(first) {
		t.Fatalf("retry published %d records, first run %d", len(pub.recs), len(first))
	}
	for i := range first {
		if first[i].ID != pub.recs[i].ID || !bytes.Equal(first[i].Data, pub.recs[i].Data) {
			t.Errorf("retry record %d: id %s, first %s (or other bytes)", i, pub.recs[i].ID, first[i].ID)
		}
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestPublishFailureFailsTheRecord(t *testing.T) {
	fs, path := newFileSink(t)
	reg := selfmetric.New()
	pub := &publisher{err: errors.New("kinesis: throttled")}
	h := newHandler(t, consumer.Config{Partitions: partitions, Logmetric: newLogmetric(t, reg),
		Sinks: []consumer.Sink{{Name: "archive", Sink: fs}}}, consumer.Deps{Metrics: reg, Publish: pub.Publish})
	var seq uint64
	recs := agentRecords(t, metricsBatch(), 0x42, &seq, wire.CompressionNone)
	recs = append(recs, agentRecords(t, logsBatch(reportLine("8f50", 1)), 0x42, &seq, wire.CompressionNone)...)
	resp, err := h.HandleKinesis(context.Background(), kinesisEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	failedAt(t, resp, seqNo(1))
	if n := len(readLines(t, path)); n != 2 {
		t.Errorf("%d lines, want the 2 metrics of the first record", n)
	}
	if n := reg.Counter("les_lambda_consumer_failed_records_total", "reason", "publish").Get(); n != 1 {
		t.Errorf("failed{reason=publish} = %d, want 1", n)
	}
}

func TestNewRefusesLogmetricRollupWithoutStream(t *testing.T) {
	_, err := consumer.New(consumer.Config{Logmetric: newLogmetric(t, selfmetric.New())}, consumer.Deps{})
	if err == nil || !strings.Contains(err.Error(), "rollup.disabled") {
		t.Fatalf("err = %v, want one naming rollup.disabled", err)
	}
}

func TestInvokeKinesisJSON(t *testing.T) {
	fs, path := newFileSink(t)
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Sinks: []consumer.Sink{{Name: "archive", Sink: fs}}}, consumer.Deps{})
	var seq uint64
	recs := agentRecords(t, metricsBatch(), 0xfeedface, &seq, wire.CompressionGzip)
	payload := `{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"` + recs[0].key + `",` +
		`"sequenceNumber":"49590338271490256608559692538361571095921575989136588898",` +
		`"data":"` + base64.StdEncoding.EncodeToString(recs[0].data) + `","approximateArrivalTimestamp":1545084650.987},` +
		`"eventSource":"aws:kinesis","eventVersion":"1.0",` +
		`"eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898",` +
		`"eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role",` +
		`"awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"},` +
		`{"kinesis":{"partitionKey":"in.metrics.0","sequenceNumber":"49590338271490256608559692538361571095921575989136588899","data":"bm90IGxlcw=="},` +
		`"eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588899"}]}`
	out, err := h.Invoke(context.Background(), []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"batchItemFailures":[]}` {
		t.Errorf("response %s", out)
	}
	if n := len(readLines(t, path)); n != 2 {
		t.Errorf("%d lines, want 2", n)
	}
}

func TestKafkaEvent(t *testing.T) {
	fs, path := newFileSink(t)
	bad := &failSink{fail: map[string]bool{}, permanent: true}
	h := newHandler(t, consumer.Config{Rollup: consumer.RollupNone, Sinks: []consumer.Sink{{Name: "archive", Sink: fs}, {Name: "b", Sink: bad}}}, consumer.Deps{})
	var seq uint64
	m := agentRecords(t, metricsBatch(), 0x7, &seq, wire.CompressionNone)[0]
	l := agentRecords(t, logsBatch("hello"), 0x7, &seq, wire.CompressionNone)[0]
	kr := func(topic string, off int64, data []byte) events.KafkaRecord {
		return events.KafkaRecord{Topic: topic, Partition: 0, Offset: off, Key: base64.StdEncoding.EncodeToString([]byte("0")),
			Value: base64.StdEncoding.EncodeToString(data)}
	}
	ev := events.KafkaEvent{EventSource: "aws:kafka", Records: map[string][]events.KafkaRecord{
		"les.in.metrics-0": {kr("les.in.metrics", 10, m.data)},
		"les.in.logs-0":    {kr("les.in.logs", 3, l.data)},
		"other-0":          {kr("other", 1, []byte("x"))},
	}}
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Invoke(context.Background(), payload)
	if err != nil || string(out) != "null" {
		t.Fatalf("Invoke = %s, %v", out, err)
	}
	if d := cmp.Diff([]string{"7-2", "7-1"}, bad.got); d != "" { // topic-partition keys in sorted order
		t.Errorf("delivered (-want +got):\n%s", d)
	}
	if n := len(readLines(t, path)); n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
	bad.fail["7-1"] = true
	_, err = h.Invoke(context.Background(), payload)
	if err == nil || !strings.Contains(err.Error(), "les.in.metrics/0@10") {
		t.Fatalf("err = %v, want one naming les.in.metrics/0@10", err)
	}
}
