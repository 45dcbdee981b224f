// Package kafkalite is a small Kafka producer for the Lambda extension: it
// publishes les records to the topics and partitions internal/stream/kafka
// reads, over the Kafka protocol spoken directly (franz-go's kmsg encodes
// the few requests it sends), so that kafka:// fits the layer's 10 MB
// budget (ADR 0005). It only publishes: Consume and Lag are unsupported.
// README.md documents what it guarantees and how it differs from the full
// backend.
package kafkalite

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// headerID is the record header carrying stream.Record.ID, as in
// internal/stream/kafka.
const headerID = "les-id"

// Deps is what the caller supplies to Open.
type Deps struct {
	Log     *slog.Logger         // warnings (nil: discard)
	Metrics *selfmetric.Registry // les_stream_* counters, backend="kafka" (nil: private)
}

// Stream publishes to Kafka. It is safe for concurrent use; Publish calls
// run one at a time (the idempotent producer's sequence numbers must reach
// each partition in the order they were assigned).
type Stream struct {
	cfg        Config
	partitions int
	log        *slog.Logger
	dc         dialConfig

	publishErrors  *metrics.Counter
	publishRetries *metrics.Counter

	closeCtx context.Context
	closeFn  context.CancelFunc

	sem chan struct{} // held by Publish and Close

	// Guarded by sem.
	closed     bool
	conns      map[string]*conn // by address
	brokers    map[int32]string // node id → host:port
	controller int32
	topics     map[string][]int32 // topic → leader node of each partition (-1: none)
	pid        int64              // producer id, -1: none yet
	epoch      int16
	noIdem     bool            // InitProducerID refused: publish without idempotence
	seq        map[tp]int32    // next sequence number of each partition
	dirty      bool            // a batch's outcome is unknown: new producer id first
	warned     map[string]bool // topics with fewer partitions than the stream

	lastRoundErr error // the last retriable failure of a round
}

type tp struct {
	topic string
	part  int32
}

// Open validates cfg and returns a stream of partitions logical
// partitions. It does no network I/O: brokers are dialled by the first
// Publish. It fails only for an invalid configuration or unreadable TLS
// or password files.
func Open(ctx context.Context, cfg Config, partitions int, deps Deps) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if partitions <= 0 || partitions > 1<<20 {
		return nil, fmt.Errorf("kafka: %d logical partitions; want at least 1", partitions)
	}
	dc := dialConfig{clientID: cfg.ClientID}
	if cfg.TLS.Enabled {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, err
		}
		dc.tls = tc
	}
	if cfg.SASL.Mechanism != "" {
		m, err := cfg.SASL.Auth()
		if err != nil {
			return nil, err
		}
		dc.sasl = m
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Metrics
	if reg == nil {
		reg = selfmetric.New()
	}
	s := &Stream{cfg: cfg, partitions: partitions, log: log, dc: dc,
		publishErrors:  reg.Counter("les_stream_publish_errors_total", "backend", "kafka"),
		publishRetries: reg.Counter("les_stream_publish_retries_total", "backend", "kafka"),
		sem:            make(chan struct{}, 1),
		conns:          map[string]*conn{}, brokers: map[int32]string{}, controller: -1,
		topics: map[string][]int32{}, pid: -1, seq: map[tp]int32{}, warned: map[string]bool{},
	}
	s.closeCtx, s.closeFn = context.WithCancel(context.WithoutCancel(ctx))
	return s, nil
}

// Capabilities implements stream.Stream. DedupWindow is 0: the idempotent
// producer drops duplicates of its own retries within one Publish call,
// but a record published again by a new call is stored again.
func (s *Stream) Capabilities() stream.Capabilities {
	return stream.Capabilities{Backend: "kafka", Partitions: s.partitions, MaxRecordBytes: s.cfg.MaxRecordBytes}
}

// Consume is not supported: this package only publishes.
func (s *Stream) Consume(context.Context, stream.ConsumeOptions, stream.Handler) error {
	return fmt.Errorf("kafkalite: consume: %w", errors.ErrUnsupported)
}

