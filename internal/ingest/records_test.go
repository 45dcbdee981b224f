package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// gaugeRecord encodes gauges named names (source fn) as one record.
func gaugeRecord(t *testing.T, producer, seq uint64, names ...string) []byte {
	t.Helper()
	enc := wire.NewEncoder(wire.SignalMetrics)
	for i, n := range names {
		enc.AppendMetric(&model.Metric{Name: n, Source: "fn", Value: float64(i + 1), Timestamp: int64(1e18) + int64(i)})
	}
	b, err := enc.Finish(nil, producer, seq, wire.CompressionZstd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func postRecord(h http.Handler, hdr map[string]string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/v1/records", bytes.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func recordHeaders(origin, sig, part, id string) map[string]string {
	return map[string]string{"Les-Origin": origin, "Les-Signal": sig, "Les-Partition": part, "Les-Record-Id": id,
		"Authorization": "Bearer tok"}
}

func metricValue(t *testing.T, reg *selfmetric.Registry, series string) float64 {
	t.Helper()
	var b strings.Builder
	reg.WritePrometheus(&b)
	for _, ln := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(ln, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestRecordHandlerPublishesAsIs: a valid record whose items are on one
// partition is published byte for byte under its origin and id, and the
// answer comes after the stream stored it.
func TestRecordHandlerPublishesAsIs(t *testing.T) {
	st := mem.New(mem.NewStore(), mem.Config{Partitions: 1})
	reg := selfmetric.New()
	h := NewRecordHandler(RecordConfig{Token: "tok"}, st, reg)
	body := gaugeRecord(t, 0xfeedface, 1, "a", "b", "c")
	w := postRecord(h, recordHeaders("in", "metrics", "5", "feedface-1"), body)
	if w.Code != http.StatusOK || w.Body.String() != `{"published":1,"items":3}`+"\n" {
		t.Fatalf("answer %d %q", w.Code, w.Body.String())
	}
	recs := st.Store().Records()
	if len(recs) != 1 {
		t.Fatalf("%d records stored", len(recs))
	}
	r := recs[0]
	if r.Origin != "in" || r.Signal != wire.SignalMetrics || r.Partition != 0 || r.ID != "feedface-1" || !bytes.Equal(r.Data, body) {
		t.Errorf("stored %s %s %d %s (%d bytes), want in metrics 0 feedface-1 (%d bytes)", r.Origin, r.Signal, r.Partition, r.ID, len(r.Data), len(body))
	}
	if v := metricValue(t, reg, "les_ingest_records_accepted_total"); v != 1 {
		t.Errorf("accepted %v", v)
	}
	if v := metricValue(t, reg, "les_ingest_records_items_total"); v != 3 {
		t.Errorf("items %v", v)
	}
}

// TestRecordHandlerRejects: every refusal has its status, a reason in the
// body and a counted reason, and stores nothing.
func TestRecordHandlerRejects(t *testing.T) {
	good := gaugeRecord(t, 0xab, 2, "x")
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-1] ^= 0xff
	cases := []struct {
		name   string
		method string
		hdr    map[string]string
		body   []byte
		status int
		reason string
		msg    string
	}{
		{"wrong token", "", map[string]string{"Authorization": "Bearer nope", "Les-Origin": "in", "Les-Signal": "metrics", "Les-Record-Id": "ab-2"}, good, 401, "unauthorized", "missing or wrong bearer token"},
		{"no token", "", map[string]string{"Les-Origin": "in", "Les-Signal": "metrics", "Les-Record-Id": "ab-2"}, good, 401, "unauthorized", "bearer token"},
		{"GET", http.MethodGet, recordHeaders("in", "metrics", "0", "ab-2"), nil, 405, "method", "use POST"},
		{"origin", "", recordHeaders("nope", "metrics", "0", "ab-2"), good, 400, "bad_header", `Les-Origin "nope"`},
		{"signal", "", recordHeaders("in", "points", "0", "ab-2"), good, 400, "bad_header", "Les-Signal"},
		{"no id", "", recordHeaders("in", "metrics", "0", ""), good, 400, "bad_header", "Les-Record-Id is required"},
		{"partition", "", recordHeaders("in", "metrics", "-1", "ab-2"), good, 400, "bad_header", "Les-Partition"},
		{"garbage", "", recordHeaders("in", "metrics", "0", "ab-2"), []byte(strings.Repeat("cpu.load 1 source=x\n", 5)), 400, "bad_record", "bad magic"},
		{"corrupt body", "", recordHeaders("in", "metrics", "0", "ab-2"), corrupt, 400, "bad_record", "not a valid les wire record"},
		{"truncated", "", recordHeaders("in", "metrics", "0", "ab-2"), good[:len(good)-3], 400, "bad_record", "body length"},
		{"id mismatch", "", recordHeaders("in", "metrics", "0", "ab-3"), good, 400, "header_mismatch", "the record's header metrics ab-2"},
		{"signal mismatch", "", recordHeaders("in", "logs", "0", "ab-2"), good, 400, "header_mismatch", "headers say logs"},
		{"too large", "", recordHeaders("in", "metrics", "0", "ab-2"), make([]byte, 5000), 413, "too_large", "larger than 4096"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := mem.New(mem.NewStore(), mem.Config{})
			reg := selfmetric.New()
			h := NewRecordHandler(RecordConfig{Token: "tok", MaxBody: 4096}, st, reg)
			r := httptest.NewRequest(c.method, "/v1/records", bytes.NewReader(c.body))
			if c.method == "" {
				r.Method = http.MethodPost
			}
			for k, v := range c.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.msg) {
				t.Errorf("answer %d %q, want %d containing %q", w.Code, w.Body.String(), c.status, c.msg)
			}
			if v := metricValue(t, reg, fmt.Sprintf(`les_ingest_records_rejected_total{reason=%q}`, c.reason)); v != 1 {
				t.Errorf("rejected{reason=%q} = %v, want 1", c.reason, v)
			}
			if st.Store().Len() != 0 {
				t.Errorf("%d records stored", st.Store().Len())
			}
		})
	}
}

// TestRecordHandlerStreamDown: a stream that fails the publish gives 503
// with Retry-After; one that refuses the size gives 413.
func TestRecordHandlerStreamDown(t *testing.T) {
	store := mem.NewStore()
	store.SetPublishFault(func(context.Context, []stream.Record) error { return errors.New("no quorum") })
	reg := selfmetric.New()
	h := NewRecordHandler(RecordConfig{}, mem.New(store, mem.Config{}), reg)
	hdr := recordHeaders("in", "metrics", "0", "ab-2")
	w := postRecord(h, hdr, gaugeRecord(t, 0xab, 2, "x"))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "no quorum") {
		t.Errorf("stream down: %d %v %q", w.Code, w.Header(), w.Body.String())
	}
	if v := metricValue(t, reg, `les_ingest_records_rejected_total{reason="stream_unavailable"}`); v != 1 {
		t.Errorf("stream_unavailable %v", v)
	}
	store.SetPublishFault(nil)
	w = postRecord(h, hdr, gaugeRecord(t, 0xab, 2, "x"))
	if w.Code != http.StatusOK || store.Len() != 1 {
		t.Errorf("after recovery: %d, %d stored", w.Code, store.Len())
	}
}

