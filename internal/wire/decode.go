package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"unsafe"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/les-streams/les/internal/model"
)

// DefaultMaxBodySize bounds the decompressed body of one record.
const DefaultMaxBodySize = 64 << 20

// Decoder decodes records into a model.Batch. It keeps decompression
// buffers between calls and is not safe for concurrent use.
type Decoder struct {
	// MaxBodySize bounds the decompressed body; 0 means DefaultMaxBodySize.
	MaxBodySize int

	buf    []byte
	zstd   *zstd.Decoder
	gz     *gzip.Reader
	series []seriesEntry // EncodingSeries tables' scratch
	strs   []string
	part   SeriesPart // DecodeSeriesParts' parts
}

// Decode appends the items of rec to dst and returns the record header.
//
// Strings and messages of the appended items alias either rec (for
// uncompressed records) or the decoder's internal buffer; both are valid
// only until the next call to Decode or until rec is reused. Items that must
// live longer are copied by the caller.
func (d *Decoder) Decode(dst *model.Batch, rec []byte) (Header, error) {
	h, body, err := d.open(rec)
	if err != nil {
		return h, err
	}
	if h.Encoding == EncodingSeries {
		return h, d.seriesItems(dst, body, h.Count)
	}
	r := reader{b: body}
	if err := r.items(dst, h.Signal, h.Count, h.Version); err != nil {
		return h, err
	}
	return h, nil
}

// DefaultPartSize is the part size DecodeParts is given by les' own
// consumers: a part's metrics (about 100 bytes each) stay in the core's
// cache while the consumer folds them.
const DefaultPartSize = 4096

// DecodeParts decodes rec as Decode does, but hands its items to fn in
// parts, so that a consumer holds one part's metrics instead of the whole
// record's (about 100 bytes a metric decoded, against 12 encoded). A
// series-encoded metrics record is handed over in parts of at most n
// metrics (DefaultPartSize if n ≤ 0), every other record in one part.
//
// dst must be empty. Every part is dst holding that part's metrics and
// the whole record's tags and series numbers (dst.SeriesN); a part after
// the first has Continues set, and every part but the last has More set,
// so a consumer can remember per-series work for the whole record (the
// items' strings and series numbers stay the same record's across its
// parts). fn must not keep dst or its items past its return, nor change
// them.
//
// A corrupt record is found before anything is handed over: on error, fn
// has not been called. On return, dst is left holding the last part.
// DecodeSeriesParts hands the same parts over by series index.
func (d *Decoder) DecodeParts(dst *model.Batch, rec []byte, n int, fn func(*model.Batch)) (Header, error) {
	h, p, done, err := d.startParts(dst, rec, fn)
	if done {
		return h, err
	}
	dst.SeriesN += uint32(len(d.series))
	if n <= 0 {
		n = DefaultPartSize
	}
	dst.Metrics = slices.Grow(dst.Metrics, min(n, int(h.Count)))
	for first := true; first || p.i < p.count; first = false {
		// Each part overwrites the last one's metrics whole: no clear
		// per part (a part is ~0.4 MB); the tail a shorter last part
		// leaves is cleared below, the rest by the caller's Reset.
		dst.Metrics = dst.Metrics[:0]
		if err := d.appendPoints(dst, &p, uint32(n)); err != nil {
			return h, err // checkPoints passed: cannot happen
		}
		dst.Continues, dst.More = !first, p.i < p.count
		fn(dst)
	}
	clear(dst.Metrics[len(dst.Metrics):cap(dst.Metrics)])
	dst.Continues, dst.More = false, false
	return h, nil
}

// startParts begins DecodeParts and DecodeSeriesParts: a record that is
// not series-encoded is decoded into dst and handed to fn whole (done); a
// series-encoded one has its tables read and its points checked, and p
// is where its points start. done with an error: rec is corrupt, and
// nothing was handed over.
func (d *Decoder) startParts(dst *model.Batch, rec []byte, fn func(*model.Batch)) (h Header, p seriesPoints, done bool, err error) {
	h, body, err := d.open(rec)
	if err != nil {
		return h, p, true, err
	}
	if h.Encoding != EncodingSeries {
		r := reader{b: body}
		if err := r.items(dst, h.Signal, h.Count, h.Version); err != nil {
			return h, p, true, err
		}
		fn(dst)
		return h, p, true, nil
	}
	r, err := d.seriesTables(dst, body, h.Count)
	if err != nil {
		return h, p, true, err
	}
	p = seriesPoints{r: r, count: h.Count, base: dst.SeriesN + 1}
	if err := d.checkPoints(p); err != nil {
		return h, p, true, err
	}
	return h, p, false, nil
}

