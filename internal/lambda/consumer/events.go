package consumer

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/wire"
)

// HandleKinesis handles one event of a Kinesis event source mapping with
// ReportBatchItemFailures. The records are handled in order; the response
// lists the sequence number of the first record that was not delivered
// (a sink failed for good, the deadline came, publishing failed, or a
// record of an unknown wire version), so the mapping checkpoints before it
// and retries from there. Everything before it is delivered. The returned
// error is always nil: a failure is in the response, where the mapping
// acts on it record by record. ev is not kept.
func (h *Handler) HandleKinesis(ctx context.Context, ev events.KinesisEvent) (events.KinesisEventResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	items := make([]item, len(ev.Records))
	for i := range ev.Records {
		r := &ev.Records[i]
		origin, sig, _, ok := kinesis.ParsePartitionKey(r.Kinesis.PartitionKey)
		items[i] = item{origin: origin, signal: sig, keyOK: ok, partition: shardOf(r),
			pos: r.Kinesis.SequenceNumber, data: r.Kinesis.Data}
	}
	out := h.process(ctx, items)
	h.summary("kinesis", items, out)
	resp := events.KinesisEventResponse{BatchItemFailures: []events.KinesisBatchItemFailure{}}
	if out.failedAt >= 0 {
		resp.BatchItemFailures = []events.KinesisBatchItemFailure{{ItemIdentifier: items[out.failedAt].pos}}
	}
	return resp, nil
}

// shardOf returns the shard id of a Kinesis event record: the part of the
// eventID before the colon ("shardId-000000000006:4959…").
func shardOf(r *events.KinesisEventRecord) string {
	shard, _, _ := strings.Cut(r.EventID, ":")
	return shard
}

// HandleKafka handles one event of an MSK or self-managed Kafka event
// source mapping whose topics are les topics (<prefix>.<origin>.<signal>).
// Each topic partition's records are handled in offset order. Kafka
// mappings retry a whole batch on error (partial batch responses exist
// only in provisioned mode), so a failure returns an error and the batch
// comes again; records already delivered are delivered again (sinks that
// know record ids, like the file sink, skip them). ev is not kept.
func (h *Handler) HandleKafka(ctx context.Context, ev events.KafkaEvent) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var items []item
	for _, key := range slices.Sorted(maps.Keys(ev.Records)) {
		recs := ev.Records[key]
		for i := range recs {
			r := &recs[i]
			origin, sig, ok := h.parseTopic(r.Topic)
			it := item{origin: origin, signal: sig, keyOK: ok,
				partition: fmt.Sprintf("%s/%d", r.Topic, r.Partition), pos: fmt.Sprint(r.Offset)}
			data, err := base64.StdEncoding.DecodeString(r.Value)
			if err != nil {
				it.keyOK = false // counted as foreign below: not what les writes
			}
			it.data = data
			items = append(items, it)
		}
	}
	out := h.process(ctx, items)
	h.summary("kafka", items, out)
	if out.failedAt >= 0 {
		it := &items[out.failedAt]
		return fmt.Errorf("les-consumer: record %s@%s not delivered (%s): %w", it.partition, it.pos, out.reason, out.err)
	}
	return nil
}

// parseTopic splits a les Kafka topic, <prefix>.<origin>.<signal>.
func (h *Handler) parseTopic(topic string) (origin string, sig wire.Signal, ok bool) {
	rest, ok := strings.CutPrefix(topic, h.cfg.TopicPrefix+".")
	if !ok {
		return "", 0, false
	}
	origin, name, ok := strings.Cut(rest, ".")
	if !ok || !stream.ValidOrigin(origin) {
		return "", 0, false
	}
	sig, err := wire.ParseSignal(name)
	if err != nil {
		return "", 0, false
	}
	return origin, sig, true
}

// summary logs one line per invocation: what was done and, when a record
// failed, which and why.
func (h *Handler) summary(source string, items []item, out outcome) {
	args := []any{"source", source, "records", len(items), "done", out.records, "items", out.items}
	for _, r := range slices.Sorted(maps.Keys(out.rejects)) {
		args = append(args, "rejected_"+r, out.rejects[r])
	}
	if out.failedAt < 0 {
		h.log.Info("batch delivered", args...)
		return
	}
	it := &items[out.failedAt]
	args = append(args, "failed_partition", it.partition, "failed_pos", it.pos, "reason", out.reason)
	if out.err != nil {
		args = append(args, "err", out.err)
	}
	h.log.Warn("batch partly delivered; the mapping retries from the failed record", args...)
}