// TestRecordHandlerSplits: a record whose items belong to several of the
// stream's partitions (the agent has another stream.partitions) is split
// into one record per partition; each item lands on the partition the
// wire partition function gives it, and a second delivery of the same
// record yields records with the same ids.
func TestRecordHandlerSplits(t *testing.T) {
	const parts = 3
	store := mem.NewStore()
	st := mem.New(store, mem.Config{Partitions: parts})
	reg := selfmetric.New()
	h := NewRecordHandler(RecordConfig{}, st, reg)
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("series.%d", i))
	}
	body := gaugeRecord(t, 0xfeedface, 9, names...)
	hdr := recordHeaders("agg", "metrics", "0", "feedface-9")
	for range 2 {
		if w := postRecord(h, hdr, body); w.Code != http.StatusOK {
			t.Fatalf("answer %d %q", w.Code, w.Body.String())
		}
	}
	recs := store.Records()
	if len(recs) != 2*parts {
		t.Fatalf("%d records stored, want %d (one per partition, twice)", len(recs), 2*parts)
	}
	ids := map[string]int{}
	seen := map[string]int{}
	var dec wire.Decoder
	for _, r := range recs {
		ids[r.ID]++
		if r.Origin != "agg" || r.ID == "feedface-9" {
			t.Errorf("part %s origin %s", r.ID, r.Origin)
		}
		var b model.Batch
		hd, err := dec.Decode(&b, r.Data)
		if err != nil || hd.ID() != r.ID || hd.Compression != wire.CompressionZstd {
			t.Fatalf("part %s: %v (header id %s, %v)", r.ID, err, hd.ID(), hd.Compression)
		}
		for i := range b.Metrics {
			m := &b.Metrics[i]
			if p := wire.MetricPartition(m, parts); p != r.Partition {
				t.Errorf("%s on partition %d, belongs on %d", m.Name, r.Partition, p)
			}
			seen[strings.Clone(m.Name)]++
		}
	}
	for id, n := range ids {
		if n != 2 {
			t.Errorf("id %s stored %d times, want 2 (the same ids for the same record)", id, n)
		}
	}
	for _, n := range names {
		if seen[n] != 2 {
			t.Errorf("%s seen %d times, want 2", n, seen[n])
		}
	}
	if v := metricValue(t, reg, "les_ingest_records_split_total"); v != 2 {
		t.Errorf("split %v", v)
	}
}

