//go:build linux

package lambda_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/wire"
)

// 2023-11-14T22:13:20Z
const consumerT0 = int64(1_700_000_000) * 1e9

// consumerRecords encodes b as the agent does (wire.Split over 4
// partitions, zstd) and returns Kinesis event records with the partition
// keys internal/stream/kinesis writes, sequence numbers from first on.
func consumerRecords(t *testing.T, b *model.Batch, producer uint64, seq *uint64, first int) []events.KinesisEventRecord {
	t.Helper()
	var out []events.KinesisEventRecord
	for _, p := range wire.Split(b, stream.OriginIngest, stream.OriginAgg, 1<<20, 4) {
		*seq++
		data, err := p.Enc.Finish(nil, producer, *seq, wire.CompressionZstd)
		if err != nil {
			t.Fatal(err)
		}
		sn := consumerSeq(first + len(out))
		out = append(out, events.KinesisEventRecord{
			EventSource: "aws:kinesis", EventName: "aws:kinesis:record", EventVersion: "1.0",
			EventID:        "shardId-000000000003:" + sn,
			EventSourceArn: "arn:aws:kinesis:eu-west-1:123456789012:stream/les",
			AwsRegion:      "eu-west-1",
			Kinesis: events.KinesisRecord{KinesisSchemaVersion: "1.0", SequenceNumber: sn, Data: data,
				PartitionKey: kinesis.PartitionKey(p.Origin, p.Enc.Signal(), p.Partition)},
		})
	}
	return out
}

func consumerSeq(i int) string {
	return "49590338271490256608559692538361571095921575989136" + strconv.Itoa(580000+i)
}

