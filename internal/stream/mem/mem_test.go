package mem

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/streamtest"
)

// opener reopens the same Store for the same subtest, so restarts keep
// their records and cursors.
func opener(cfg Config) streamtest.Opener {
	stores := map[string]*Store{}
	return func(t *testing.T) stream.Stream {
		st := stores[t.Name()]
		if st == nil {
			st = NewStore()
			stores[t.Name()] = st
		}
		return New(st, cfg)
	}
}

func TestConformance(t *testing.T) {
	defer goleak.VerifyNone(t)
	streamtest.Run(t, opener(Config{Partitions: streamtest.Partitions, MaxRecordBytes: 1 << 16}))
}

func TestConformanceWithDedup(t *testing.T) {
	defer goleak.VerifyNone(t)
	streamtest.Run(t, opener(Config{Partitions: streamtest.Partitions, DedupWindow: time.Hour}))
}
