package ingest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// chunkReader returns its input a few bytes per Read, to split lines
// across reads.
type chunkReader struct {
	s string
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := min(c.n, len(c.s), len(p))
	copy(p, c.s[:k])
	c.s = c.s[k:]
	return k, nil
}

func readAll(t *testing.T, input string, chunk, maxLine int) (lines []string, tooLong int) {
	t.Helper()
	lr := LineReader{MaxLine: maxLine}
	r := &chunkReader{s: input, n: chunk}
	emit := func(b []byte) {
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			lines = append(lines, l)
		}
	}
	for {
		if err := lr.Fill(r, emit, func() { tooLong++ }); err != nil {
			lr.Finish(emit)
			return lines, tooLong
		}
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 100)
	cases := []struct {
		name    string
		in      string
		chunk   int
		want    []string
		tooLong int
	}{
		{"whole lines", "a 1\nb 2\n", 1 << 20, []string{"a 1", "b 2"}, 0},
		{"split across reads", "alpha 1\nbeta 2\ngamma 3\n", 3, []string{"alpha 1", "beta 2", "gamma 3"}, 0},
		{"last line without newline", "a 1\nb 2", 2, []string{"a 1", "b 2"}, 0},
		{"too long line skipped", "a 1\n" + long + "\nb 2\n", 7, []string{"a 1", "b 2"}, 1},
		{"too long last line", "a 1\n" + long, 7, []string{"a 1"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, tl := readAll(t, c.in, c.chunk, 32)
			if strings.Join(got, "|") != strings.Join(c.want, "|") || tl != c.tooLong {
				t.Fatalf("got %q (too long %d), want %q (%d)", got, tl, c.want, c.tooLong)
			}
		})
	}
}

// openStream returns an in-memory stream of 3 partitions that takes
// records up to 8 MiB (as the embedded server does).
func openStream(t *testing.T) *mem.Stream {
	t.Helper()
	st := mem.New(mem.NewStore(), mem.Config{Partitions: 3, MaxRecordBytes: 8 << 20})
	t.Cleanup(func() { st.Close() })
	return st
}

// TestBatcherPublishesEverything: items added are published on the right
// subjects, by size and by age, and the drain on cancel loses nothing.
func TestBatcherPublishesEverything(t *testing.T) {
	st := openStream(t)
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{FlushInterval: 20 * time.Millisecond, MaxBatchBytes: 4096}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, 10*time.Second) }()
	const n = 5000
	var batch model.Batch
	for i := range n {
		batch.Reset()
		batch.Metrics = append(batch.Metrics, model.Metric{Name: "m", Value: float64(i), Source: "s" + string(rune('a'+i%7)), Timestamp: int64(i)})
		batch.Logs = append(batch.Logs, model.Log{Message: []byte("hello"), Source: "fn"})
		b.Add(&batch)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Read everything back.
	var metrics, logs int
	var sum float64
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	var dec wire.Decoder
	err = st.Consume(cctx, stream.ConsumeOptions{Durable: "check", Origins: []string{stream.OriginIngest}, Batch: 100},
		func(ctx context.Context, ds []stream.Delivery) error {
			for _, d := range ds {
				var out model.Batch
				h, err := dec.Decode(&out, d.Data)
				if err != nil {
					t.Errorf("decode: %v", err)
					continue
				}
				if d.Origin != stream.OriginIngest || d.Signal != h.Signal {
					t.Errorf("record of %v published as %s/%v", h.Signal, d.Origin, d.Signal)
				}
				// Metrics default to the series encoding, the rest have one.
				want := wire.EncodingLES
				if h.Signal == wire.SignalMetrics {
					want = wire.EncodingSeries
				}
				if h.Encoding != want {
					t.Errorf("%v record in encoding %v", h.Signal, h.Encoding)
				}
				for i := range out.Metrics {
					if p := wire.MetricPartition(&out.Metrics[i], 3); d.Partition != strconv.Itoa(p) {
						t.Errorf("metric of partition %d in a record of partition %s", p, d.Partition)
					}
				}
				metrics += len(out.Metrics)
				logs += len(out.Logs)
				for _, m := range out.Metrics {
					sum += m.Value
				}
			}
			if metrics == n && logs == n {
				ccancel()
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if metrics != n || logs != n || sum != float64(n*(n-1)/2) {
		t.Fatalf("read back %d metrics (sum %v) and %d logs, want %d each", metrics, sum, logs, n)
	}
	if got := reg.Counter("les_stream_published_items_total").Get(); got != 2*n {
		t.Fatalf("published items counter %d", got)
	}
}

// TestDecodeAndBatchAllocs: the UDP hot path (decode a datagram, hand it
// to the batcher) allocates nothing once warm.
func TestDecodeAndBatchAllocs(t *testing.T) {
	st := openStream(t)
	b, err := NewBatcher(BatchConfig{MaxBatchBytes: 4 << 20, QueueBatches: 1000}, st, selfmetric.New(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	in := NewIntake("wavefront", "udp", b, selfmetric.New())
	payload := []byte(strings.Repeat("aws.lambda.duration 12.5 source=fn-a env=prod region=eu-west-1\n", 20))
	dec := fakeDecoder{}
	var batch model.Batch
	step := func() {
		batch.Reset()
		dec.Decode(&batch, payload, 1)
		in.Deliver(&batch)
	}
	step()
	if a := testing.AllocsPerRun(200, step); a != 0 {
		t.Fatalf("decode+deliver allocates %v per datagram", a)
	}
}

// fakeDecoder appends one fixed metric per line, like a real decoder would
// (aliasing the payload), without depending on a format package.
type fakeDecoder struct{}

func (fakeDecoder) Decode(dst *model.Batch, payload []byte, now int64) {
	for len(payload) > 0 {
		i := bytes.IndexByte(payload, '\n')
		if i < 0 {
			i = len(payload)
		}
		mark := dst.TagMark()
		dst.AddTag("env", "prod")
		dst.Metrics = append(dst.Metrics, model.Metric{Name: "aws.lambda.duration", Value: 1, Timestamp: now, Source: "fn", Tags: dst.TagsSince(mark)})
		payload = payload[min(i+1, len(payload)):]
	}
}
