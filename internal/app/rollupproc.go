package app

import (
	"github.com/les-streams/les/internal/consumer"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/wire"
)

var _ consumer.SeriesProcessor = (*rollupProc)(nil)

// seriesScratch is AddSeries' per-record state: which of the record's
// series are plain gauges to leave to the sinks (rollupProc.drop), and
// the rollup's view of the part.
type seriesScratch struct {
	skip []bool
	any  bool // some series is skipped
	pts  rollup.Points
}

// AddSeries is Add for a series-encoded record's parts
// (wire.Decoder.DecodeSeriesParts): the same points reach the engine,
// found by their series' index. Which series are dropped is worked out
// once per record, from its first part, instead of once per point, and
// nothing is copied.
func (p *rollupProc) AddSeries(sp *wire.SeriesPart, now int64) {
	s := &p.series
	if !sp.Continues || len(s.skip) != len(sp.Series) {
		s.skip, s.any = s.skip[:0], false
		for i := range sp.Series {
			d := p.drop(&sp.Series[i])
			s.skip = append(s.skip, d)
			s.any = s.any || d
		}
	}
	s.pts = rollup.Points{Series: sp.Series, Index: sp.Index, Timestamp: sp.Timestamp, Value: sp.Value,
		Continues: sp.Continues, More: sp.More}
	if s.any {
		s.pts.Skip = s.skip
	}
	p.Rollup.AddPoints(&s.pts, now)
	s.pts = rollup.Points{} // keep nothing of the part
}
