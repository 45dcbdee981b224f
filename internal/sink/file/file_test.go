package file

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

func TestConformance(t *testing.T) {
	var path string
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		path = filepath.Join(t.TempDir(), "sub", "out.ndjson")
		s, err := New(Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, func(t *testing.T) []sinktest.Item {
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		splitLines(t, data)
		return sinktest.FromNDJSON(t, data)
	}, sinktest.Options{})
}

// splitLines checks that data is valid NDJSON and returns its lines.
func splitLines(t *testing.T, data []byte) []string {
	t.Helper()
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("file does not end with a newline: ...%q", data[max(0, len(data)-80):])
	}
	var lines []string
	for l := range strings.Lines(string(data)) {
		if !json.Valid([]byte(l)) {
			t.Fatalf("invalid JSON line %q", l)
		}
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	return lines
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sendID(t *testing.T, s *Sink, id string) {
	t.Helper()
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{RecordID: id}); err != nil {
		t.Fatalf("Send %s: %v", id, err)
	}
}

// recordCounts returns, per record id, how many lines the file has, and
// checks every line is valid JSON with item/items consistent.
func recordCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, l := range splitLines(t, data) {
		var v struct {
			Record      string
			Item, Items int
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		if v.Items == 0 || v.Item != got[v.Record]%v.Items {
			t.Errorf("record %s: line has item %d of %d after %d lines", v.Record, v.Item, v.Items, got[v.Record])
		}
		got[v.Record]++
	}
	return got
}

const perRecord = sinktest.NumMetrics + sinktest.NumDistributions + sinktest.NumLogs + sinktest.NumSpans

func TestDedup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := newSink(t, Config{Path: path})
	for _, id := range []string{"p-1", "p-2", "p-1", `we"ird\id`, `we"ird\id`, "p-2"} {
		sendID(t, s, id)
	}
	if c := s.Counts(); c.Records != 3 || c.Duplicates != 3 || c.Items != 3*perRecord {
		t.Errorf("counts %+v", c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// a new sink on the same file remembers the ids
	s = newSink(t, Config{Path: path})
	for _, id := range []string{"p-1", `we"ird\id`, "p-3"} {
		sendID(t, s, id)
	}
	if c := s.Counts(); c.Records != 1 || c.Duplicates != 2 || c.Repaired != 0 {
		t.Errorf("counts after reopen %+v", c)
	}
	s.Close()
	want := map[string]int{"p-1": perRecord, "p-2": perRecord, `we"ird\id`: perRecord, "p-3": perRecord}
	if d := cmp.Diff(want, recordCounts(t, path)); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
}

func TestDedupBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := newSink(t, Config{Path: path, DedupRecords: 2, Sync: "none"})
	for _, id := range []string{"a", "b", "c", "a", "c"} { // "a" was forgotten when "c" arrived
		sendID(t, s, id)
	}
	s.Close()
	want := map[string]int{"a": 2 * perRecord, "b": perRecord, "c": perRecord}
	if d := cmp.Diff(want, recordCounts(t, path)); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
}

func TestCrashRecovery(t *testing.T) {
	one, _ := sinktest.Batch()
	var rec bytes.Buffer
	{ // the bytes a write of record r6 would have produced
		dir := t.TempDir()
		s := newSink(t, Config{Path: filepath.Join(dir, "x")})
		if err := s.Send(context.Background(), one, sink.Meta{RecordID: "r6"}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		data, _ := os.ReadFile(filepath.Join(dir, "x"))
		rec.Write(data)
	}
	firstLine := bytes.IndexByte(rec.Bytes(), '\n') + 1
	for name, torn := range map[string][]byte{
		"half a line":             rec.Bytes()[:firstLine/2],
		"one line and a half":     rec.Bytes()[:firstLine+(firstLine/2)],
		"whole lines, not record": rec.Bytes()[:firstLine],
		"all but the newline":     rec.Bytes()[:rec.Len()-1],
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.ndjson")
			s := newSink(t, Config{Path: path})
			for i := 1; i <= 5; i++ {
				sendID(t, s, fmt.Sprintf("r%d", i))
			}
			s.Close() // a crash, as far as the file is concerned
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(torn)
			f.Close()

			// restart: the stream re-delivers the unacknowledged records
			s = newSink(t, Config{Path: path})
			for i := 4; i <= 7; i++ {
				sendID(t, s, fmt.Sprintf("r%d", i))
			}
			if c := s.Counts(); c.Duplicates != 2 || c.Records != 2 || c.Repaired != uint64(len(torn)) {
				t.Errorf("counts %+v, want 2 duplicates, 2 records, %d bytes repaired", c, len(torn))
			}
			s.Close()
			want := map[string]int{}
			for i := 1; i <= 7; i++ {
				want[fmt.Sprintf("r%d", i)] = perRecord
			}
			if d := cmp.Diff(want, recordCounts(t, path)); d != "" {
				t.Errorf("-want +got\n%s", d)
			}
		})
	}
}

func TestScanWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := newSink(t, Config{Path: path})
	for i := range 20 {
		sendID(t, s, fmt.Sprintf("r%d", i))
	}
	s.Close()
	st, _ := os.Stat(path)
	// a window of about 5 records: only recent ids are remembered
	s = newSink(t, Config{Path: path})
	s.scanBytes = st.Size() / 4
	sendID(t, s, "r19")
	sendID(t, s, "r0")
	s.Close()
	if c := s.Counts(); c.Duplicates != 1 || c.Records != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestForeignLinesKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	os.WriteFile(path, []byte("{\"hello\":1}\n{\"type\":\"log\"}\n"), 0o644)
	s := newSink(t, Config{Path: path})
	sendID(t, s, "r1")
	s.Close()
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("{\"hello\":1}\n{\"type\":\"log\"}\n{")) || s.Counts().Repaired != 0 {
		t.Errorf("foreign lines changed: %q", data[:40])
	}
}

func TestConfig(t *testing.T) {
	for _, bad := range []Config{{}, {Path: "x", Sync: "always"}, {Path: "x", DedupRecords: -1}} {
		if _, err := New(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	c := Config{Path: "x"}
	if err := c.Validate(); err != nil || c.Sync != "batch" || c.DedupRecords != DefaultDedupRecords {
		t.Errorf("defaults: %+v %v", c, err)
	}
}

func TestNewDoesNoIO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "out.ndjson")
	s := newSink(t, Config{Path: path})
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("New created %s", filepath.Dir(path))
	}
	s.Close()
}

func TestSendAllocs(t *testing.T) {
	s := newSink(t, Config{Path: filepath.Join(t.TempDir(), "out.ndjson"), Sync: "none"})
	defer s.Close()
	b, _ := sinktest.Batch()
	sendID(t, s, "warm")
	n := testing.AllocsPerRun(50, func() {
		_ = s.Send(context.Background(), b, sink.Meta{RecordID: "warm"}) // duplicate: lookup only
	})
	if n != 0 {
		t.Errorf("duplicate Send allocates %v times", n)
	}
	n = testing.AllocsPerRun(50, func() {
		_ = s.Send(context.Background(), b, sink.Meta{}) // no id: encode and write
	})
	if n != 0 {
		t.Errorf("Send allocates %v times", n)
	}
}

func benchBatch(n int) *model.Batch {
	b := &model.Batch{}
	one, _ := sinktest.Batch()
	for b.Len() < n {
		b.Metrics = append(b.Metrics, one.Metrics...)
		b.Dists = append(b.Dists, one.Dists...)
		b.Logs = append(b.Logs, one.Logs...)
		b.Spans = append(b.Spans, one.Spans...)
	}
	return b
}

func BenchmarkSend(b *testing.B) {
	for _, sync := range []string{"none", "batch"} {
		b.Run("sync="+sync, func(b *testing.B) {
			s := newSink(&testing.T{}, Config{Path: filepath.Join(b.TempDir(), "out.ndjson"), Sync: sync})
			defer s.Close()
			batch := benchBatch(1000)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				if err := s.Send(context.Background(), batch, sink.Meta{RecordID: fmt.Sprintf("bench-%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch.Len())/b.Elapsed().Seconds(), "items/s")
		})
	}
}
