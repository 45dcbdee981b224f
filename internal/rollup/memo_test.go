package rollup

import (
	"fmt"
	"testing"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// counters returns the value of every counter window emitted, by name and
// source.
func counters(out *model.Batch) map[string]float64 {
	got := map[string]float64{}
	for _, m := range out.Metrics {
		if m.Kind == model.Counter {
			got[m.Name+"/"+m.Source] += m.Value
		}
	}
	return got
}

// TestKeyMemoSharedMemory: points whose name, source and tags are the same
// memory (as the wire series encoding decodes them) aggregate as one
// series, and the memo never merges what differs: another source or tags
// over the same name memory, or another kind.
func TestKeyMemoSharedMemory(t *testing.T) {
	r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute}})
	name, srcA, srcB := "hits", "a", "b"
	tags := model.Tags{{Key: "env", Value: "prod"}}
	var ms []model.Metric
	for i := range 30 {
		m := model.Metric{Name: name, Source: srcA, Tags: tags, Kind: model.Counter, Value: 1, Timestamp: t0 + int64(i)}
		switch i % 3 {
		case 1:
			m.Source = srcB // same name memory, other source
		case 2:
			m.Tags = tags[:0] // same tags memory, no tags
		}
		ms = append(ms, m)
	}
	ms = append(ms, model.Metric{Name: name, Source: srcA, Tags: tags, Kind: model.Sample, Value: 5, Timestamp: t0})
	add(r, t0, ms...)
	var out model.Batch
	r.Flush(&out)
	got := map[string]float64{}
	for _, m := range out.Metrics {
		got[m.Name+"/"+m.Source+"/"+fmt.Sprint(len(m.Tags))] += m.Value
	}
	want := map[string]float64{"hits/a/1": 10, "hits/b/1": 10, "hits/a/0": 10}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(out.Dists) != 1 || out.Dists[0].Count != 1 {
		t.Errorf("the sample of the same memory is its own series: %+v", out.Dists)
	}
}

// TestKeyMemoReusedMemory: the next batch may reuse the previous one's
// memory for other series (the wire decoder reuses its buffer), so a key
// remembered in one Add is never used in the next.
func TestKeyMemoReusedMemory(t *testing.T) {
	r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute}})
	buf := []byte("aaaa")
	name := unsafe.String(&buf[0], len(buf))
	add(r, t0, model.Metric{Name: name, Source: "s", Kind: model.Counter, Value: 1, Timestamp: t0})
	copy(buf, "bbbb") // same memory, another series
	add(r, t0, model.Metric{Name: name, Source: "s", Kind: model.Counter, Value: 2, Timestamp: t0})
	var out model.Batch
	r.Flush(&out)
	got := counters(&out)
	if got["aaaa/s"] != 1 || got["bbbb/s"] != 2 || len(got) != 2 {
		t.Fatalf("got %v, want aaaa/s=1 bbbb/s=2", got)
	}
}
