// Package kafka is the Kafka stream backend (franz-go). Each (origin,
// signal) pair is one topic, <topic_prefix>.<origin>.<signal>, whose Kafka
// partition is the record's logical partition; durable consumers are
// consumer groups named <topic_prefix>.<durable> that commit offsets only
// after their handler acknowledged the records. Open connects lazily, so an
// agent starts (and spools) while the brokers are down. README.md
// documents the configuration and the guarantees.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Deps is what the app supplies to Open.
type Deps struct {
	// Log receives warnings (nil: discard). Passwords are never logged.
	Log *slog.Logger
	// Metrics receives les_stream_* counters with backend="kafka" (nil:
	// a private registry).
	Metrics *selfmetric.Registry
}

// Stream is a stream.Stream over Kafka topics. It is safe for concurrent
// use. A producer client is shared by Publish calls and an admin client by
// topic creation and Lag; every Consume
// call has a client of its own, closed when it returns.
type Stream struct {
	cfg        Config
	partitions int
	log        *slog.Logger
	base       []kgo.Opt    // seed brokers, client id, TLS, SASL
	cl         *kgo.Client  // producer
	admCl      *kgo.Client  // topics and lag
	adm        *kadm.Client // over admCl

	publishErrors  *metrics.Counter
	publishRetries *metrics.Counter
	commitErrors   *metrics.Counter
	consumeErrors  *metrics.Counter
	ckptMetrics    *ckptMetrics // claim.go

	closeCtx context.Context // cancelled by Close
	closeFn  context.CancelFunc
	wg       sync.WaitGroup // running Consume calls

	mu     sync.Mutex
	closed bool
	topics map[string]int32 // topic → Kafka partition count, once known
}

// Open validates cfg (see Config.Validate) and returns a stream of
// partitions logical partitions. It does no network I/O: brokers are
// dialled by the first Publish, Consume or Lag, which also create missing
// topics (when create_topics is on) and retry that until they succeed. It
// fails only for an invalid configuration or unreadable TLS or password
// files. The caller owns the Stream and must Close it.
func Open(ctx context.Context, cfg Config, partitions int, deps Deps) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if partitions <= 0 || partitions > 1<<20 {
		return nil, fmt.Errorf("kafka: %d logical partitions; want at least 1", partitions)
	}
	base, err := clientOpts(&cfg)
	if err != nil {
		return nil, err
	}
	// Heartbeats well inside the session (franz-go's 3s default would let
	// a session_timeout of 3s or less expire between two of them).
	base = append(base, kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/3)))
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Metrics
	if reg == nil {
		reg = selfmetric.New()
	}
	s := &Stream{cfg: cfg, partitions: partitions, log: log, base: base, topics: map[string]int32{},
		publishErrors:  reg.Counter("les_stream_publish_errors_total", "backend", "kafka"),
		publishRetries: reg.Counter("les_stream_publish_retries_total", "backend", "kafka"),
		commitErrors:   reg.Counter("les_stream_commit_errors_total", "backend", "kafka"),
		consumeErrors:  reg.Counter("les_stream_consume_errors_total", "backend", "kafka"),
		ckptMetrics:    newCkptMetrics(reg),
	}
	s.cl, err = kgo.NewClient(s.clientOpts(s.producerOpts()...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	// A client of its own for admin requests: metadata requests of
	// topics that do not exist yet would otherwise hold the producer's
	// view of them for MetadataMinAge (5s) after the topics are created.
	admCl, err := kgo.NewClient(s.clientOpts()...)
	if err != nil {
		s.cl.Close()
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s.admCl, s.adm = admCl, kadm.NewClient(admCl)
	s.closeCtx, s.closeFn = context.WithCancel(context.WithoutCancel(ctx))
	return s, nil
}

// producerOpts are the options of the shared producer client (after
// clientOpts).
func (s *Stream) producerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Publish retries definite failures itself (and counts them);
		// the client still retries, uncounted, where it cannot know
		// whether a batch was written, which keeps idempotence.
		kgo.RecordRetries(0),
		kgo.ProducerBatchMaxBytes(int32(s.cfg.MaxRecordBytes + batchSlack)),
		kgo.ProduceRequestTimeout(s.cfg.ProduceTimeout),
		kgo.ProducerLinger(0),
		// Records are compressed by the wire format (stream.compression);
		// compressing them again costs CPU for nothing.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	}
}

// clientOpts returns the shared options followed by extra (a logger in
// either replaces the default one).
func (s *Stream) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	opts := make([]kgo.Opt, 0, len(s.base)+len(extra)+1)
	opts = append(opts, kgo.WithLogger(kgoLogger{s.log}))
	opts = append(opts, s.base...)
	return append(opts, extra...)
}

// Capabilities implements stream.Stream. DedupWindow is 0: the idempotent
// producer drops duplicates of its own retries within one producer
// session, but a record re-published by a new Publish call (after a
// timeout, or from the spool) is stored again, so consumers that must be
// exact de-duplicate by record id (the les-id header and the wire batch
// id).
func (s *Stream) Capabilities() stream.Capabilities {
	return stream.Capabilities{Backend: "kafka", Partitions: s.partitions,
		MaxRecordBytes: s.cfg.MaxRecordBytes, DedupWindow: 0, DurableCursors: true, GroupAssignment: true}
}

