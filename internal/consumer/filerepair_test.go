package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/file"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
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

// runFileSink runs a file sink consumer until the file holds want lines.
func runFileSink(t *testing.T, st *embedsrv.Stream, path string, log *slog.Logger, reg *selfmetric.Registry, want int) {
	t.Helper()
	sk, err := file.NewDeps(file.Config{Path: path}, sink.Deps{Name: "file", Log: log, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewSinkRunner(SinkConfig{Name: "file", PerRecord: true}, st, sk, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for sk.Counts().Items+sk.Counts().Duplicates == 0 || lines(path) < want {
		if time.Now().After(deadline) {
			cancel()
			<-done
			_, n := fileItems(t, path)
			b, _ := os.ReadFile(path + file.LastSuffix)
			t.Fatalf("the file holds %d lines, want %d (last %q)", n, want, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func lines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte{'\n'})
}

// TestFileSinkRepairRedelivers: the file sink's output loses its end
// after the records were acknowledged (the last record torn: one line and
// a half gone). On the next start the repair cuts the rest of that record,
// logs it and counts it, and the runner re-reads the stream from the
// record so that it is written again in full: every item exactly once.
// Before the fix the record's 50 items were gone, silently.
func TestFileSinkRepairRedelivers(t *testing.T) {
	dir := t.TempDir()
	st := openStream(t, dir)
	defer st.Close()
	path := filepath.Join(dir, "out.ndjson")
	publishMetrics(t, st, 0, 10, 50)
	runFileSink(t, st, path, quiet, selfmetric.New(), 500)

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := bytes.LastIndexByte(b[:len(b)-1], '\n') // the last line
	cut -= (cut - bytes.LastIndexByte(b[:cut], '\n')) / 2
	if err := os.Truncate(path, int64(cut)); err != nil {
		t.Fatal(err)
	}

	logs := &warnLog{}
	reg := selfmetric.New()
	runFileSink(t, st, path, slog.New(logs), reg, 500)
	per, n := fileItems(t, path)
	if n != 500 || len(per) != 10 {
		t.Fatalf("%d lines of %d records, want 500 of 10", n, len(per))
	}
	for id, c := range per {
		if c != 50 {
			t.Errorf("record %s has %d lines, want 50", id, c)
		}
	}
	if got := reg.Counter("les_sink_file_repairs_total", "sink", "file").Get(); got != 1 {
		t.Errorf("les_sink_file_repairs_total = %d, want 1", got)
	}
	var found bool
	for _, m := range logs.msgs {
		if bytes.Contains([]byte(m), []byte("repaired its end")) && bytes.Contains([]byte(m), []byte("lines_cut=49")) {
			found = true
		}
	}
	if !found {
		t.Errorf("no WARN naming the 49 lines cut: %q", logs.msgs)
	}
}