// Lag is not supported: this package only publishes.
func (s *Stream) Lag(context.Context, stream.LagQuery) (uint64, error) {
	return 0, fmt.Errorf("kafkalite: lag: %w", errors.ErrUnsupported)
}

// Close fails a running Publish with stream.ErrClosed, waits for it and
// closes the connections. It is idempotent.
func (s *Stream) Close() error {
	s.closeFn()
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	s.closed = true
	for a, c := range s.conns {
		c.close()
		delete(s.conns, a)
	}
	return nil
}

// Publish implements stream.Stream: it sends every record to topic
// <prefix>.<origin>.<signal>, Kafka partition = the logical partition
// (modulo a smaller topic's partition count), key = the logical partition
// in decimal, header les-id = the record id, with acks=all, exactly as
// internal/stream/kafka does, and returns nil once all are acknowledged.
// It is bounded by ctx and produce_timeout. Retriable errors (not leader,
// not enough replicas, a dropped connection) are retried with the same
// producer id and sequence numbers, so the broker drops a batch it already
// stored, and counted in les_stream_publish_retries_total. A record whose
// Data exceeds max_record_bytes, or that a broker refuses as too large,
// fails with an error wrapping stream.ErrTooLarge. On error some records
// may be stored; the next Publish starts a new producer id, so publishing
// them again stores them again (consumers de-duplicate by record id).
func (s *Stream) Publish(ctx context.Context, recs ...stream.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		r := &recs[i]
		if int64(len(r.Data)) > s.cfg.MaxRecordBytes {
			s.publishErrors.Inc()
			return fmt.Errorf("kafka: %w: record %s is %d bytes, max_record_bytes is %d", stream.ErrTooLarge, r.ID, len(r.Data), s.cfg.MaxRecordBytes)
		}
		if r.Partition < 0 || r.Partition >= s.partitions {
			return fmt.Errorf("kafka: record %s: partition %d out of range [0,%d)", r.ID, r.Partition, s.partitions)
		}
		if !stream.ValidOrigin(r.Origin) {
			return fmt.Errorf("kafka: record %s: unknown origin %q", r.ID, r.Origin)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	defer context.AfterFunc(s.closeCtx, cancel)()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		s.publishErrors.Inc()
		return s.wrapClosed(fmt.Errorf("kafka: publish: waiting for the previous publish: %w", ctx.Err()))
	}
	defer func() { <-s.sem }()
	if s.closed {
		return stream.ErrClosed
	}
	err := s.publish(ctx, recs)
	if err != nil {
		s.publishErrors.Inc()
		s.dirty = true
		err = s.wrapClosed(err)
	}
	return err
}

func (s *Stream) wrapClosed(err error) error {
	if s.closeCtx.Err() != nil {
		return fmt.Errorf("%w: %w", stream.ErrClosed, err)
	}
	return err
}

func (s *Stream) topicName(origin string, sig wire.Signal) string {
	return s.cfg.TopicPrefix + "." + origin + "." + sig.String()
}

// batch is records of one partition sent as one record batch.
type batch struct {
	tp   tp
	recs []*stream.Record
	size int
	raw  []byte // encoded for the current producer id; nil: to encode
}

func (s *Stream) publish(ctx context.Context, recs []stream.Record) error {
	var names []string
	for i := range recs {
		n := s.topicName(recs[i].Origin, recs[i].Signal)
		if !contains(names, n) {
			names = append(names, n)
		}
	}
	if err := s.ensureTopics(ctx, names); err != nil {
		return err
	}
	// Batches per partition, in record order, at most
	// max_record_bytes+batchSlack each.
	limit := int(s.cfg.MaxRecordBytes) + batchSlack
	queues := map[tp][]*batch{}
	var order []tp
	for i := range recs {
		r := &recs[i]
		name := s.topicName(r.Origin, r.Signal)
		k := tp{name, kafkaPartition(r.Partition, int32(len(s.topics[name])))}
		size := len(r.Data) + len(r.ID) + 64
		q := queues[k]
		if len(q) == 0 {
			order = append(order, k)
		}
		if len(q) == 0 || q[len(q)-1].size+size > limit {
			q = append(q, &batch{tp: k})
			queues[k] = q
		}
		b := q[len(q)-1]
		b.recs = append(b.recs, r)
		b.size += size
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		if err := s.producerID(ctx); err != nil {
			if !retriable(err) {
				return err
			}
			lastErr = err
		} else {
			progress, err := s.round(ctx, order, queues)
			if err != nil {
				return err
			}
			done := true
			for _, q := range queues {
				if len(q) > 0 {
					done = false
				}
			}
			if done {
				return nil
			}
			if progress {
				attempt = 0
				continue
			}
			lastErr = s.lastRoundErr
		}
		if !wait(ctx, backoff(attempt)) {
			left := 0
			for _, q := range queues {
				for _, b := range q {
					left += len(b.recs)
				}
			}
			return fmt.Errorf("kafka: publish: %d of %d records not acknowledged: %w (last error: %v)", left, len(recs), ctx.Err(), lastErr)
		}
	}
}

