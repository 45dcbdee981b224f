package consumer

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// seriesCountProc is a countProc that takes series-encoded records by
// series index, and counts the parts each way brought.
type seriesCountProc struct {
	countProc
	batches, seriesParts int
}

func (p *seriesCountProc) Add(b *model.Batch, now int64) {
	p.batches++
	p.countProc.Add(b, now)
}

func (p *seriesCountProc) AddSeries(sp *wire.SeriesPart, now int64) {
	p.seriesParts++
	for _, v := range sp.Value {
		p.pending += v
	}
}

// TestProcRunnerSeriesProcessor: a SeriesProcessor is handed every
// series-encoded record through AddSeries (in parts of
// wire.DefaultPartSize) and every other record through Add; a corrupt
// series record reaches neither.
func TestProcRunnerSeriesProcessor(t *testing.T) {
	st := mem.New(mem.NewStore(), mem.Config{Partitions: 1})
	publish := func(id string, data []byte) {
		t.Helper()
		if err := st.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics,
			ID: id, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	record := func(enc wire.Encoding, seq uint64, n int) []byte {
		e := wire.NewEncoding(wire.SignalMetrics, enc)
		for j := range n {
			e.AppendMetric(&model.Metric{Name: "m", Value: 1, Timestamp: int64(j), Kind: model.Sample})
		}
		data, err := e.Finish(nil, 7, seq, wire.CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	publish("s1", record(wire.EncodingSeries, 1, wire.DefaultPartSize+10)) // two parts
	publish("l1", record(wire.EncodingLES, 2, 30))
	bad := append(record(wire.EncodingSeries, 3, 50), 0) // a trailing byte
	binary.LittleEndian.PutUint32(bad[44:], uint32(len(bad)-wire.HeaderSize))
	publish("bad", bad)
	publish("s2", record(wire.EncodingSeries, 4, 20))
	p := &seriesCountProc{}
	want := float64(wire.DefaultPartSize + 10 + 30 + 20)
	runProcPublished(t, st, filepath.Join(t.TempDir(), "count.ckpt"), p, func() bool { return p.total == want })
	if p.seriesParts != 3 || p.batches != 1 {
		t.Fatalf("%d series parts and %d batches, want 3 and 1", p.seriesParts, p.batches)
	}
}
