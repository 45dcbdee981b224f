package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// TestSpoolDamagedFileMovedAside: a spool file whose bytes were damaged
// (here: its header garbled) never blocks the spool: it is moved aside
// as .bad, counted, and the files behind it are replayed.
func TestSpoolDamagedFileMovedAside(t *testing.T) {
	st := openStream(t)
	reg := selfmetric.New()
	dir := t.TempDir()
	sp, err := OpenSpool(SpoolConfig{Dir: dir}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		rec := stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalLogs, Partition: 2, ID: id, Data: []byte("data-" + id)}
		if err := sp.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.rec"))
	b, _ := os.ReadFile(files[0])
	copy(b[5:], "XXXX") // the origin length and origin of the oldest file
	if err := os.WriteFile(files[0], b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := sp.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := st.Store().Records()
	if len(recs) != 2 || recs[0].ID != "b" || recs[1].ID != "c" || recs[0].Partition != 2 || recs[0].Origin != stream.OriginIngest {
		t.Fatalf("replayed %+v, want b and c on partition 2", recs)
	}
	if got := reg.Counter("les_stream_spool_damaged_files_total").Get(); got != 1 {
		t.Fatalf("damaged files counted %d, want 1", got)
	}
	if _, err := os.Stat(files[0] + ".bad"); err != nil {
		t.Fatalf("damaged file not moved aside: %v", err)
	}
}

// TestSpoolReadsVersion1Files: files spooled by an earlier les
// ("<subject>\n<id>\n<data>") are replayed with their origin, signal and
// partition.
func TestSpoolReadsVersion1Files(t *testing.T) {
	st := openStream(t)
	dir := t.TempDir()
	data := []byte("x\ny") // data may hold newlines
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000001.rec"), append([]byte("les.agg.distributions.1\nid-1\n"), data...), 0o640); err != nil {
		t.Fatal(err)
	}
	sp, err := OpenSpool(SpoolConfig{Dir: dir}, st, selfmetric.New(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := st.Store().Records()
	if len(recs) != 1 || recs[0].Origin != stream.OriginAgg || recs[0].Signal != wire.SignalDistributions ||
		recs[0].Partition != 1 || recs[0].ID != "id-1" || !bytes.Equal(recs[0].Data, data) {
		t.Fatalf("replayed %+v", recs)
	}
}

func FuzzUnmarshalSpooled(f *testing.F) {
	f.Add(marshalSpooled(stream.Record{Origin: "in", Signal: wire.SignalMetrics, Partition: 3, ID: "p-1", Data: []byte("abc")}))
	f.Add([]byte("les.in.metrics.0\nid\ndata"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := unmarshalSpooled(b)
		if err != nil {
			return
		}
		if !stream.ValidOrigin(rec.Origin) {
			t.Fatalf("accepted origin %q", rec.Origin)
		}
		if bytes.HasPrefix(b, []byte(spoolMagic)) && !bytes.Equal(marshalSpooled(rec), b) {
			t.Fatalf("accepted %q, which does not round-trip", b)
		}
	})
}