// round sends the first batch of every partition queue, one Produce
// request per leader, concurrently, and pops what was acknowledged. It
// reports whether any batch was acknowledged; a non-retriable error ends
// the publish. Retriable failures are left in the queues, with the error
// in s.lastRoundErr.
func (s *Stream) round(ctx context.Context, order []tp, queues map[tp][]*batch) (bool, error) {
	s.lastRoundErr = nil
	byLeader := map[int32][]*batch{}
	var leaders []int32
	stale := false
	for _, k := range order {
		q := queues[k]
		if len(q) == 0 {
			continue
		}
		b := q[0]
		ls := s.topics[k.topic]
		leader := int32(-1)
		if int(k.part) < len(ls) {
			leader = ls[k.part]
		}
		if _, ok := s.brokers[leader]; !ok {
			stale = true
			s.lastRoundErr = fmt.Errorf("kafka: %s/%d has no leader", k.topic, k.part)
			continue
		}
		if b.raw == nil {
			s.encode(b)
		}
		if _, ok := byLeader[leader]; !ok {
			leaders = append(leaders, leader)
		}
		byLeader[leader] = append(byLeader[leader], b)
	}
	type result struct {
		resp kmsg.ProduceResponse
		err  error
	}
	results := make([]result, len(leaders))
	var wg sync.WaitGroup
	for i, l := range leaders {
		c, err := s.connTo(ctx, s.brokers[l])
		if err != nil {
			results[i].err = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := s.produceRequest(ctx, byLeader[l])
			resp := &results[i].resp
			results[i].err = c.do(ctx, keyProduce, req.AppendTo, resp.ReadFrom, &req.Version, &resp.Version)
		}()
	}
	wg.Wait()
	progress, reset := false, false
	for i, l := range leaders {
		bs := byLeader[l]
		if err := results[i].err; err != nil {
			if ctx.Err() != nil {
				return progress, fmt.Errorf("kafka: publish: %w", err)
			}
			s.publishRetries.Add(recordCount(bs))
			s.lastRoundErr = fmt.Errorf("kafka: produce to %s: %w", s.brokers[l], err)
			stale = true
			continue
		}
		codes := map[tp]int16{}
		for _, t := range results[i].resp.Topics {
			for _, p := range t.Partitions {
				codes[tp{t.Topic, p.Partition}] = p.ErrorCode
			}
		}
		for _, b := range bs {
			code, ok := codes[b.tp]
			if !ok {
				code = -1
			}
			err := errorForCode(code)
			switch {
			case err == nil, code == codeDuplicateSequence:
				queues[b.tp] = queues[b.tp][1:]
				progress = true
			case code == codeMessageTooLarge, code == codeRecordListTooLarge:
				return progress, fmt.Errorf("kafka: publish to %s: %w: %w", b.tp.topic, stream.ErrTooLarge, err)
			case code == codeOutOfOrderSequence, code == codeUnknownProducerID,
				code == codeInvalidProducerEpoch, code == codeInvalidProducerIDMapping:
				// The broker lost or rejects this producer's state: start
				// a new producer id. A batch it had stored under the old
				// one is then stored again.
				reset = true
				s.publishRetries.Add(len(b.recs))
				s.lastRoundErr = fmt.Errorf("kafka: publish to %s/%d: %w", b.tp.topic, b.tp.part, err)
			case retriable(err):
				if code == codeNotLeader || code == codeLeaderNotAvailable ||
					code == codeUnknownTopicOrPartition || code == codeFencedLeaderEpoch {
					stale = true
				}
				s.publishRetries.Add(len(b.recs))
				s.lastRoundErr = fmt.Errorf("kafka: publish to %s/%d: %w", b.tp.topic, b.tp.part, err)
			default:
				return progress, fmt.Errorf("kafka: publish to %s/%d: %w", b.tp.topic, b.tp.part, err)
			}
		}
	}
	if reset {
		s.dirty = true
	}
	if s.dirty {
		for _, q := range queues {
			for _, b := range q {
				b.raw = nil
			}
		}
	}
	if stale {
		names := make([]string, 0, len(order))
		for _, k := range order {
			if len(queues[k]) > 0 && !contains(names, k.topic) {
				names = append(names, k.topic)
			}
		}
		if err := s.metadata(ctx, names); err != nil && s.lastRoundErr == nil {
			s.lastRoundErr = err
		}
	}
	return progress, nil
}

