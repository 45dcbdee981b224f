package kinesis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/format/cwlogs"
	"github.com/les-streams/les/internal/input/kinesis"
	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  kinesis.Config
		err  string
	}{
		{"defaults", kinesis.Config{Stream: "s"}, ""},
		{"latest", kinesis.Config{Stream: "s", StartAt: "LATEST", PollInterval: 200 * time.Millisecond}, ""},
		{"no stream", kinesis.Config{}, "stream is required"},
		{"start_at", kinesis.Config{Stream: "s", StartAt: "AT_TIMESTAMP"}, "start_at"},
		{"fast poll", kinesis.Config{Stream: "s", PollInterval: 100 * time.Millisecond}, "poll_interval"},
		{"format", kinesis.Config{Stream: "s", Format: "json"}, "format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.StartAt == "" || tt.cfg.PollInterval < kinesis.MinPollInterval || tt.cfg.Format != "cwlogs" {
					t.Errorf("defaults not filled: %+v", tt.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.err)
			}
		})
	}
}

// collector is a publish callback that keeps the event ids of the logs it
// was given, failing the first failN calls.
type collector struct {
	mu    sync.Mutex
	ids   map[string]int
	srcs  map[string]bool
	calls int
	failN int
}

func newCollector(failN int) *collector {
	return &collector{ids: map[string]int{}, srcs: map[string]bool{}, failN: failN}
}

func (c *collector) publish(_ context.Context, b *model.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls <= c.failN {
		return errors.New("stream unavailable")
	}
	for _, l := range b.Logs {
		id, _ := l.Attrs.Get(cwlogs.AttrEventID)
		c.ids[id]++
		c.srcs[l.Source] = true
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

// payloads returns n DATA_MESSAGE payloads of 3 events each (a START, a
// log line and a REPORT line of one invocation), with ids "<prefix>-<i>-<j>".
func payloads(prefix string, n int) ([][]byte, []string) {
	var out [][]byte
	var ids []string
	ts := time.Now().UnixMilli()
	for i := range n {
		req := fmt.Sprintf("%s-req-%d", prefix, i)
		msgs := []string{
			"START RequestId: " + req + " Version: $LATEST\n",
			time.UnixMilli(ts).UTC().Format(time.RFC3339Nano) + "\t" + req + "\tINFO\thandled order " + fmt.Sprint(i) + "\n",
			"REPORT RequestId: " + req + "\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\t\n",
		}
		var evs []kinesistest.Event
		for j, m := range msgs {
			id := fmt.Sprintf("%s-%d-%d", prefix, i, j)
			ids = append(ids, id)
			evs = append(evs, kinesistest.Event{ID: id, Timestamp: ts + int64(j), Message: m})
		}
		out = append(out, kinesistest.DataMessage("/aws/lambda/orders", "2024/01/01/[$LATEST]abc", evs...))
	}
	return out, ids
}

func truncatedGzip() []byte {
	p := kinesistest.DataMessage("/aws/lambda/orders", "s", kinesistest.Event{ID: "bad", Timestamp: 1, Message: "x"})
	return p[:len(p)/2]
}

func awsEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "x")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", kinesistest.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// run runs a poller until cond holds (or 60s pass), then for one more poll
// interval, and returns the registry's exposition.
func run(t *testing.T, cfg kinesis.Config, ckpt string, c *collector, cond func() bool) string {
	t.Helper()
	reg := selfmetric.New()
	p, err := kinesis.New(cfg, kinesis.Deps{
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:        reg,
		Publish:        c.publish,
		CheckpointPath: ckpt,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(2 * cfg.PollInterval) // anything delivered twice would show now
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	var b bytes.Buffer
	reg.WritePrometheus(&b)
	return b.String()
}

func TestPollerKinesalite(t *testing.T) {
	endpoint := kinesistest.Start(t)
	awsEnv(t)
	client := kinesistest.Client(endpoint)
	const stream = "cwlogs"
	kinesistest.CreateStream(t, client, stream, 2)

	data, ids := payloads("a", 20)
	kinesistest.Put(t, client, stream, append(data, kinesistest.ControlMessage(), truncatedGzip())...)

	cfg := kinesis.Config{Stream: stream, Region: kinesistest.Region, Endpoint: endpoint, PollInterval: 200 * time.Millisecond}
	ckpt := filepath.Join(t.TempDir(), "inputs", "kinesis-test.json")

	// The first publish fails: the batch is retried, not skipped.
	c := newCollector(1)
	metrics := run(t, cfg, ckpt, c, func() bool { return c.count() >= len(ids) })
	checkExactlyOnce(t, c, ids)
	for _, want := range []string{
		`les_kinesis_records_total{stream="cwlogs"} 22`,
		`les_kinesis_rejected_total{stream="cwlogs",reason="bad_gzip"} 1`,
		`les_kinesis_logs_total{stream="cwlogs"} 60`,
		`les_kinesis_errors_total{stream="cwlogs",reason="publish"} 1`,
		`les_kinesis_millis_behind{stream="cwlogs",shard="shardId-000000000000"}`,
		`les_kinesis_millis_behind{stream="cwlogs",shard="shardId-000000000001"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(metrics, "les_kinesis"))
		}
	}
	if !c.srcs["orders"] || len(c.srcs) != 1 {
		t.Errorf("sources = %v, want only orders", c.srcs)
	}
	raw, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"shardId-000000000000"`) || !strings.Contains(string(raw), `"shardId-000000000001"`) {
		t.Errorf("checkpoint lacks a shard: %s", raw)
	}

	// Restart from the checkpoint (StartAt would re-read everything): only
	// the new records arrive.
	data2, ids2 := payloads("b", 10)
	kinesistest.Put(t, client, stream, data2...)
	c2 := newCollector(0)
	metrics = run(t, cfg, ckpt, c2, func() bool { return c2.count() >= len(ids2) })
	checkExactlyOnce(t, c2, ids2)
	if want := `les_kinesis_records_total{stream="cwlogs"} 10`; !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s:\n%s", want, grep(metrics, "les_kinesis"))
	}
}

// TestPollerLatest checks that start_at LATEST skips what is already in
// the stream.
func TestPollerLatest(t *testing.T) {
	endpoint := kinesistest.Start(t)
	awsEnv(t)
	client := kinesistest.Client(endpoint)
	const stream = "latest"
	kinesistest.CreateStream(t, client, stream, 1)
	old, _ := payloads("old", 3)
	kinesistest.Put(t, client, stream, old...)

	cfg := kinesis.Config{Stream: stream, Endpoint: endpoint, StartAt: kinesis.StartLatest, PollInterval: 200 * time.Millisecond}
	ckpt := filepath.Join(t.TempDir(), "kinesis.json")
	c := newCollector(0)
	fresh, ids := payloads("new", 2)
	put := sync.OnceFunc(func() { kinesistest.Put(t, client, stream, fresh...) })
	start := time.Now()
	run(t, cfg, ckpt, c, func() bool {
		if time.Since(start) > time.Second { // the iterator is taken by now
			put()
		}
		return c.count() >= len(ids)
	})
	checkExactlyOnce(t, c, ids)
}

func checkExactlyOnce(t *testing.T, c *collector, ids []string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if n := c.ids[id]; n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	if len(c.ids) != len(ids) {
		t.Errorf("%d distinct events delivered, want %d", len(c.ids), len(ids))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