// open parses rec's header and returns its decompressed body.
func (d *Decoder) open(rec []byte) (Header, []byte, error) {
	h, err := ParseHeader(rec)
	if err != nil {
		return h, nil, err
	}
	body, err := d.body(&h, rec[HeaderSize:])
	return h, body, err
}

func (d *Decoder) limit() int {
	if d.MaxBodySize > 0 {
		return d.MaxBodySize
	}
	return DefaultMaxBodySize
}

func (d *Decoder) body(h *Header, raw []byte) ([]byte, error) {
	switch h.Compression {
	case CompressionNone:
		if len(raw) > d.limit() {
			return nil, ErrTooLarge
		}
		return raw, nil
	case CompressionZstd:
		if d.zstd == nil {
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderMaxMemory(uint64(d.limit())), zstd.WithDecoderLowmem(true))
			if err != nil {
				return nil, fmt.Errorf("wire: zstd: %w", err)
			}
			d.zstd = dec
		}
		out, err := d.zstd.DecodeAll(raw, d.buf[:0])
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		if len(out) > d.limit() {
			return nil, ErrTooLarge
		}
		d.buf = out
		return out, nil
	case CompressionS2:
		n, err := s2.DecodedLen(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		if n > d.limit() {
			return nil, ErrTooLarge
		}
		out, err := s2.Decode(d.buf[:cap(d.buf)], raw)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		d.buf = out
		return out, nil
	case CompressionGzip:
		var err error
		if d.gz == nil {
			d.gz, err = gzip.NewReader(bytes.NewReader(raw))
		} else {
			err = d.gz.Reset(bytes.NewReader(raw))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		w := bytes.NewBuffer(d.buf[:0])
		n, err := io.Copy(w, io.LimitReader(d.gz, int64(d.limit())+1))
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		if n > int64(d.limit()) {
			return nil, ErrTooLarge
		}
		d.buf = w.Bytes()
		return d.buf, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrCompression, h.Compression)
}

// reader walks a body. Every read checks bounds; a short or malformed body
// yields ErrCorrupt, never a panic.
type reader struct {
	b   []byte
	off int
	bad bool
}

func (r *reader) byte() byte {
	if r.off >= len(r.b) {
		r.bad = true
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// uvarint reads a uvarint; one-byte values (lengths and counts below 128,
// nearly all of them) take a short path before binary.Uvarint.
func (r *reader) uvarint() uint64 {
	if r.off < len(r.b) && r.b[r.off] < 0x80 {
		v := uint64(r.b[r.off])
		r.off++
		return v
	}
	return r.uvarintLong()
}

func (r *reader) uvarintLong() uint64 {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.off += n
	return v
}

func (r *reader) float() float64 {
	if len(r.b)-r.off < 8 {
		r.bad = true
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.off:]))
	r.off += 8
	return v
}

// bytes reads a length-prefixed byte string, aliasing the body; a length
// below 128 takes a short path.
func (r *reader) bytes() []byte {
	if r.off < len(r.b) {
		if n := int(r.b[r.off]); n < 0x80 && n < len(r.b)-r.off {
			start := r.off + 1
			r.off = start + n
			return r.b[start:r.off:r.off]
		}
	}
	return r.bytesLong()
}

func (r *reader) bytesLong() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)-r.off) {
		r.bad = true
		return nil
	}
	s := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) string() string {
	b := r.bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// count reads a list length and checks that at least min bytes per element
// remain, so a corrupt length cannot make us allocate a huge slice.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.bad || n > uint64((len(r.b)-r.off)/min) {
		r.bad = true
		return 0
	}
	return int(n)
}

