package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	"github.com/les-streams/les/internal/wire"
)

// logRecorder keeps the messages logged at WARN and above.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// find returns the attributes of the first record at level whose message
// contains msg.
func (l *logRecorder) find(level slog.Level, msg string) (map[string]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Level == level && strings.Contains(r.Message, msg) {
			m := map[string]string{}
			r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
			return m, true
		}
	}
	return nil, false
}

func (l *logRecorder) dump(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		t.Logf("log: %s %s", r.Level, r.Message)
	}
}

// publishN publishes n records with ids prefix0 … prefix(n-1), the id in
// the data (padded to 1000 bytes).
func publishN(t *testing.T, s stream.Stream, prefix string, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		data := make([]byte, 1000)
		copy(data, id+"\n")
		if err := s.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: id, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
}

func idOf(d stream.Delivery) string {
	s, _, _ := strings.Cut(string(d.Data), "\n")
	return s
}

// consumeDurable reads durable until stop says so (true) or 10s pass,
// returning the ids handled.
func consumeDurable(t *testing.T, s stream.Stream, durable string, stop func(ids []string) bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	err := s.Consume(ctx, stream.ConsumeOptions{Durable: durable, Batch: 10, MaxWait: 50 * time.Millisecond},
		func(_ context.Context, ds []stream.Delivery) error {
			for _, d := range ds {
				ids = append(ids, idOf(d))
			}
			if stop(ids) {
				cancel()
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// damageOldestBlock overwrites 4 KiB in the middle of the stream's
// oldest block file.
func damageOldestBlock(t *testing.T, dataDir string) {
	t.Helper()
	dir := filepath.Join(dataDir, "jetstream", "jetstream", "$G", "streams", "LES", "msgs")
	blks, err := filepath.Glob(filepath.Join(dir, "*.blk"))
	if err != nil || len(blks) == 0 {
		t.Fatalf("no block files in %s: %v", dir, err)
	}
	slices.SortFunc(blks, func(a, b string) int { return blockIndex(a) - blockIndex(b) })
	f, err := os.OpenFile(blks[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = 0xAB
	}
	if _, err := f.WriteAt(junk, st.Size()/2-2048); err != nil {
		t.Fatal(err)
	}
}

func blockIndex(path string) int {
	var n int
	fmt.Sscanf(filepath.Base(path), "%d.blk", &n)
	return n
}

func hasAll(ids []string, prefix string, n int) bool {
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	for i := range n {
		if !set[fmt.Sprintf("%s%d", prefix, i)] {
			return false
		}
	}
	return true
}

// streamState asks the server (over a plain client, not les) for the
// stream's state.
func streamState(t *testing.T, s *Stream, deleted bool) jetstream.StreamState {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(s.srv), nats.Token(s.token))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), "LES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithDeletedDetails(deleted))
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// TestDamagedLastBlock: the stream's only block file is damaged while les
// is stopped; the server cuts the stream at the damage, below the sink's
// cursor. Everything published after the restart reaches the durable
// consumer (before the fix: none of it), a processor's position beyond the
// end is clamped, the server's warning and the lost range are logged, and
// the lost records are counted.
func TestDamagedLastBlock(t *testing.T) {
	dir := t.TempDir()
	cfg := embedded.Config{Listen: "127.0.0.1:-1"}
	s, err := Open(context.Background(), cfg, dir, 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, s, "a", 300)
	got := consumeDurable(t, s, "sink", func(ids []string) bool { return len(ids) >= 200 })
	if len(got) != 200 {
		t.Fatalf("consumed %d before the damage, want 200", len(got))
	}
	s.Close()
	damageOldestBlock(t, dir)

	logs := &logRecorder{}
	reg := selfmetric.New()
	s, err = Open(context.Background(), cfg, dir, 1, Deps{Log: slog.New(logs), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	end := streamState(t, s, false).LastSeq
	if end >= 200 {
		t.Fatalf("the damage did not cut the stream below the cursor (last seq %d); the test reproduces nothing", end)
	}
	// A processor checkpointed at 250 is clamped to the end.
	clamped, _, err := s.ClampPositions(context.Background(), map[string]stream.Position{"0": "250", "1": "3"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint(end); string(clamped["0"]) != want || clamped["1"] != "3" {
		t.Errorf("clamped positions %v, want 0:%s 1:3", clamped, want)
	}

	publishN(t, s, "b", 50)
	got = consumeDurable(t, s, "sink", func(ids []string) bool { return hasAll(ids, "b", 50) })
	if !hasAll(got, "b", 50) {
		t.Fatalf("records published after the damage were not all delivered: got %d records %v", len(got), got)
	}
	if _, ok := logs.find(slog.LevelWarn, "corrupt"); !ok {
		logs.dump(t)
		t.Error("the server's warning about the damaged block is not in les' log")
	}
	a, ok := logs.find(slog.LevelError, "records lost from the stream")
	if !ok {
		logs.dump(t)
		t.Fatal("no ERROR naming the records lost")
	}
	if a["lost_from_seq"] != fmt.Sprint(end+1) || a["lost_to_seq_at_least"] != "300" {
		t.Errorf("lost range %s…%s, want %d…300", a["lost_from_seq"], a["lost_to_seq_at_least"], end+1)
	}
	if _, ok := logs.find(slog.LevelError, "durable consumer was ahead"); !ok {
		t.Error("no ERROR for the durable moved back")
	}
	if n := reg.Counter("les_stream_lost_records_total", "backend", "embedded").Get(); n != 300-end {
		t.Errorf("les_stream_lost_records_total = %d, want %d", n, 300-end)
	}
}

// TestDamagedOlderBlock: damage in the oldest of several block files makes
// the server drop the records inside it while the end stays. They are
// reported as lost by range and counted, exactly the range the server
// reports deleted; everything published later is delivered.
func TestDamagedOlderBlock(t *testing.T) {
	dir := t.TempDir()
	// A small max_bytes makes small block files (32 kB): several of them.
	cfg := embedded.Config{Listen: "127.0.0.1:-1", MaxBytes: 120_000}
	s, err := Open(context.Background(), cfg, dir, 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, s, "a", 100)
	consumeDurable(t, s, "sink", func(ids []string) bool { return len(ids) >= 10 })
	s.Close()
	damageOldestBlock(t, dir)

	logs := &logRecorder{}
	reg := selfmetric.New()
	s, err = Open(context.Background(), cfg, dir, 1, Deps{Log: slog.New(logs), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := streamState(t, s, true)
	if len(st.Deleted) == 0 {
		t.Fatalf("the damage dropped nothing (state %+v); the test reproduces nothing", st)
	}
	slices.Sort(st.Deleted)
	first, last := st.Deleted[0], st.Deleted[len(st.Deleted)-1]
	if last-first+1 != uint64(len(st.Deleted)) {
		t.Fatalf("server dropped a non-contiguous set %v", st.Deleted)
	}
	a, ok := logs.find(slog.LevelError, "dropped a range")
	if !ok {
		logs.dump(t)
		t.Fatal("no ERROR naming the range lost inside the stream")
	}
	if a["lost_from_seq"] != fmt.Sprint(first) || a["lost_to_seq"] != fmt.Sprint(last) {
		t.Errorf("reported %s…%s, the server dropped %d…%d", a["lost_from_seq"], a["lost_to_seq"], first, last)
	}
	if n := reg.Counter("les_stream_lost_records_total", "backend", "embedded").Get(); n != uint64(len(st.Deleted)) {
		t.Errorf("les_stream_lost_records_total = %d, want %d", n, len(st.Deleted))
	}
	publishN(t, s, "b", 20)
	got := consumeDurable(t, s, "sink", func(ids []string) bool { return hasAll(ids, "b", 20) })
	if !hasAll(got, "b", 20) {
		t.Fatalf("records published after the damage were not all delivered: %v", got)
	}
	s.Close()

	// A second start reports nothing again.
	logs2 := &logRecorder{}
	s, err = Open(context.Background(), cfg, dir, 1, Deps{Log: slog.New(logs2)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, ok := logs2.find(slog.LevelError, "records lost"); ok {
		t.Error("the same loss was reported again on the next start")
	}
}
