package promrw

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/snappy"
)

// A minimal remote-write decoder for tests, written from prompb's .proto
// files (field numbers and wire types), independent of the encoder.

type wSample struct {
	V  float64
	Ms int64
}

type wSpan struct {
	Offset int32
	Length uint32
}

type wHistogram struct {
	Count, ZeroCount     uint64
	Sum, ZeroThreshold   float64
	Schema               int32
	PosSpans, NegSpans   []wSpan
	PosDeltas, NegDeltas []int64
	ResetHint            uint64
	Ms                   int64
}

type wSeries struct {
	Labels     [][2]string // in wire order
	Samples    []wSample
	Histograms []wHistogram
}

func (s wSeries) label(name string) string {
	for _, l := range s.Labels {
		if l[0] == name {
			return l[1]
		}
	}
	return ""
}

// key renders the labels as name{a="b",...} in wire order.
func (s wSeries) key() string {
	var b strings.Builder
	b.WriteString(s.label("__name__"))
	b.WriteByte('{')
	first := true
	for _, l := range s.Labels {
		if l[0] == "__name__" {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%s=%q", l[0], l[1])
	}
	b.WriteByte('}')
	return b.String()
}

type pbReader struct {
	b   []byte
	err error
}

func (r *pbReader) varint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad varint")
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *pbReader) field() (num int, wt int) {
	k := r.varint()
	return int(k >> 3), int(k & 7)
}

func (r *pbReader) bytes() []byte {
	n := int(r.varint())
	if n > len(r.b) {
		r.err = fmt.Errorf("truncated")
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *pbReader) fixed64() uint64 {
	if len(r.b) < 8 {
		r.err = fmt.Errorf("truncated")
		r.b = nil
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *pbReader) skip(wt int) {
	switch wt {
	case 0:
		r.varint()
	case 1:
		r.fixed64()
	case 2:
		r.bytes()
	case 5:
		r.b = r.b[4:]
	default:
		r.err = fmt.Errorf("wire type %d", wt)
		r.b = nil
	}
}

func unzig(v uint64) int64 { return int64(v>>1) ^ -int64(v&1) }

func decodeWriteRequest(raw []byte) ([]wSeries, error) {
	var out []wSeries
	r := &pbReader{b: raw}
	for len(r.b) > 0 && r.err == nil {
		num, wt := r.field()
		if num != 1 || wt != 2 {
			r.skip(wt)
			continue
		}
		var s wSeries
		tr := &pbReader{b: r.bytes()}
		for len(tr.b) > 0 && tr.err == nil {
			num, wt := tr.field()
			switch {
			case num == 1 && wt == 2:
				lr := &pbReader{b: tr.bytes()}
				var l [2]string
				for len(lr.b) > 0 && lr.err == nil {
					num, wt := lr.field()
					if (num == 1 || num == 2) && wt == 2 {
						l[num-1] = string(lr.bytes())
					} else {
						lr.skip(wt)
					}
				}
				s.Labels = append(s.Labels, l)
			case num == 2 && wt == 2:
				sr := &pbReader{b: tr.bytes()}
				var smp wSample
				for len(sr.b) > 0 && sr.err == nil {
					num, wt := sr.field()
					switch {
					case num == 1 && wt == 1:
						smp.V = math.Float64frombits(sr.fixed64())
					case num == 2 && wt == 0:
						smp.Ms = int64(sr.varint())
					default:
						sr.skip(wt)
					}
				}
				s.Samples = append(s.Samples, smp)
			case num == 4 && wt == 2:
				s.Histograms = append(s.Histograms, decodeHistogram(tr.bytes()))
			default:
				tr.skip(wt)
			}
		}
		if tr.err != nil {
			return nil, tr.err
		}
		out = append(out, s)
	}
	return out, r.err
}

func decodeHistogram(b []byte) wHistogram {
	var h wHistogram
	r := &pbReader{b: b}
	spans := func(b []byte) wSpan {
		var sp wSpan
		sr := &pbReader{b: b}
		for len(sr.b) > 0 && sr.err == nil {
			num, wt := sr.field()
			switch num {
			case 1:
				sp.Offset = int32(unzig(sr.varint()))
			case 2:
				sp.Length = uint32(sr.varint())
			default:
				sr.skip(wt)
			}
		}
		return sp
	}
	packed := func(b []byte) []int64 {
		var out []int64
		pr := &pbReader{b: b}
		for len(pr.b) > 0 && pr.err == nil {
			out = append(out, unzig(pr.varint()))
		}
		return out
	}
	for len(r.b) > 0 && r.err == nil {
		num, wt := r.field()
		switch num {
		case 1:
			h.Count = r.varint()
		case 3:
			h.Sum = math.Float64frombits(r.fixed64())
		case 4:
			h.Schema = int32(unzig(r.varint()))
		case 5:
			h.ZeroThreshold = math.Float64frombits(r.fixed64())
		case 6:
			h.ZeroCount = r.varint()
		case 8:
			h.NegSpans = append(h.NegSpans, spans(r.bytes()))
		case 9:
			h.NegDeltas = append(h.NegDeltas, packed(r.bytes())...)
		case 11:
			h.PosSpans = append(h.PosSpans, spans(r.bytes()))
		case 12:
			h.PosDeltas = append(h.PosDeltas, packed(r.bytes())...)
		case 14:
			h.ResetHint = r.varint()
		case 15:
			h.Ms = int64(r.varint())
		default:
			r.skip(wt)
		}
	}
	return h
}

// buckets expands spans and deltas into bucket index → count.
func buckets(spans []wSpan, deltas []int64) map[int32]int64 {
	out := map[int32]int64{}
	idx, k := int32(0), 0
	var count int64
	for i, sp := range spans {
		if i == 0 {
			idx = sp.Offset
		} else {
			idx += sp.Offset
		}
		for range sp.Length {
			count += deltas[k]
			k++
			if count != 0 {
				out[idx] = count
			}
			idx++
		}
	}
	return out
}

// receiver is an httptest remote-write endpoint. Its handler decides the
// answer for each decoded request; accepted series are kept.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	bodies   [][]wSeries // every request decoded, answered or not
	stored   []wSeries   // series of accepted requests
	// answer returns the status and body for a request (nil: 204).
	answer func(n int, series []wSeries) (int, string)
}

func newReceiver(t *testing.T, answer func(n int, series []wSeries) (int, string)) *receiver {
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, "snappy: "+err.Error(), http.StatusBadRequest)
		return
	}
	series, err := decodeWriteRequest(raw)
	if err != nil {
		http.Error(w, "proto: "+err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	n := len(rc.bodies)
	rc.requests = append(rc.requests, r)
	rc.bodies = append(rc.bodies, series)
	answer := rc.answer
	rc.mu.Unlock()
	code, msg := http.StatusNoContent, ""
	if answer != nil {
		if c, m := answer(n, series); c != 0 {
			code, msg = c, m
		}
	}
	if code/100 == 2 {
		rc.mu.Lock()
		rc.stored = append(rc.stored, series...)
		rc.mu.Unlock()
		w.WriteHeader(code)
		return
	}
	http.Error(w, msg, code)
}

// samples returns the stored float samples as "key value@ms" lines, sorted.
func (rc *receiver) samples() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, s := range rc.stored {
		for _, x := range s.Samples {
			out = append(out, fmt.Sprintf("%s %g@%d", s.key(), x.V, x.Ms))
		}
	}
	sort.Strings(out)
	return out
}

func (rc *receiver) numRequests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.bodies)
}
