// Package kinesis is a stream backend on Amazon Kinesis Data Streams
// (aws-sdk-go-v2, GetRecords polling, no enhanced fan-out).
//
// Every logical partition p of n is pinned to one point of the 128-bit
// hash-key space, PartitionRange(p, n) << 64, through PutRecords'
// ExplicitHashKey, so each logical partition lives on exactly one open
// shard at a time and resharding keeps that. The partition key,
// "<origin>.<signal>.<partition>", carries the record's origin, signal and
// logical partition, which consumers filter on client-side.
//
// Kinesis keeps no consumer cursors: consumers checkpoint the positions
// (shard id → sequence number) they were given and pass them back in
// stream.ConsumeOptions.After. Delivery is at least once and Kinesis does
// not de-duplicate; see README.md.
package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Backend is the backend name in Capabilities and the backend label of the
// les_stream_* metrics.
const Backend = "kinesis"

// Kinesis limits (classic record size; streams opted into larger records
// with UpdateMaxRecordSize are still written within these).
const (
	// MaxRecordSize bounds one record's data plus partition key.
	MaxRecordSize = 1 << 20
	// MaxCallBytes bounds one PutRecords call's data plus partition keys.
	MaxCallBytes = 5 << 20
	// MaxCallRecords bounds the entries of one PutRecords call.
	MaxCallRecords = 500
	// MinPollInterval is the shortest PollInterval: Kinesis allows five
	// GetRecords calls per second per shard, shared by every reader.
	MinPollInterval = 200 * time.Millisecond
)

// Config is the stream.kinesis block of les.yaml.
type Config struct {
	// Stream is the Kinesis stream name (required).
	Stream string `yaml:"stream"`
	// Region is the AWS region; empty uses the standard AWS chain
	// (AWS_REGION, shared config).
	Region string `yaml:"region"`
	// Endpoint overrides the service endpoint (kinesalite, LocalStack, a
	// VPC endpoint). Empty leaves it to the SDK, which also honours
	// AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL.
	Endpoint string `yaml:"endpoint"`
	// CreateShards > 0 creates the stream with that many shards when it is
	// missing (tests, first-hour use); 0 (default) never creates it.
	CreateShards int `yaml:"create_shards"`
	// PollInterval is the wait between GetRecords calls on a shard that is
	// caught up (default 1s, at least 200ms).
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxRecordsPerCall bounds the entries of one PutRecords call
	// (default and maximum 500).
	MaxRecordsPerCall int `yaml:"max_records_per_call"`
	// PutTimeout bounds one PutRecords call, including the SDK's own
	// retries (default 10s). Publish as a whole is bounded by its ctx.
	PutTimeout time.Duration `yaml:"put_timeout"`
}

// Validate fills defaults and checks c; each problem names its field.
func (c *Config) Validate() error {
	var errs []error
	if c.Stream == "" {
		errs = append(errs, errors.New("kinesis.stream: a stream name is required"))
	} else if len(c.Stream) > 128 {
		errs = append(errs, fmt.Errorf("kinesis.stream: %q is longer than 128 characters", c.Stream))
	}
	if c.CreateShards < 0 {
		errs = append(errs, fmt.Errorf("kinesis.create_shards: %d is negative", c.CreateShards))
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.PollInterval < MinPollInterval {
		errs = append(errs, fmt.Errorf("kinesis.poll_interval: %s is below %s (Kinesis allows 5 GetRecords/s per shard, shared by all readers)", c.PollInterval, MinPollInterval))
	}
	if c.MaxRecordsPerCall == 0 {
		c.MaxRecordsPerCall = MaxCallRecords
	}
	if c.MaxRecordsPerCall < 0 || c.MaxRecordsPerCall > MaxCallRecords {
		errs = append(errs, fmt.Errorf("kinesis.max_records_per_call: %d is not in [1,%d]", c.MaxRecordsPerCall, MaxCallRecords))
	}
	if c.PutTimeout == 0 {
		c.PutTimeout = 10 * time.Second
	}
	if c.PutTimeout < 0 {
		errs = append(errs, fmt.Errorf("kinesis.put_timeout: %s is negative", c.PutTimeout))
	}
	return errors.Join(errs...)
}

// API is the part of the Kinesis client the backend uses; *kinesis.Client
// implements it. Tests wrap or replace it to inject faults.
type API interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	CreateStream(ctx context.Context, in *kinesis.CreateStreamInput, optFns ...func(*kinesis.Options)) (*kinesis.CreateStreamOutput, error)
}

// Deps is what the code supplies.
type Deps struct {
	// Log receives warnings (nil: discarded).
	Log *slog.Logger
	// Metrics receives the les_stream_*{backend="kinesis"} counters (nil:
	// a private registry).
	Metrics *selfmetric.Registry
	// API replaces the client built from the standard AWS chain (tests).
	// The Stream does not close it.
	API API
}

// Stream is a stream.Stream on one Kinesis data stream. It is safe for
// concurrent use.
type Stream struct {
	cfg        Config
	partitions int
	api        API
	log        *slog.Logger
	transport  *http.Transport // of the client Open built; nil with Deps.API

	// hashKeys[p] is partition p's ExplicitHashKey (decimal); starts[p]
	// the same value for shard range checks.
	hashKeys []string
	starts   []*big.Int
	maxData  int64

	throttled   *metrics.Counter
	retries     *metrics.Counter
	foreign     *metrics.Counter
	gaps        *metrics.Counter
	warnedAlien atomic.Bool
	closeOnce   sync.Once
	done        chan struct{} // closed by Close
}