func recordCount(bs []*batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.recs)
	}
	return n
}

func (s *Stream) produceRequest(ctx context.Context, bs []*batch) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	to := s.cfg.ProduceTimeout
	if d, ok := ctx.Deadline(); ok {
		to = min(to, time.Until(d))
	}
	req.TimeoutMillis = int32(max(to.Milliseconds(), 1))
	for _, b := range bs {
		i := 0
		for i < len(req.Topics) && req.Topics[i].Topic != b.tp.topic {
			i++
		}
		if i == len(req.Topics) {
			t := kmsg.NewProduceRequestTopic()
			t.Topic = b.tp.topic
			req.Topics = append(req.Topics, t)
		}
		p := kmsg.NewProduceRequestTopicPartition()
		p.Partition = b.tp.part
		p.Records = b.raw
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
	}
	return req
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encode builds b's record batch (v2, uncompressed: records are
// compressed by the wire format) for the current producer id, taking the
// partition's next sequence numbers.
func (s *Stream) encode(b *batch) {
	n := int32(len(b.recs))
	rb := kmsg.NewRecordBatch()
	rb.PartitionLeaderEpoch = -1
	rb.Magic = 2
	rb.LastOffsetDelta = n - 1
	rb.FirstTimestamp = time.Now().UnixMilli()
	rb.MaxTimestamp = rb.FirstTimestamp
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
	if s.pid >= 0 {
		seq := s.seq[b.tp]
		rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = s.pid, s.epoch, seq
		s.seq[b.tp] = int32((int64(seq) + int64(n)) & (1<<31 - 1)) // wraps to 0, as Kafka's
	}
	rb.NumRecords = n
	var scratch []byte
	for i, r := range b.recs {
		kr := kmsg.NewRecord()
		kr.OffsetDelta = int32(i)
		kr.Key = strconv.AppendInt(nil, int64(r.Partition), 10)
		kr.Value = r.Data
		kr.Headers = []kmsg.Header{{Key: headerID, Value: []byte(r.ID)}}
		scratch = kr.AppendTo(scratch[:0]) // Length 0: one byte
		rb.Records = binary.AppendVarint(rb.Records, int64(len(scratch)-1))
		rb.Records = append(rb.Records, scratch[1:]...)
	}
	raw := rb.AppendTo(make([]byte, 0, 61+len(rb.Records)))
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], castagnoli))
	b.raw = raw
}

