package wire

import "github.com/les-streams/les/internal/model"

// Part is the items of one record-to-be: the origin and logical partition
// it is published under and its encoder.
type Part struct {
	Origin    string
	Partition int
	Enc       *Encoder
}

// Split encodes the items of batch into parts, one or more per (origin,
// signal): metrics to deliver as they are, logs and spans under origin;
// raw input of the rollup (model.Metric.Aggregated) and distributions under
// aggOrigin ("" means origin). Items are spread over partitions logical
// partitions by the partition function (MetricPartition and the others). A
// part's body stays within maxBytes unless a single item is larger. The
// parts own their bytes; batch is not kept.
func Split(batch *model.Batch, origin, aggOrigin string, maxBytes, partitions int) []Part {
	if aggOrigin == "" {
		aggOrigin = origin
	}
	var out []Part
	// add appends one item to the newest part of (o, sig), starting a new
	// part when the item would take that one past maxBytes.
	add := func(o string, sig Signal, p int, appendItem func(*Encoder)) {
		var e *Encoder
		for i := len(out) - 1; i >= 0; i-- {
			if out[i].Origin == o && out[i].Enc.signal == sig && out[i].Partition == p {
				e = out[i].Enc
				break
			}
		}
		if e != nil {
			mk := e.mark()
			appendItem(e)
			if e.Size() <= maxBytes || mk.count == 0 {
				return
			}
			e.undo(mk)
		}
		e = NewEncoder(sig)
		out = append(out, Part{Origin: o, Partition: p, Enc: e})
		appendItem(e)
	}
	for i := range batch.Metrics {
		m := &batch.Metrics[i]
		o := origin
		if m.Aggregated() {
			o = aggOrigin
		}
		add(o, SignalMetrics, MetricPartition(m, partitions), func(e *Encoder) { e.AppendMetric(m) })
	}
	for i := range batch.Dists {
		d := &batch.Dists[i]
		add(aggOrigin, SignalDistributions, DistPartition(d, partitions), func(e *Encoder) { e.AppendDistribution(d) })
	}
	for i := range batch.Logs {
		l := &batch.Logs[i]
		add(origin, SignalLogs, LogPartition(l, partitions), func(e *Encoder) { e.AppendLog(l) })
	}
	for i := range batch.Spans {
		s := &batch.Spans[i]
		add(origin, SignalSpans, SpanPartition(s, partitions), func(e *Encoder) { e.AppendSpan(s) })
	}
	return out
}
