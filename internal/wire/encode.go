package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/les-streams/les/internal/model"
)

// Encoder accumulates the items of one record. It is not safe for
// concurrent use; Reset makes it reusable without allocating.
type Encoder struct {
	signal Signal
	body   []byte
	count  uint32
	minT   int64
	maxT   int64
	// ext is set once a span with optional fields (model.Span.Extended)
	// was appended: the body then holds version-2 span items.
	ext bool
	// tab is the series table of EncodingSeries (series.go); nil for
	// EncodingLES.
	tab *seriesTable
}

// NewEncoder returns an encoder for records of signal s in EncodingLES.
func NewEncoder(s Signal) *Encoder { return &Encoder{signal: s} }

// NewEncoding returns an encoder for records of signal s in encoding enc;
// EncodingSeries applies to metrics only, other signals get EncodingLES.
func NewEncoding(s Signal, enc Encoding) *Encoder {
	e := &Encoder{signal: s}
	if enc == EncodingSeries && s == SignalMetrics {
		e.tab = newSeriesTable()
	}
	return e
}

// Encoding is the item encoding Finish writes.
func (e *Encoder) Encoding() Encoding {
	if e.tab != nil {
		return EncodingSeries
	}
	return EncodingLES
}

// Signal returns the signal this encoder writes.
func (e *Encoder) Signal() Signal { return e.signal }

// Count is the number of items appended since the last Reset.
func (e *Encoder) Count() int { return int(e.count) }

// Size is the uncompressed body size in bytes.
func (e *Encoder) Size() int {
	if e.tab != nil {
		return e.tab.size() + len(e.body)
	}
	return len(e.body)
}

// Reset empties the encoder and keeps its buffers.
func (e *Encoder) Reset() {
	e.body = e.body[:0]
	e.count = 0
	e.minT, e.maxT = 0, 0
	e.ext = false
	if e.tab != nil {
		e.tab.reset()
	}
}

// Version is the record version Finish writes: Version2 for a span record
// holding a span with kind, status, events or links, else Version.
func (e *Encoder) Version() uint8 {
	if e.ext && e.signal == SignalSpans {
		return Version2
	}
	return Version
}

func (e *Encoder) seen(ts int64) {
	if e.count == 0 || ts < e.minT {
		e.minT = ts
	}
	if e.count == 0 || ts > e.maxT {
		e.maxT = ts
	}
	e.count++
}

// encMark is what an append can be undone to (Split).
type encMark struct {
	body       []byte // the body as it was: its bytes are never rewritten in place (see upgradeSpans)
	count      uint32
	minT, maxT int64
	ext        bool
	tab        seriesMark
}

func (e *Encoder) mark() encMark {
	mk := encMark{body: e.body, count: e.count, minT: e.minT, maxT: e.maxT, ext: e.ext}
	if e.tab != nil {
		mk.tab = e.tab.mark()
	}
	return mk
}

// undo forgets the items appended since mk.
func (e *Encoder) undo(mk encMark) {
	e.body, e.count, e.minT, e.maxT, e.ext = mk.body, mk.count, mk.minT, mk.maxT, mk.ext
	if e.tab != nil {
		e.tab.undo(mk.tab)
	}
}

// AppendMetric appends m; the encoder copies what it needs.
func (e *Encoder) AppendMetric(m *model.Metric) {
	if e.tab != nil {
		e.body = e.tab.appendMetric(e.body, m)
		e.seen(m.Timestamp)
		return
	}
	b := append(e.body, byte(m.Kind), byte(m.Window))
	b = appendString(b, m.Name)
	b = appendString(b, m.Source)
	b = binary.AppendVarint(b, m.Timestamp)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(m.Value))
	b = appendTags(b, m.Tags)
	e.body = b
	e.seen(m.Timestamp)
}

