package wire

import (
	"fmt"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/model"
)

func TestSplitRoutesAndBounds(t *testing.T) {
	var b model.Batch
	for i := range 3000 {
		b.Metrics = append(b.Metrics, model.Metric{Name: "gauge", Value: float64(i), Timestamp: int64(i)})
		b.Metrics = append(b.Metrics, model.Metric{Name: "sample", Value: 1, Kind: model.Sample, Timestamp: int64(i)})
	}
	b.Dists = append(b.Dists, model.Distribution{Name: "d", Count: 1, Centroids: []model.Centroid{{Value: 1, Count: 1}}})
	b.Logs = append(b.Logs, model.Log{Message: []byte(strings.Repeat("x", 5000))}) // larger than the limit alone
	const max = 4096
	parts := Split(&b, "in", "agg", max, 1)
	counts := map[string]int{}
	for _, p := range parts {
		if p.Enc.Size() > max && p.Enc.Count() > 1 {
			t.Errorf("%s/%v part of %d items is %d bytes, over %d", p.Origin, p.Enc.Signal(), p.Enc.Count(), p.Enc.Size(), max)
		}
		counts[p.Origin+"/"+p.Enc.Signal().String()] += p.Enc.Count()
		// Every part decodes to exactly its items.
		rec, err := p.Enc.Finish(nil, 1, 1, CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		var d Decoder
		var got model.Batch
		h, err := d.Decode(&got, rec)
		if err != nil || int(h.Count) != got.Len() {
			t.Fatalf("part does not decode: %v (%d items, header %d)", err, got.Len(), h.Count)
		}
		if got.Len() > 0 && len(got.Metrics) > 0 && (h.MinTime != got.Metrics[0].Timestamp || h.MaxTime != got.Metrics[len(got.Metrics)-1].Timestamp) {
			t.Fatalf("time range %d..%d does not match the items", h.MinTime, h.MaxTime)
		}
	}
	want := map[string]int{"in/metrics": 3000, "agg/metrics": 3000, "agg/distributions": 1, "in/logs": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: %d items, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
}

// TestSplitPartitions: with several partitions every part holds items of
// one partition only, the one the partition function names.
func TestSplitPartitions(t *testing.T) {
	var b model.Batch
	for i := range 200 {
		b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("m%d", i%17), Source: fmt.Sprintf("s%d", i%5), Value: 1, Timestamp: 1})
		b.Logs = append(b.Logs, model.Log{Source: fmt.Sprintf("fn-%d", i%9), Message: []byte("x"), Timestamp: 1})
	}
	parts := Split(&b, "in", "agg", 1<<20, 4)
	seen := map[int]bool{}
	n := 0
	for _, p := range parts {
		seen[p.Partition] = true
		var got model.Batch
		data, err := p.Enc.Finish(nil, 1, 1, CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		var d Decoder
		if _, err := d.Decode(&got, data); err != nil {
			t.Fatal(err)
		}
		for i := range got.Metrics {
			if q := MetricPartition(&got.Metrics[i], 4); q != p.Partition {
				t.Fatalf("metric of partition %d in part of partition %d", q, p.Partition)
			}
		}
		for i := range got.Logs {
			if q := LogPartition(&got.Logs[i], 4); q != p.Partition {
				t.Fatalf("log of partition %d in part of partition %d", q, p.Partition)
			}
		}
		n += got.Len()
	}
	if n != 400 || len(seen) < 2 {
		t.Fatalf("%d items over %d partitions, want 400 over several", n, len(seen))
	}
}