func (r *reader) tags(dst *model.Batch) model.Tags {
	n := r.count(2)
	mark := dst.TagMark()
	for i := 0; i < n && !r.bad; i++ {
		k := r.string()
		v := r.string()
		dst.AddTag(k, v)
	}
	return dst.TagsSince(mark)
}

// skipSpanV1 moves past one version-1 span item.
func (r *reader) skipSpanV1() {
	for range 5 { // name, trace_id, span_id, parent_id, source
		r.bytes()
	}
	r.varint() // start
	r.varint() // duration
	n := r.count(2)
	for i := 0; i < n && !r.bad; i++ {
		r.bytes()
		r.bytes()
	}
}

// spanExt reads the version-2 tail of a span item into s; events and links
// go to dst's arenas.
func (r *reader) spanExt(dst *model.Batch, s *model.Span) {
	s.Kind = model.SpanKind(r.byte())
	s.StatusCode = model.StatusCode(r.byte())
	s.StatusMessage = r.string()
	if n := r.count(3); n > 0 {
		start := len(dst.EventArena)
		for j := 0; j < n && !r.bad; j++ {
			var ev model.SpanEvent
			ev.Name = r.string()
			ev.Timestamp = r.varint()
			ev.Attrs = r.tags(dst)
			dst.EventArena = append(dst.EventArena, ev)
		}
		end := len(dst.EventArena)
		s.Events = dst.EventArena[start:end:end]
	}
	if n := r.count(3); n > 0 {
		start := len(dst.LinkArena)
		for j := 0; j < n && !r.bad; j++ {
			var l model.SpanLink
			l.TraceID = r.string()
			l.SpanID = r.string()
			l.Attrs = r.tags(dst)
			dst.LinkArena = append(dst.LinkArena, l)
		}
		end := len(dst.LinkArena)
		s.Links = dst.LinkArena[start:end:end]
	}
}

func (r *reader) items(dst *model.Batch, sig Signal, count uint32, version uint8) error {
	for i := uint32(0); i < count; i++ {
		switch sig {
		case SignalMetrics:
			var m model.Metric
			m.Kind = model.Kind(r.byte())
			m.Window = model.Window(r.byte())
			m.Name = r.string()
			m.Source = r.string()
			m.Timestamp = r.varint()
			m.Value = r.float()
			m.Tags = r.tags(dst)
			dst.Metrics = append(dst.Metrics, m)
		case SignalDistributions:
			var d model.Distribution
			d.Window = model.Window(r.byte())
			d.Correction = uint32(r.uvarint())
			d.Name = r.string()
			d.Source = r.string()
			d.Timestamp = r.varint()
			d.Count = r.float()
			d.Sum = r.float()
			d.Min = r.float()
			d.Max = r.float()
			n := r.count(16)
			start := len(dst.CentroidArena)
			for j := 0; j < n && !r.bad; j++ {
				dst.CentroidArena = append(dst.CentroidArena, model.Centroid{Value: r.float(), Count: r.float()})
			}
			if n > 0 {
				end := len(dst.CentroidArena)
				d.Centroids = dst.CentroidArena[start:end:end]
			}
			if nq := r.count(16); nq > 0 {
				d.Quantiles = make([]model.Quantile, nq)
				for j := range d.Quantiles {
					d.Quantiles[j] = model.Quantile{Q: r.float(), Value: r.float()}
				}
			}
			d.Tags = r.tags(dst)
			dst.Dists = append(dst.Dists, d)
		case SignalLogs:
			var l model.Log
			l.Timestamp = r.varint()
			l.Source = r.string()
			l.RequestID = r.string()
			l.Level = r.string()
			l.Message = r.bytes()
			l.Attrs = r.tags(dst)
			dst.Logs = append(dst.Logs, l)
		case SignalSpans:
			var s model.Span
			s.Name = r.string()
			s.TraceID = r.string()
			s.SpanID = r.string()
			s.ParentID = r.string()
			s.Source = r.string()
			s.Start = r.varint()
			s.Duration = r.varint()
			s.Tags = r.tags(dst)
			if version >= Version2 {
				r.spanExt(dst, &s)
			}
			dst.Spans = append(dst.Spans, s)
		}
		if r.bad {
			return fmt.Errorf("%w: item %d of %d", ErrCorrupt, i, count)
		}
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b)-r.off)
	}
	return nil
}