// AppendDistribution appends d.
func (e *Encoder) AppendDistribution(d *model.Distribution) {
	b := append(e.body, byte(d.Window))
	b = binary.AppendUvarint(b, uint64(d.Correction))
	b = appendString(b, d.Name)
	b = appendString(b, d.Source)
	b = binary.AppendVarint(b, d.Timestamp)
	b = appendFloat(b, d.Count)
	b = appendFloat(b, d.Sum)
	b = appendFloat(b, d.Min)
	b = appendFloat(b, d.Max)
	b = binary.AppendUvarint(b, uint64(len(d.Centroids)))
	for _, c := range d.Centroids {
		b = appendFloat(b, c.Value)
		b = appendFloat(b, c.Count)
	}
	b = binary.AppendUvarint(b, uint64(len(d.Quantiles)))
	for _, q := range d.Quantiles {
		b = appendFloat(b, q.Q)
		b = appendFloat(b, q.Value)
	}
	b = appendTags(b, d.Tags)
	e.body = b
	e.seen(d.Timestamp)
}

// AppendLog appends l.
func (e *Encoder) AppendLog(l *model.Log) {
	b := binary.AppendVarint(e.body, l.Timestamp)
	b = appendString(b, l.Source)
	b = appendString(b, l.RequestID)
	b = appendString(b, l.Level)
	b = binary.AppendUvarint(b, uint64(len(l.Message)))
	b = append(b, l.Message...)
	b = appendTags(b, l.Attrs)
	e.body = b
	e.seen(l.Timestamp)
}

// AppendSpan appends s. The first span with optional fields
// (model.Span.Extended) switches the record to version 2: the spans already
// appended are rewritten with empty optional fields.
func (e *Encoder) AppendSpan(s *model.Span) {
	if !e.ext && s.Extended() {
		e.upgradeSpans()
	}
	b := appendString(e.body, s.Name)
	b = appendString(b, s.TraceID)
	b = appendString(b, s.SpanID)
	b = appendString(b, s.ParentID)
	b = appendString(b, s.Source)
	b = binary.AppendVarint(b, s.Start)
	b = binary.AppendVarint(b, s.Duration)
	b = appendTags(b, s.Tags)
	if e.ext {
		b = append(b, byte(s.Kind), byte(s.StatusCode))
		b = appendString(b, s.StatusMessage)
		b = binary.AppendUvarint(b, uint64(len(s.Events)))
		for i := range s.Events {
			ev := &s.Events[i]
			b = appendString(b, ev.Name)
			b = binary.AppendVarint(b, ev.Timestamp)
			b = appendTags(b, ev.Attrs)
		}
		b = binary.AppendUvarint(b, uint64(len(s.Links)))
		for i := range s.Links {
			l := &s.Links[i]
			b = appendString(b, l.TraceID)
			b = appendString(b, l.SpanID)
			b = appendTags(b, l.Attrs)
		}
	}
	e.body = b
	e.seen(s.Start)
}

// emptySpanExt is the version-2 tail of a span without optional fields:
// kind, status code, status message, events and links all empty.
var emptySpanExt = [5]byte{}

// upgradeSpans rewrites the version-1 span items in the body as version-2
// items. It writes a new buffer, so a copy of the Encoder taken before
// (as Split keeps to undo an append) still sees its own bytes.
func (e *Encoder) upgradeSpans() {
	e.ext = true
	if e.count == 0 || e.signal != SignalSpans {
		return
	}
	out := make([]byte, 0, len(e.body)+len(emptySpanExt)*int(e.count)+256)
	r := reader{b: e.body}
	for i := uint32(0); i < e.count && !r.bad; i++ {
		start := r.off
		r.skipSpanV1()
		out = append(out, e.body[start:r.off]...)
		out = append(out, emptySpanExt[:]...)
	}
	e.body = out
}

// AppendBatch appends every item of b that belongs to this encoder's signal
// and returns how many it appended.
func (e *Encoder) AppendBatch(b *model.Batch) int {
	switch e.signal {
	case SignalMetrics:
		for i := range b.Metrics {
			e.AppendMetric(&b.Metrics[i])
		}
		return len(b.Metrics)
	case SignalDistributions:
		for i := range b.Dists {
			e.AppendDistribution(&b.Dists[i])
		}
		return len(b.Dists)
	case SignalLogs:
		for i := range b.Logs {
			e.AppendLog(&b.Logs[i])
		}
		return len(b.Logs)
	case SignalSpans:
		for i := range b.Spans {
			e.AppendSpan(&b.Spans[i])
		}
		return len(b.Spans)
	}
	return 0
}