// producerID gets a producer id when there is none, or a new one after a
// publish whose outcome is unknown (dirty). A cluster that refuses it
// (no IDEMPOTENT_WRITE permission, a broker without InitProducerID) is
// published to without idempotence, once logged.
func (s *Stream) producerID(ctx context.Context) error {
	if s.noIdem || (s.pid >= 0 && !s.dirty) {
		return nil
	}
	s.pid, s.dirty = -1, false
	clear(s.seq)
	c, err := s.anyConn(ctx)
	if err != nil {
		s.dirty = true
		return err
	}
	if _, ok := c.versions[22]; !ok {
		s.noIdem = true
		s.log.Warn("kafka: the broker has no InitProducerID; publishing without idempotence (a retried batch may be stored twice)", "broker", c.addr)
		return nil
	}
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionTimeoutMillis = 60000
	req.ProducerID, req.ProducerEpoch = -1, -1
	r := kmsg.NewPtrInitProducerIDResponse()
	if err := c.do(ctx, keyInitProducerID, req.AppendTo, r.ReadFrom, &req.Version, &r.Version); err != nil {
		s.dropConn(c)
		s.dirty = true
		return fmt.Errorf("kafka: init producer id: %w", err)
	}
	if err := errorForCode(r.ErrorCode); err != nil {
		if hasCode(err, codeClusterAuthorization) {
			s.noIdem = true
			s.log.Warn("kafka: no IDEMPOTENT_WRITE permission; publishing without idempotence (a retried batch may be stored twice)")
			return nil
		}
		s.dirty = true
		return fmt.Errorf("kafka: init producer id: %w", err)
	}
	s.pid, s.epoch = r.ProducerID, r.ProducerEpoch
	return nil
}

// ensureTopics waits until every topic in names has a known partition
// count, creating missing ones when create_topics is on.
func (s *Stream) ensureTopics(ctx context.Context, names []string) error {
	for attempt := 1; ; attempt++ {
		missing := s.unknown(names)
		if len(missing) == 0 {
			return nil
		}
		err := s.metadata(ctx, missing)
		if err == nil {
			missing = s.unknown(names)
			if len(missing) == 0 {
				return nil
			}
			if !s.cfg.CreateTopicsOn() {
				return fmt.Errorf("kafka: topics %v do not exist (create_topics is false)", missing)
			}
			err = s.createTopics(ctx, missing)
			if err == nil {
				err = s.metadata(ctx, missing)
				if err == nil && len(s.unknown(names)) == 0 {
					return nil
				}
			}
		}
		if err != nil && (ctx.Err() != nil || !retriable(err)) {
			return err
		}
		if !wait(ctx, backoff(attempt)) {
			if err == nil {
				err = fmt.Errorf("kafka: topics %v have no partitions yet", s.unknown(names))
			}
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}
}

func (s *Stream) unknown(names []string) []string {
	var out []string
	for _, n := range names {
		if len(s.topics[n]) == 0 {
			out = append(out, n)
		}
	}
	return out
}

// metadata asks a broker about names and records brokers, the controller,
// and the partitions' leaders. Topics that do not exist are left unknown.
func (s *Stream) metadata(ctx context.Context, names []string) error {
	c, err := s.anyConn(ctx)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrMetadataRequest()
	for _, n := range names {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, t)
	}
	req.AllowAutoTopicCreation = false
	r := kmsg.NewPtrMetadataResponse()
	if err := c.do(ctx, keyMetadata, req.AppendTo, r.ReadFrom, &req.Version, &r.Version); err != nil {
		s.dropConn(c)
		return fmt.Errorf("kafka: metadata from %s: %w", c.addr, err)
	}
	if len(r.Brokers) > 0 {
		clear(s.brokers)
	}
	for _, b := range r.Brokers {
		s.brokers[b.NodeID] = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
	}
	s.controller = r.ControllerID
	for _, t := range r.Topics {
		if t.Topic == nil {
			continue
		}
		err := errorForCode(t.ErrorCode)
		switch {
		case t.ErrorCode == codeUnknownTopicOrPartition, t.ErrorCode == codeLeaderNotAvailable:
			delete(s.topics, *t.Topic)
			continue
		case err != nil:
			return fmt.Errorf("kafka: topic %s: %w", *t.Topic, err)
		case len(t.Partitions) == 0:
			continue
		}
		ls := make([]int32, len(t.Partitions))
		for _, p := range t.Partitions {
			if p.Partition >= 0 && int(p.Partition) < len(ls) {
				ls[p.Partition] = p.Leader // -1: none
			}
		}
		s.topics[*t.Topic] = ls
		if len(ls) < s.partitions && !s.warned[*t.Topic] {
			s.warned[*t.Topic] = true
			s.log.Warn("kafka: topic has fewer partitions than stream.partitions; logical partition p goes to Kafka partition p % count",
				"topic", *t.Topic, "count", len(ls), "partitions", s.partitions)
		}
	}
	return nil
}