func writeConsumerConfig(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "les.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConsumerUnderRIE runs the bootstrap of dist/les-consumer-<arch>.zip
// under the real RIE and invokes it with Kinesis events carrying real les
// records: what arrives in the file sink is checked line by line, and a
// batch with a record of an unknown wire version is answered with that
// record's sequence number.
func TestConsumerUnderRIE(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the RIE is gone
	bootstrap := consumerZipBootstrap(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.ndjson")
	cfg := writeConsumerConfig(t, dir, `
stream:
  kind: kinesis
  partitions: 4
  kinesis: { stream: les }
rollup: { disabled: true }    # no les consume: derived counters and samples go to the sinks as they are
logmetric:
  filters:
    - { name: errors, pattern: '[level = "ERROR", ...]', metric_name: app.errors, metric_namespace: app, metric_value: "1" }
sinks:
  - name: archive
    type: file
    file: { path: `+out+` }
`)
	p := startConsumerRIE(t, bootstrap, "LES_CONFIG="+cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var seq uint64
	var mb model.Batch
	mb.Metrics = append(mb.Metrics,
		model.Metric{Name: "orders.total", Value: 42.5, Timestamp: consumerT0, Source: "fn-a", Kind: model.Gauge},
		model.Metric{Name: "orders.total", Value: 43, Timestamp: consumerT0 + 1e9, Source: "fn-a", Kind: model.Gauge})
	var lb model.Batch
	lb.Logs = append(lb.Logs,
		model.Log{Timestamp: consumerT0, Source: "checkout", RequestID: "r1", Message: []byte("REPORT RequestId: r1\tDuration: 12.5 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t")},
		model.Log{Timestamp: consumerT0 + 2e9, Source: "checkout", RequestID: "r1", Level: "ERROR", Message: []byte("ERROR card declined")})
	var ev events.KinesisEvent
	ev.Records = append(ev.Records, consumerRecords(t, &mb, 0xfeedface, &seq, 0)...)
	ev.Records = append(ev.Records, consumerRecords(t, &lb, 0xfeedface, &seq, 1)...)
	// Not a les record: skipped, counted, logged.
	junk := ev.Records[0]
	junk.Kinesis.Data = []byte("a CloudWatch Logs line somebody put on the wrong stream")
	junk.Kinesis.SequenceNumber = consumerSeq(2)
	junk.EventID = "shardId-000000000003:" + consumerSeq(2)
	ev.Records = append(ev.Records, junk)
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	resp := p.invoke(ctx, t, payload)
	if string(resp) != `{"batchItemFailures":[]}` {
		t.Fatalf("response %s", resp)
	}
	want := []string{
		`{"type":"metric","record":"feedface-1","item":0,"items":2,"name":"orders.total","value":42.5,"kind":"gauge","timestamp":"2023-11-14T22:13:20Z","source":"fn-a","tags":{}}`,
		`{"type":"metric","record":"feedface-1","item":1,"items":2,"name":"orders.total","value":43,"kind":"gauge","timestamp":"2023-11-14T22:13:21Z","source":"fn-a","tags":{}}`,
		`{"type":"log","record":"feedface-2","item":0,"items":2,"timestamp":"2023-11-14T22:13:20Z","source":"checkout","request_id":"r1","level":"","message":"REPORT RequestId: r1\tDuration: 12.5 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t","attrs":{}}`,
		`{"type":"log","record":"feedface-2","item":1,"items":2,"timestamp":"2023-11-14T22:13:22Z","source":"checkout","request_id":"r1","level":"ERROR","message":"ERROR card declined","attrs":{}}`,
		// Derived from the two logs, delivered under one derived record id.
		`metric aws.lambda.invocations 1 counter checkout 2023-11-14T22:13:20Z`,
		`metric aws.lambda.errors 0 counter checkout 2023-11-14T22:13:20Z`,
		`metric aws.lambda.timeouts 0 counter checkout 2023-11-14T22:13:20Z`,
		`metric aws.lambda.duration 12.5 sample checkout 2023-11-14T22:13:20Z`,
		`metric aws.lambda.billed_duration 13 sample checkout 2023-11-14T22:13:20Z`,
		`metric aws.lambda.memory_size 128 gauge checkout 2023-11-14T22:13:20Z`,
		`metric aws.lambda.max_memory_used 70 sample checkout 2023-11-14T22:13:20Z`,
		`metric app.errors 1 counter checkout 2023-11-14T22:13:22Z`,
	}
	got := consumerFileLines(t, out)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("file sink (-want +got):\n%s", d)
	}
	if logs := p.logs.String(); !strings.Contains(logs, "reason=bad_magic") || !strings.Contains(logs, "pos="+consumerSeq(2)) {
		t.Errorf("the RIE's log does not name the skipped record and why:\n%s", logs)
	}

	// The mapping retries the same batch (say the response was lost):
	// nothing is written twice.
	if resp := p.invoke(ctx, t, payload); string(resp) != `{"batchItemFailures":[]}` {
		t.Fatalf("retry response %s", resp)
	}
	if n := len(consumerFileLines(t, out)); n != len(want) {
		t.Fatalf("%d lines after the retry, want %d", n, len(want))
	}

	// A record of a wire version this build does not know stops the batch
	// at its sequence number; the one after it is not delivered.
	var mb2 model.Batch
	mb2.Metrics = append(mb2.Metrics, model.Metric{Name: "orders.total", Value: 44, Timestamp: consumerT0 + 3e9, Source: "fn-a", Kind: model.Gauge})
	var ev2 events.KinesisEvent
	ev2.Records = append(ev2.Records, consumerRecords(t, &mb2, 0xfeedface, &seq, 10)...)
	ev2.Records = append(ev2.Records, consumerRecords(t, &mb2, 0xfeedface, &seq, 11)...)
	ev2.Records = append(ev2.Records, consumerRecords(t, &mb2, 0xfeedface, &seq, 12)...)
	newer := append([]byte(nil), ev2.Records[1].Kinesis.Data...)
	newer[4] = 0xee
	ev2.Records[1].Kinesis.Data = newer
	payload2, err := json.Marshal(ev2)
	if err != nil {
		t.Fatal(err)
	}
	resp = p.invoke(ctx, t, payload2)
	if w := `{"batchItemFailures":[{"itemIdentifier":"` + consumerSeq(11) + `"}]}`; string(resp) != w {
		t.Fatalf("response %s, want %s", resp, w)
	}
	got = consumerFileLines(t, out)
	if len(got) != len(want)+1 || !strings.Contains(got[len(got)-1], `"record":"feedface-3"`) {
		t.Fatalf("after the batch with the newer record: %d lines, last %q; want %d, the last feedface-3", len(got), got[len(got)-1], len(want)+1)
	}
}

// consumerFileLines reads the file sink's output. Lines of agent records
// are returned as they are; lines of derived records (whose id is a hash)
// as "metric <name> <value> <kind> <source> <timestamp>".
func consumerFileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if strings.Contains(l, `"record":"feedface-`) {
			out = append(out, l)
			continue
		}
		var v struct {
			Type, Record, Name, Kind, Source, Timestamp string
			Value                                       float64
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, strings.Join([]string{v.Type, v.Name, strconv.FormatFloat(v.Value, 'g', -1, 64), v.Kind, v.Source, v.Timestamp}, " "))
	}
	return out
}

// TestConsumerMalformedConfigUnderRIE: a config error is reported through
// the Runtime API's init error, so the invocation answers with the
// located message.
func TestConsumerMalformedConfigUnderRIE(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the RIE is gone
	bootstrap := consumerZipBootstrap(t)
	dir := t.TempDir()
	cfg := writeConsumerConfig(t, dir, "sinks:\n  - name: archive\n    type: fiel\n")
	p := startConsumerRIE(t, bootstrap, "LES_CONFIG="+cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp := p.invoke(ctx, t, []byte(`{"Records":[]}`))
	var e struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(resp, &e); err != nil {
		t.Fatalf("%v: %s", err, resp)
	}
	if e.ErrorType != "Runtime.ConfigInvalid" || !strings.Contains(e.ErrorMessage, cfg+":3: sinks[0].type") {
		t.Fatalf("response %s, want Runtime.ConfigInvalid naming %s:3", resp, cfg)
	}
}