// Open validates cfg and returns a stream of partitions logical
// partitions. It does no network I/O unless cfg.CreateShards > 0, in which
// case it creates the stream if missing and waits, bounded by ctx, until
// it is active; otherwise an unreachable endpoint surfaces only in
// Publish and Consume. The caller owns the Stream and must Close it.
func Open(ctx context.Context, cfg Config, partitions int, deps Deps) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	if partitions < 1 {
		return nil, fmt.Errorf("kinesis: stream.partitions: %d, want at least 1", partitions)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = selfmetric.New()
	}
	s := &Stream{
		cfg: cfg, partitions: partitions, api: deps.API,
		log:       deps.Log.With("backend", Backend, "stream", cfg.Stream),
		throttled: deps.Metrics.Counter("les_stream_throttled_total", "backend", Backend),
		retries:   deps.Metrics.Counter("les_stream_publish_retries_total", "backend", Backend),
		foreign:   deps.Metrics.Counter("les_stream_foreign_records_total", "backend", Backend),
		gaps:      deps.Metrics.Counter("les_stream_position_gaps_total", "backend", Backend),
		done:      make(chan struct{}),
	}
	maxKey := 0
	for p := range partitions {
		start := new(big.Int).Lsh(new(big.Int).SetUint64(wire.PartitionRange(p, partitions)), 64)
		s.starts = append(s.starts, start)
		s.hashKeys = append(s.hashKeys, start.String())
	}
	for _, o := range stream.AllOrigins() {
		for _, sig := range wire.Signals {
			maxKey = max(maxKey, len(PartitionKey(o, sig, partitions-1)))
		}
	}
	s.maxData = MaxRecordSize - int64(maxKey)
	if s.api == nil {
		if err := s.newClient(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.CreateShards > 0 {
		if err := s.ensureStream(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// ensureStream creates the stream with cfg.CreateShards shards when it is
// missing and waits until it is active (or ctx ends).
func (s *Stream) ensureStream(ctx context.Context) error {
	name := aws.String(s.cfg.Stream)
	created := false
	for {
		out, err := s.api.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound) && !created:
			_, err = s.api.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(int32(s.cfg.CreateShards))})
			var inUse *types.ResourceInUseException
			if err != nil && !errors.As(err, &inUse) { // in use: created by someone else meanwhile
				return fmt.Errorf("kinesis: create stream %s: %w", s.cfg.Stream, err)
			}
			created = true
			continue
		case errors.As(err, &notFound):
			// Just created: not visible yet.
		case err != nil:
			return fmt.Errorf("kinesis: describe stream %s: %w", s.cfg.Stream, err)
		default:
			st := out.StreamDescriptionSummary.StreamStatus
			if st == types.StreamStatusActive || st == types.StreamStatusUpdating {
				if created {
					s.log.Info("kinesis: created stream", "shards", s.cfg.CreateShards)
				}
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("kinesis: waiting for stream %s to become active: %w", s.cfg.Stream, err)
		}
	}
}

// Capabilities implements stream.Stream. MaxRecordBytes is 1 MiB less the
// longest partition key of this stream.
func (s *Stream) Capabilities() stream.Capabilities {
	return stream.Capabilities{Backend: Backend, Partitions: s.partitions, MaxRecordBytes: s.maxData}
}

// Lag implements stream.Stream: Kinesis counts no records behind a
// position, so it always fails with an error wrapping
// errors.ErrUnsupported.
func (s *Stream) Lag(context.Context, stream.LagQuery) (uint64, error) {
	return 0, fmt.Errorf("kinesis: lag in records: %w (Kinesis reports only MillisBehindLatest)", errors.ErrUnsupported)
}

// Close stops running Consume calls (they return nil), makes later calls
// fail with stream.ErrClosed and closes the idle connections of the client
// Open built. It does not wait for Consume to return.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
	})
	return nil
}

func (s *Stream) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// PartitionKey is the Kinesis partition key of a record:
// "<origin>.<signal>.<partition>", e.g. "in.metrics.3".
func PartitionKey(origin string, sig wire.Signal, partition int) string {
	return origin + "." + sig.String() + "." + strconv.Itoa(partition)
}

// ParsePartitionKey splits a partition key written by PartitionKey; ok is
// false for keys of other producers.
func ParsePartitionKey(key string) (origin string, sig wire.Signal, partition int, ok bool) {
	origin, rest, ok1 := cutDot(key)
	name, num, ok2 := cutDot(rest)
	if !ok1 || !ok2 || !stream.ValidOrigin(origin) {
		return "", 0, 0, false
	}
	for _, sg := range wire.Signals {
		if sg.String() == name {
			sig = sg
		}
	}
	if sig == 0 || num == "" || (num[0] == '0' && len(num) > 1) {
		return "", 0, 0, false
	}
	p, err := strconv.Atoi(num)
	if err != nil || p < 0 {
		return "", 0, 0, false
	}
	return origin, sig, p, true
}

func cutDot(s string) (before, after string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// backoff is a capped exponential backoff with jitter: a delay in
// [d/2, d], d = base·2^n ≤ max.
type backoff struct {
	base, max time.Duration
	n         int
}

func (b *backoff) reset() { b.n = 0 }

func (b *backoff) next() time.Duration {
	d := b.base << min(b.n, 16)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

// wait sleeps for the next delay; it returns ctx's error when cancelled
// first.
func (b *backoff) wait(ctx context.Context) error { return sleep(ctx, b.next()) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