// TestRecordHandlerSplitsOversized: a record larger than the stream's
// largest record is split to fit rather than refused.
func TestRecordHandlerSplitsOversized(t *testing.T) {
	store := mem.NewStore()
	st := mem.New(store, mem.Config{MaxRecordBytes: 8 << 10})
	h := NewRecordHandler(RecordConfig{}, st, selfmetric.New())
	enc := wire.NewEncoder(wire.SignalLogs)
	for i := range 100 {
		enc.AppendLog(&model.Log{Timestamp: int64(i), Source: "fn", Message: bytes.Repeat([]byte{'a' + byte(i%26)}, 200)})
	}
	body, err := enc.Finish(nil, 0xcafe, 1, wire.CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	w := postRecord(h, recordHeaders("in", "logs", "0", "cafe-1"), body)
	if w.Code != http.StatusOK {
		t.Fatalf("answer %d %q", w.Code, w.Body.String())
	}
	var dec wire.Decoder
	n := 0
	for _, r := range store.Records() {
		if len(r.Data) > 8<<10 {
			t.Errorf("record of %d bytes", len(r.Data))
		}
		var b model.Batch
		if _, err := dec.Decode(&b, r.Data); err != nil {
			t.Fatal(err)
		}
		for _, l := range b.Logs {
			if l.Timestamp != int64(n) || len(l.Message) != 200 {
				t.Fatalf("log %d: timestamp %d, %d bytes", n, l.Timestamp, len(l.Message))
			}
			n++
		}
	}
	if n != 100 || store.Len() < 3 {
		t.Errorf("%d logs in %d records", n, store.Len())
	}
}

// TestSplitID pins the derived ids: a function of the original id and
// the part index only.
func TestSplitID(t *testing.T) {
	p0, s0 := SplitID(0xfeedface, 9, 0)
	p1, s1 := SplitID(0xfeedface, 9, 1)
	if p0 != p1 || p0 == 0xfeedface || s0 != 9<<16 || s1 != 9<<16+1 {
		t.Errorf("SplitID: %x-%d, %x-%d", p0, s0, p1, s1)
	}
	if q, _ := SplitID(0xfeedfacf, 9, 0); q == p0 {
		t.Errorf("producers collide")
	}
}