// createTopics creates names with stream.partitions partitions, on the
// controller when known.
func (s *Stream) createTopics(ctx context.Context, names []string) error {
	var c *conn
	var err error
	if addr, ok := s.brokers[s.controller]; ok {
		c, err = s.connTo(ctx, addr)
	} else {
		c, err = s.anyConn(ctx)
	}
	if err != nil {
		return err
	}
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	size := strconv.FormatInt(s.cfg.MaxRecordBytes+2*batchSlack, 10)
	for _, n := range names {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = n
		t.NumPartitions = int32(s.partitions)
		t.ReplicationFactor = int16(s.cfg.ReplicationFactor)
		cf := kmsg.NewCreateTopicsRequestTopicConfig()
		cf.Name, cf.Value = "max.message.bytes", kmsg.StringPtr(size)
		t.Configs = append(t.Configs, cf)
		req.Topics = append(req.Topics, t)
	}
	resp := kmsg.NewPtrCreateTopicsResponse()
	if err := c.do(ctx, keyCreateTopics, req.AppendTo, resp.ReadFrom, &req.Version, &resp.Version); err != nil {
		s.dropConn(c)
		return fmt.Errorf("kafka: create topics: %w", err)
	}
	for _, t := range resp.Topics {
		err := errorForCode(t.ErrorCode)
		if err == nil || t.ErrorCode == codeTopicAlreadyExists {
			continue
		}
		msg := ""
		if t.ErrorMessage != nil {
			msg = " (" + *t.ErrorMessage + ")"
		}
		return fmt.Errorf("kafka: create topic %s: %w%s", t.Topic, err, msg)
	}
	return nil
}

// anyConn returns a usable connection to any broker: an open one, else
// the first of the known brokers and the seeds that answers.
func (s *Stream) anyConn(ctx context.Context) (*conn, error) {
	now := time.Now()
	for a, c := range s.conns {
		if !c.stale(now) {
			return c, nil
		}
		c.close()
		delete(s.conns, a)
	}
	var errs []error
	tried := map[string]bool{}
	try := func(addr string) *conn {
		if tried[addr] || ctx.Err() != nil {
			return nil
		}
		tried[addr] = true
		c, err := s.connTo(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		return c
	}
	for _, a := range s.brokers {
		if c := try(a); c != nil {
			return c, nil
		}
	}
	for _, a := range s.cfg.Brokers {
		if c := try(a); c != nil {
			return c, nil
		}
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return nil, fmt.Errorf("kafka: no broker reachable: %w", errors.Join(errs...))
}

// connTo returns the connection to addr, dialling it if needed.
func (s *Stream) connTo(ctx context.Context, addr string) (*conn, error) {
	if c, ok := s.conns[addr]; ok {
		if !c.stale(time.Now()) {
			return c, nil
		}
		c.close()
		delete(s.conns, addr)
	}
	c, err := dial(ctx, addr, &s.dc)
	if err != nil {
		return nil, fmt.Errorf("kafka: connect to %s: %w", addr, err)
	}
	s.conns[addr] = c
	return c, nil
}

func (s *Stream) dropConn(c *conn) {
	c.close()
	if s.conns[c.addr] == c {
		delete(s.conns, c.addr)
	}
}

// kafkaPartition maps logical partition p onto a topic of n partitions
// (internal/stream/kafka's mapping).
func kafkaPartition(p int, n int32) int32 {
	if n <= 0 || int32(p) < n {
		return int32(p)
	}
	return int32(p) % n
}

// retriable reports whether sending again may succeed: Kafka's retriable
// errors and connection errors, not context or non-retriable broker
// errors.
func retriable(err error) bool {
	var ae *authError
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ae) {
		return false
	}
	var ke *Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	return true
}

// backoff is the wait before retry n (1-based): 100ms·n, at most 1s.
func backoff(n int) time.Duration { return min(time.Duration(n)*100*time.Millisecond, time.Second) }

func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