// Finish appends the complete record (header and body, compressed with c)
// to dst and returns it. The encoder is unchanged; call Reset to reuse it.
func (e *Encoder) Finish(dst []byte, producer, seq uint64, c Compression) ([]byte, error) {
	h := Header{
		Version: e.Version(), Signal: e.signal, Encoding: e.Encoding(), Compression: c,
		Producer: producer, Seq: seq, Count: e.count, MinTime: e.minT, MaxTime: e.maxT,
	}
	start := len(dst)
	dst = AppendHeader(dst, &h)
	body := e.body
	if e.tab != nil {
		if c == CompressionNone {
			dst = append(e.tab.appendTable(dst), e.body...)
			return finishLen(dst, start)
		}
		body = append(e.tab.appendTable(e.tab.joined[:0]), e.body...)
		e.tab.joined = body
	}
	var err error
	switch c {
	case CompressionNone:
		dst = append(dst, body...)
	case CompressionZstd:
		dst = zstdEncoder().EncodeAll(body, dst)
	case CompressionS2:
		dst = appendS2(dst, body)
	case CompressionGzip:
		dst, err = appendGzip(dst, body)
	default:
		return dst[:start], fmt.Errorf("%w: %d", ErrCompression, c)
	}
	if err != nil {
		return dst[:start], err
	}
	return finishLen(dst, start)
}

// finishLen writes body_len into the header of the record at dst[start:].
func finishLen(dst []byte, start int) ([]byte, error) {
	bodyLen := len(dst) - start - HeaderSize
	if bodyLen > math.MaxUint32 {
		return dst[:start], ErrTooLarge
	}
	binary.LittleEndian.PutUint32(dst[start+44:], uint32(bodyLen))
	return dst, nil
}

// appendS2 appends src as a Snappy block (S2's Snappy-compatible encoder,
// so any Snappy decoder reads it), encoded straight into dst's spare
// capacity when it has enough.
func appendS2(dst, src []byte) []byte {
	n := s2.MaxEncodedLen(len(src))
	dst = slices.Grow(dst, n)
	out := s2.EncodeSnappy(dst[len(dst):len(dst)+n], src)
	return dst[:len(dst)+len(out)]
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func appendTags(b []byte, t model.Tags) []byte {
	b = binary.AppendUvarint(b, uint64(len(t)))
	for _, tag := range t {
		b = appendString(b, tag.Key)
		b = appendString(b, tag.Value)
	}
	return b
}

// The zstd encoder is safe for concurrent EncodeAll calls and costly to
// build, so one is shared (lazily, to keep start-up cheap).
//
// Its window is zstdWindow: a record is compressed on its own, so
// matches reach back at most into the same record, and a record is a
// batch of at most max_batch_bytes (1 MiB by default). The level's
// default window (4 MiB) made the encoder hold a 4.1 MiB history buffer
// for the process's life; 1 MiB holds 1.1 MiB and finds the same matches
// in a default record.
var zstdEnc = sync.OnceValue(func() *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(zstdWindow))
	if err != nil {
		panic(err) // only on invalid options, which are constant
	}
	return enc
})

func zstdEncoder() *zstd.Encoder { return zstdEnc() }

// zstdWindow is the zstd encoder's window (see zstdEnc).
const zstdWindow = 1 << 20

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

func appendGzip(dst, body []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(buf)
	if _, err := w.Write(body); err != nil {
		return dst, fmt.Errorf("wire: gzip: %w", err)
	}
	if err := w.Close(); err != nil {
		return dst, fmt.Errorf("wire: gzip: %w", err)
	}
	return buf.Bytes(), nil
}