// Close stops running Consume calls (each commits what its handler
// accepted and leaves its group, within 5s) and Publish calls, waits for
// them to return, and closes the clients. It is idempotent. It must not be
// called from a Handler: it would wait for itself.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.closeFn()
	s.wg.Wait()
	s.cl.Close()
	s.adm.Close()
	return nil
}

// enter registers a running operation; it fails once Close was called.
func (s *Stream) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return stream.ErrClosed
	}
	s.wg.Add(1)
	return nil
}

// topicName is <prefix>.<origin>.<signal>.
func (s *Stream) topicName(origin string, sig wire.Signal) string {
	return s.cfg.TopicPrefix + "." + origin + "." + sig.String()
}

// topicRef is a wanted topic and what deliveries from it say.
type topicRef struct {
	name   string
	origin string
	signal wire.Signal
	label  string // "<origin>.<signal>", the Delivery.Partition prefix
}

// wanted lists the topics of origins × signals (empty: all).
func (s *Stream) wanted(origins []string, signals []wire.Signal) ([]topicRef, error) {
	if len(origins) == 0 {
		origins = stream.AllOrigins()
	}
	if len(signals) == 0 {
		signals = wire.Signals[:]
	}
	refs := make([]topicRef, 0, len(origins)*len(signals))
	for _, o := range origins {
		if !stream.ValidOrigin(o) {
			return nil, fmt.Errorf("kafka: unknown origin %q", o)
		}
		for _, sig := range signals {
			if _, err := wire.ParseSignal(sig.String()); err != nil {
				return nil, fmt.Errorf("kafka: unknown signal %v", sig)
			}
			refs = append(refs, topicRef{name: s.topicName(o, sig), origin: o, signal: sig,
				label: o + "." + sig.String()})
		}
	}
	return refs, nil
}

// ensureTopics returns the Kafka partition count of every topic in names
// that exists, creating missing ones first when create_topics is on, and
// the names that do not exist. Counts are cached, so only the first call
// per topic does I/O. It blocks until the brokers answer or ctx is done.
func (s *Stream) ensureTopics(ctx context.Context, names []string) (map[string]int32, []string, error) {
	known := make(map[string]int32, len(names))
	var unknown []string
	s.mu.Lock()
	for _, n := range names {
		if p, ok := s.topics[n]; ok {
			known[n] = p
		} else {
			unknown = append(unknown, n)
		}
	}
	s.mu.Unlock()
	if len(unknown) == 0 {
		return known, nil, nil
	}
	found, missing, err := s.describe(ctx, unknown)
	if err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 && s.cfg.CreateTopicsOn() {
		size := strconv.FormatInt(s.cfg.MaxRecordBytes+2*batchSlack, 10)
		resp, err := s.adm.CreateTopics(ctx, int32(s.partitions), int16(s.cfg.ReplicationFactor),
			map[string]*string{"max.message.bytes": &size}, missing...)
		if err != nil {
			return nil, nil, fmt.Errorf("kafka: create topics: %w", err)
		}
		for _, r := range resp {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return nil, nil, fmt.Errorf("kafka: create topic %s: %w (%s)", r.Topic, r.Err, r.ErrMessage)
			}
		}
		var again map[string]int32
		again, missing, err = s.describe(ctx, missing)
		if err != nil {
			return nil, nil, err
		}
		for n, p := range again {
			found[n] = p
		}
	}
	s.mu.Lock()
	for n, p := range found {
		if _, ok := s.topics[n]; !ok && int(p) < s.partitions {
			s.log.Warn("kafka: topic has fewer partitions than stream.partitions; logical partition p goes to Kafka partition p % count",
				"topic", n, "count", p, "partitions", s.partitions)
		}
		s.topics[n] = p
		known[n] = p
	}
	s.mu.Unlock()
	return known, missing, nil
}

// describe looks names up in the cluster's metadata. It asks a broker
// directly: the client's metadata cache would answer for MetadataMinAge
// (5s) that a topic just created does not exist.
func (s *Stream) describe(ctx context.Context, names []string) (map[string]int32, []string, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, n := range names {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, s.admCl)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: metadata: %w", err)
	}
	found := map[string]int32{}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		err := kerr.ErrorForCode(t.ErrorCode)
		switch {
		case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.LeaderNotAvailable):
		case err != nil:
			return nil, nil, fmt.Errorf("kafka: topic %s: %w", *t.Topic, err)
		case len(t.Partitions) > 0:
			found[*t.Topic] = int32(len(t.Partitions))
		}
	}
	var missing []string
	for _, n := range names {
		if _, ok := found[n]; !ok {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

// kafkaPartition maps logical partition p onto a topic of n partitions.
func kafkaPartition(p int, n int32) int32 {
	if n <= 0 || int32(p) < n {
		return int32(p)
	}
	return int32(p) % n
}

// backoff is the wait before retry n (1-based): step·n, at most max.
func backoff(n int, step, max time.Duration) time.Duration {
	return min(time.Duration(n)*step, max)
}

// wait sleeps d or until ctx is done; it reports whether d passed.
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

// kgoLogger forwards franz-go's warnings and errors to slog; franz-go
// never logs credentials.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	k.l.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}
