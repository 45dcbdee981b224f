package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/file"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/twmb/franz-go/pkg/kfake"
)

// warnLog records WARN and ERROR messages.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *warnLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *warnLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.Key + "=" + a.Value.String(); return true })
	l.msgs = append(l.msgs, msg)
	return nil
}
func (l *warnLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *warnLog) WithGroup(string) slog.Handler      { return l }

// fileItems counts, per record id, the lines of path (each a JSON object
// with "record").
func fileItems(t *testing.T, path string) (map[string]int, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	per, n := map[string]int{}, 0
	for line := range bytes.Lines(b) {
		var v struct {
			Record string `json:"record"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		per[v.Record]++
		n++
	}
	return per, n
}

// notifySink is the file sink, signalling after every Send (so that a
// test waits for the file without polling).
type notifySink struct {
	*file.Sink
	sent chan struct{}
}

func (s notifySink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	err := s.Sink.Send(ctx, b, m)
	select {
	case s.sent <- struct{}{}:
	default:
	}
	return err
}

// fileRun is a SinkRunner with a file sink, running.
type fileRun struct {
	sk     notifySink
	path   string
	cancel context.CancelFunc
	done   chan error
}

func startFileSink(t *testing.T, st stream.Stream, path string, log *slog.Logger, reg *selfmetric.Registry) *fileRun {
	t.Helper()
	fs, err := file.NewDeps(file.Config{Path: path}, sink.Deps{Name: "file", Log: log, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	sk := notifySink{fs, make(chan struct{}, 1)}
	cfg := SinkConfig{Name: "file", PerRecord: true}
	if !st.Capabilities().DurableCursors {
		cfg.PositionsPath = path + ".consumer-pos"
	}
	r, err := NewSinkRunner(cfg, st, sk, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fr := &fileRun{sk: sk, path: path, cancel: cancel, done: make(chan error, 1)}
	go func() { fr.done <- r.Run(ctx) }()
	return fr
}

// waitComplete waits until the file holds records records of per lines
// each, every one exactly once (each Send wakes it up).
func (fr *fileRun) waitComplete(t *testing.T, records, per int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		if perRec, n := fileCounts(fr.path); n == records*per && len(perRec) == records {
			ok := true
			for _, c := range perRec {
				ok = ok && c == per
			}
			if ok {
				return
			}
		}
		select {
		case <-fr.sk.sent:
		case <-timeout:
			perRec, n := fileCounts(fr.path)
			fr.stop(t)
			t.Fatalf("the file holds %d lines of %d records, want %d records of %d: %v", n, len(perRec), records, per, perRec)
		}
	}
}

func (fr *fileRun) stop(t *testing.T) {
	t.Helper()
	fr.cancel()
	if err := <-fr.done; err != nil {
		t.Fatal(err)
	}
}

// fileCounts counts, per record id, the lines of path that parse; n is
// every line.
func fileCounts(path string) (map[string]int, int) {
	b, _ := os.ReadFile(path)
	per, n := map[string]int{}, 0
	for line := range bytes.Lines(b) {
		n++
		var v struct {
			Record string `json:"record"`
		}
		if json.Unmarshal(line, &v) == nil {
			per[v.Record]++
		}
	}
	return per, n
}

// runFileSink runs a file sink consumer until the file holds records
// records of per lines each.
func runFileSink(t *testing.T, st stream.Stream, path string, log *slog.Logger, reg *selfmetric.Registry, records, per int) {
	t.Helper()
	fr := startFileSink(t, st, path, log, reg)
	fr.waitComplete(t, records, per)
	fr.stop(t)
}

// fileBackends are the streams the file sink's re-delivery is tested
// on: the embedded server, Kafka (kfake) and Kinesis (kinesalite; the
// runner keeps a positions file), each with 2 partitions.
func fileBackends() []struct {
	name string
	open func(t *testing.T) stream.Stream
} {
	return []struct {
		name string
		open func(t *testing.T) stream.Stream
	}{
		{"embedded", func(t *testing.T) stream.Stream {
			st, err := embedsrv.Open(context.Background(), embedded.Config{Listen: "127.0.0.1:-1"}, t.TempDir(), 2, embedsrv.Deps{Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
		{"kafka", func(t *testing.T) stream.Stream {
			c, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				t.Fatal(err)
			}
			st, err := kafka.Open(context.Background(), kafka.Config{Brokers: c.ListenAddrs()}, 2, kafka.Deps{Log: quiet})
			if err != nil {
				c.Close()
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close(); c.Close() })
			return st
		}},
		{"kinesis", func(t *testing.T) stream.Stream {
			endpoint := kinesistest.Start(t)
			kinesistest.AWSEnv(t)
			name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
			st, err := kinesis.Open(context.Background(), kinesis.Config{Stream: name, Endpoint: endpoint, CreateShards: 2,
				PollInterval: kinesis.MinPollInterval}, 2, kinesis.Deps{Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
	}
}

// hasLog reports whether a logged message contains every one of parts.
func (l *warnLog) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(m, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestFileSinkRepairRedelivers: the file sink's output loses its end
// after the records were acknowledged (the last record torn: one line and
// a half gone). On the next start the repair cuts the rest of that record,
// logs it and counts it, and the runner re-reads the stream from the
// record (ConsumeOptions.Rewind) so that it is written again in full:
// every item exactly once, on the embedded stream, Kafka and Kinesis. Before,
// the record's 50 items were gone, silently; then, after a first fix that
// only natsjs could rewind, still gone on Kafka (450 of 500 lines).
func TestFileSinkRepairRedelivers(t *testing.T) {
	for _, b := range fileBackends() {
		t.Run(b.name, func(t *testing.T) {
			st := b.open(t)
			path := filepath.Join(t.TempDir(), "out.ndjson")
			publishParts(t, st, 0, 10, 50, 2)
			runFileSink(t, st, path, quiet, selfmetric.New(), 10, 50)

			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cut := bytes.LastIndexByte(data[:len(data)-1], '\n') // the last line
			cut -= (cut - bytes.LastIndexByte(data[:cut], '\n')) / 2
			if err := os.Truncate(path, int64(cut)); err != nil {
				t.Fatal(err)
			}

			logs := &warnLog{}
			reg := selfmetric.New()
			runFileSink(t, st, path, slog.New(logs), reg, 10, 50)
			if _, n := fileItems(t, path); n != 500 {
				t.Fatalf("%d lines, want 500", n)
			}
			if got := reg.Counter("les_sink_file_repairs_total", "sink", "file").Get(); got != 1 {
				t.Errorf("les_sink_file_repairs_total = %d, want 1", got)
			}
			if !logs.has("repaired its end", "lines_cut=49") {
				t.Errorf("no WARN naming the 49 lines cut: %q", logs.msgs)
			}
		})
	}
}

// TestFileSinkDamagedWhileRunning: while a SinkRunner runs, the file is
// cut in the middle of its 7th record (of 10 acknowledged ones). The next
// Send finds the file shorter than it left it, repairs it, logs at ERROR,
// counts it, and the runner re-reads the stream from the first record cut
// in each partition: the file ends with all 15 records (10 + 5 published
// after the damage), each exactly once with all its 50 items. Before, the
// damage went unnoticed: the next record was appended to the torn line
// and the 3½ records cut were lost.
func TestFileSinkDamagedWhileRunning(t *testing.T) {
	for _, b := range fileBackends() {
		t.Run(b.name, func(t *testing.T) {
			st := b.open(t)
			path := filepath.Join(t.TempDir(), "out.ndjson")
			logs := &warnLog{}
			reg := selfmetric.New()
			publishParts(t, st, 0, 10, 50, 2)
			fr := startFileSink(t, st, path, slog.New(logs), reg)
			fr.waitComplete(t, 10, 50)

			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// 6 records and 20½ lines of the 7th stay.
			off := 0
			for range 6*50 + 20 {
				off += bytes.IndexByte(data[off:], '\n') + 1
			}
			off += 30
			if err := os.Truncate(path, int64(off)); err != nil {
				t.Fatal(err)
			}
			publishParts(t, st, 10, 5, 50, 2)
			fr.waitComplete(t, 15, 50)
			fr.stop(t)

			if _, n := fileItems(t, path); n != 750 {
				t.Fatalf("%d lines, want 750", n)
			}
			if got := reg.Counter("les_sink_file_repairs_total", "sink", "file").Get(); got != 1 {
				t.Errorf("les_sink_file_repairs_total = %d, want 1", got)
			}
			if !logs.has("damaged while running", "records_cut=4") {
				t.Errorf("no ERROR naming the 4 records cut: %q", logs.msgs)
			}
			if _, err := os.Stat(path + file.RewindSuffix); !os.IsNotExist(err) {
				t.Errorf("the pending rewind is still kept after the records came again: %v", err)
			}
		})
	}
}
