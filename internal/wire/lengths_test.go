package wire

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/internal/model"
)

// TestDecodeLengths: strings and lists on both sides of the one-byte
// uvarint (127/128) decode as encoded, and every truncation of such a
// record is refused (never a panic, never a short item).
func TestDecodeLengths(t *testing.T) {
	var want model.Batch
	for i, n := range []int{0, 1, 126, 127, 128, 129, 300, 16384} {
		s := strings.Repeat("x", n)
		m := model.Metric{Name: "m" + s, Source: s, Kind: model.Counter, Window: model.WindowMinute, Value: float64(n), Timestamp: int64(n)}
		ntags := []int{0, 1, 127, 128, 130, 2, 1, 0}[i]
		for j := range ntags {
			v := s
			if ntags > 2 {
				v = "v"
			}
			m.Tags = append(m.Tags, model.Tag{Key: string(rune('a' + j%26)), Value: v})
		}
		want.Metrics = append(want.Metrics, m)
	}
	e := NewEncoder(SignalMetrics)
	for i := range want.Metrics {
		e.AppendMetric(&want.Metrics[i])
	}
	rec, err := e.Finish(nil, 1, 1, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	var got model.Batch
	if _, err := d.Decode(&got, rec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Metrics, got.Metrics, batchOpts); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	// Truncations of the record without the 16 KiB item (which makes the
	// walk quadratic and slow), so the test stays fast.
	e.Reset()
	for i := range want.Metrics[:len(want.Metrics)-1] {
		e.AppendMetric(&want.Metrics[i])
	}
	if rec, err = e.Finish(nil, 1, 2, CompressionNone); err != nil {
		t.Fatal(err)
	}
	for i := HeaderSize; i < len(rec); i++ {
		short := append([]byte(nil), rec[:i]...)
		// Keep the header's body length consistent, so the body walk
		// itself must find the truncation.
		h, _ := ParseHeader(rec)
		h.BodyLen = uint32(i - HeaderSize)
		copy(short, AppendHeader(nil, &h))
		got.Reset()
		if _, err := d.Decode(&got, short); err == nil {
			t.Fatalf("record truncated to %d of %d bytes decoded: %d items", i, len(rec), len(got.Metrics))
		}
	}
}
