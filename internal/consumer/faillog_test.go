package consumer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// logLines records what is logged.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

func (l *logLines) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}

// downSink fails every Send while down.
type downSink struct {
	down  atomic.Bool
	calls atomic.Int64
}

func (s *downSink) Send(context.Context, *model.Batch, sink.Meta) error {
	s.calls.Add(1)
	if s.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}
func (s *downSink) Close() error { return nil }

// TestSinkFailureLogged: a sink that fails for 3.5 minutes (of fake time)
// logs the first failure at once, a summary with counts about every
// minute — not a line per retry — and its recovery; before, nothing was
// logged until the record was dead-lettered.
func TestSinkFailureLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := mem.New(mem.NewStore(), mem.Config{Partitions: 1})
		e := wire.NewEncoder(wire.SignalMetrics)
		e.AppendMetric(&model.Metric{Name: "m", Value: 1, Timestamp: 1, Kind: model.Gauge})
		data, err := e.Finish(nil, 1, 1, wire.CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: "r1", Data: data}); err != nil {
			t.Fatal(err)
		}
		logs := &logLines{}
		reg := selfmetric.New()
		sk := &downSink{}
		sk.down.Store(true)
		r, err := NewSinkRunner(SinkConfig{Name: "s", Origins: []string{stream.OriginIngest},
			Retry: sink.RetryConfig{InitialBackoff: time.Second, MaxBackoff: 5 * time.Second}}, st, sk, reg, slog.New(logs))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		time.Sleep(3*time.Minute + 30*time.Second)
		sk.down.Store(false)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		first, summaries, recovered := logs.matching("sink failing"), logs.matching("sink still failing"), logs.matching("sink recovered")
		t.Logf("%d sends; log: %d first, %d summaries, %d recovered", sk.calls.Load(), len(first), len(summaries), len(recovered))
		if len(first) != 1 || !strings.Contains(first[0], "connection refused") {
			t.Errorf("first failure lines: %q", first)
		}
		if len(summaries) < 2 || len(summaries) > 4 || !strings.Contains(summaries[0], "failures=") {
			t.Errorf("summaries: %q; want about one a minute with counts", summaries)
		}
		if len(recovered) != 1 {
			t.Errorf("recovery lines: %q", recovered)
		}
		if got := reg.Counter("les_sink_delivered_items_total", "sink", "s").Get(); got != 1 {
			t.Errorf("delivered %d, want 1", got)
		}
		if n := sk.calls.Load(); n < 30 {
			t.Errorf("only %d sends in 3.5 minutes: the test does not exercise the rate limit", n)
		}
	})
}
