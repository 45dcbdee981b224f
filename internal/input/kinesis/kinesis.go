// Package kinesis is an input that polls an Amazon Kinesis data stream
// carrying CloudWatch Logs subscription payloads and hands the decoded logs
// to a publish callback, checkpointing each shard's last sequence number
// only after the callback succeeded (at-least-once, no gaps).
//
// One Poller reads every shard of one stream with one goroutine per shard,
// using ListShards, GetShardIterator and GetRecords (no enhanced fan-out).
package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/les-streams/les/internal/format/cwlogs"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// Starting positions for shards without a checkpoint.
const (
	StartTrimHorizon = "TRIM_HORIZON"
	StartLatest      = "LATEST"
)

// FormatCWLogs is the only record format: each record's Data is one
// CloudWatch Logs subscription payload (gzip JSON), as CloudWatch writes it.
const FormatCWLogs = "cwlogs"

// MinPollInterval is the shortest PollInterval: Kinesis allows five
// GetRecords calls per second per shard, shared by every reader.
const MinPollInterval = 200 * time.Millisecond

// Reasons of les_kinesis_rejected_total for records refused as a whole
// (single log events refused inside a record use the cwlogs/logline
// reasons).
const (
	ReasonBadBase64   = "bad_base64"
	ReasonBadGzip     = "bad_gzip"
	ReasonTooLarge    = "too_large"
	ReasonBadJSON     = "invalid_json"
	ReasonMessageType = "invalid_message_type"
	ReasonInvalid     = "invalid_record"
)

// Config is one Kinesis input, as written in les.yaml.
type Config struct {
	// Stream is the Kinesis stream name (required).
	Stream string `yaml:"stream"`
	// Region is the AWS region; empty uses the standard AWS chain
	// (AWS_REGION, shared config).
	Region string `yaml:"region"`
	// Endpoint overrides the service endpoint, e.g. http://127.0.0.1:4567
	// for kinesalite or LocalStack.
	Endpoint string `yaml:"endpoint"`
	// StartAt is where shards without a checkpoint start: TRIM_HORIZON
	// (default) or LATEST. Shards that appear while running (resharding)
	// always start at TRIM_HORIZON.
	StartAt string `yaml:"start_at"`
	// PollInterval is the wait after an empty poll or when caught up
	// (default 1s, at least 200ms).
	PollInterval time.Duration `yaml:"poll_interval"`
	// Format of the records' Data: "cwlogs" (default, the only one).
	Format string `yaml:"format"`
}

// FieldError is a problem with one field of Config; Validate joins them.
type FieldError struct {
	Field string // the YAML key
	Msg   string
}

func (e *FieldError) Error() string { return e.Msg }

// Validate fills defaults and checks c. The error joins a *FieldError per
// problem.
func (c *Config) Validate() error {
	var errs []error
	if c.Stream == "" {
		errs = append(errs, &FieldError{"stream", "stream is required"})
	}
	switch c.StartAt {
	case "":
		c.StartAt = StartTrimHorizon
	case StartTrimHorizon, StartLatest:
	default:
		errs = append(errs, &FieldError{"start_at", fmt.Sprintf("start_at %q is not one of TRIM_HORIZON, LATEST", c.StartAt)})
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.PollInterval < MinPollInterval {
		errs = append(errs, &FieldError{"poll_interval", fmt.Sprintf("poll_interval %s is below %s (Kinesis allows 5 GetRecords/s per shard)", c.PollInterval, MinPollInterval)})
	}
	switch c.Format {
	case "":
		c.Format = FormatCWLogs
	case FormatCWLogs:
	default:
		errs = append(errs, &FieldError{"format", fmt.Sprintf("format %q is not one of cwlogs", c.Format)})
	}
	return errors.Join(errs...)
}

// API is the part of the Kinesis client the poller uses; *kinesis.Client
// implements it.
type API interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// PublishFunc makes batch durable. It must not keep batch after returning;
// a nil error lets the poller checkpoint past the batch's records, any
// error makes it retry the same batch with backoff.
type PublishFunc func(ctx context.Context, batch *model.Batch) error

// Deps is what the code supplies.
type Deps struct {
	Log     *slog.Logger         // required
	Metrics *selfmetric.Registry // required
	Publish PublishFunc          // required
	// CheckpointPath is the JSON file holding each shard's last published
	// sequence number (required).
	CheckpointPath string
	// Client replaces the client built from the AWS config chain (tests).
	Client API
	// ListInterval is how often shards are listed again to find new ones
	// after resharding (default 1m).
	ListInterval time.Duration
}

// Limits of one published batch: records are grouped until either is
// reached, so a batch stays well below the stream's message size.
const (
	maxBatchLogs  = 2000
	maxBatchBytes = 1 << 20
)

// Poller reads one Kinesis stream.
type Poller struct {
	cfg  Config
	deps Deps

	records  *metrics.Counter
	logs     *metrics.Counter
	rejected *selfmetric.ReasonCounters
	errs     *selfmetric.ReasonCounters

	ckpt *checkpoints

	mu     sync.Mutex
	behind map[string]*atomic.Int64
}

// New validates cfg and returns a poller. It does no I/O.
func New(cfg Config, deps Deps) (*Poller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	if deps.Log == nil || deps.Metrics == nil || deps.Publish == nil || deps.CheckpointPath == "" {
		return nil, errors.New("kinesis: Log, Metrics, Publish and CheckpointPath are required")
	}
	if deps.ListInterval <= 0 {
		deps.ListInterval = time.Minute
	}
	reg := deps.Metrics
	return &Poller{
		cfg:      cfg,
		deps:     deps,
		records:  reg.Counter("les_kinesis_records_total", "stream", cfg.Stream),
		logs:     reg.Counter("les_kinesis_logs_total", "stream", cfg.Stream),
		rejected: reg.NewReasonCounters("les_kinesis_rejected_total", "stream", cfg.Stream),
		errs:     reg.NewReasonCounters("les_kinesis_errors_total", "stream", cfg.Stream),
		ckpt:     &checkpoints{path: deps.CheckpointPath},
		behind:   map[string]*atomic.Int64{},
	}, nil
}

// newClient builds a client from the standard AWS chain (environment,
// shared config and credentials files, SSO, container and instance roles).
func (p *Poller) newClient(ctx context.Context) (API, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if p.cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(p.cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("kinesis: aws config: %w", err)
	}
	return kinesis.NewFromConfig(awsCfg, func(o *kinesis.Options) {
		if p.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(p.cfg.Endpoint)
		}
	}), nil
}

// Run reads the stream until ctx is cancelled, then returns nil once every
// shard reader stopped (a batch being published is finished or abandoned
// without checkpoint). It returns an error only for a checkpoint file that
// cannot be read or written; AWS errors are retried with backoff.
func (p *Poller) Run(ctx context.Context) error {
	if err := p.ckpt.load(); err != nil {
		return err
	}
	client := p.deps.Client
	if client == nil {
		c, err := p.newClient(ctx)
		if err != nil {
			return err
		}
		client = c
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var wg sync.WaitGroup
	started := map[string]bool{}
	done := map[string]bool{} // shards read to their end in this run
	var doneMu sync.Mutex
	first := true
	b := backoff{}
	for {
		shards, err := p.listShards(ctx, client)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			p.errs.Inc("list_shards")
			p.deps.Log.Warn("kinesis: listing shards failed; retrying", "stream", p.cfg.Stream, "err", err)
			if b.wait(ctx) != nil {
				break
			}
			continue
		default:
			b.reset()
			for _, s := range shards {
				id := aws.ToString(s.ShardId)
				if started[id] || p.ckpt.closed(id) {
					continue
				}
				// A child shard waits until its parents are read to the end.
				doneMu.Lock()
				wait := false
				for _, parent := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
					pid := aws.ToString(parent)
					if pid != "" && started[pid] && !done[pid] {
						wait = true
					}
				}
				doneMu.Unlock()
				if wait {
					continue
				}
				start := p.cfg.StartAt
				if !first {
					start = StartTrimHorizon // appeared while running
				}
				started[id] = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := p.readShard(ctx, client, id, start)
					if err != nil {
						cancel(err)
						return
					}
					if ctx.Err() == nil {
						doneMu.Lock()
						done[id] = true
						doneMu.Unlock()
					}
				}()
			}
			first = false
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.deps.ListInterval):
		}
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (p *Poller) listShards(ctx context.Context, c API) ([]types.Shard, error) {
	var out []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(p.cfg.Stream)}
	for {
		res, err := c.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: list shards: %w", err)
		}
		out = append(out, res.Shards...)
		if res.NextToken == nil {
			return out, nil
		}
		// With NextToken the stream name must be absent.
		in = &kinesis.ListShardsInput{NextToken: res.NextToken}
	}
}

// millisBehind returns the gauge value holder of shard, registering the
// gauge on first use.
func (p *Poller) millisBehind(shard string) *atomic.Int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.behind[shard]
	if v == nil {
		v = new(atomic.Int64)
		p.behind[shard] = v
		p.deps.Metrics.Gauge("les_kinesis_millis_behind", func() float64 { return float64(v.Load()) },
			"stream", p.cfg.Stream, "shard", shard)
	}
	return v
}

// iterator returns a shard iterator after the checkpoint, or at start.
func (p *Poller) iterator(ctx context.Context, c API, shard, start string) (*string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(p.cfg.Stream), ShardId: aws.String(shard)}
	if seq := p.ckpt.seq(shard); seq != "" {
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(seq)
	} else {
		in.ShardIteratorType = types.ShardIteratorType(start)
	}
	out, err := c.GetShardIterator(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("kinesis: get shard iterator %s: %w", shard, err)
	}
	return out.ShardIterator, nil
}

// readShard reads shard until it is closed and fully read (nil), ctx is
// cancelled (nil) or a checkpoint cannot be written (error).
func (p *Poller) readShard(ctx context.Context, c API, shard, start string) error {
	log := p.deps.Log.With("stream", p.cfg.Stream, "shard", shard)
	behind := p.millisBehind(shard)
	var b backoff
	var iter *string
	var batch model.Batch
	for ctx.Err() == nil {
		if iter == nil {
			it, err := p.iterator(ctx, c, shard, start)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.errs.Inc("get_shard_iterator")
				log.Warn("kinesis: no shard iterator; retrying", "err", err)
				_ = b.wait(ctx)
				continue
			}
			if it == nil { // a closed shard past its end
				return p.closeShard(shard)
			}
			iter = it
		}
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var expired *types.ExpiredIteratorException
			var throttled *types.ProvisionedThroughputExceededException
			var kmsThrottled *types.KMSThrottlingException
			var limit *types.LimitExceededException
			switch {
			case errors.As(err, &expired):
				p.errs.Inc("expired_iterator")
				iter = nil // again from the checkpoint
				continue
			case errors.As(err, &throttled), errors.As(err, &kmsThrottled), errors.As(err, &limit):
				p.errs.Inc("throttled")
			default:
				p.errs.Inc("get_records")
				log.Warn("kinesis: get records failed; retrying", "err", err)
			}
			_ = b.wait(ctx)
			continue
		}
		b.reset()
		behind.Store(aws.ToInt64(out.MillisBehindLatest))
		if err := p.process(ctx, shard, out.Records, &batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if out.NextShardIterator == nil {
			behind.Store(0)
			return p.closeShard(shard)
		}
		iter = out.NextShardIterator
		wait := MinPollInterval
		if len(out.Records) == 0 || aws.ToInt64(out.MillisBehindLatest) == 0 {
			wait = p.cfg.PollInterval
		}
		sleep(ctx, wait)
	}
	return nil
}

func (p *Poller) closeShard(shard string) error {
	p.deps.Log.Info("kinesis: shard closed and read to its end", "stream", p.cfg.Stream, "shard", shard)
	return p.ckpt.set(shard, "", true)
}

// process decodes records into batch, publishing and checkpointing each
// time the batch is full and after the last record. It returns nil when
// everything was published or ctx was cancelled, an error when the
// checkpoint cannot be written.
func (p *Poller) process(ctx context.Context, shard string, recs []types.Record, batch *model.Batch) error {
	batch.Reset()
	bytes := 0
	last := ""
	pending := false // records decoded or skipped since the last checkpoint
	flush := func() error {
		if !pending {
			return nil
		}
		if batch.Len() > 0 {
			if err := p.publish(ctx, shard, batch); err != nil {
				return err
			}
		}
		if err := p.ckpt.set(shard, last, false); err != nil {
			return err
		}
		p.logs.Add(batch.Len())
		batch.Reset()
		bytes, pending = 0, false
		return nil
	}
	for i := range recs {
		r := &recs[i]
		p.records.Inc()
		n := len(batch.Rejects)
		_, err := cwlogs.Decode(batch, r.Data)
		if err != nil {
			p.rejected.Inc(reason(err))
		}
		for _, rj := range batch.Rejects[n:] {
			p.rejected.Inc(rj.Reason)
		}
		clear(batch.Rejects[n:])
		batch.Rejects = batch.Rejects[:n]
		bytes += len(r.Data)
		last = aws.ToString(r.SequenceNumber)
		pending = true
		if len(batch.Logs) >= maxBatchLogs || bytes >= maxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// publish calls the publish callback until it succeeds; it returns ctx's
// error when cancelled first.
func (p *Poller) publish(ctx context.Context, shard string, batch *model.Batch) error {
	var b backoff
	for {
		err := p.deps.Publish(ctx, batch)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.errs.Inc("publish")
		p.deps.Log.Warn("kinesis: publishing logs failed; retrying", "stream", p.cfg.Stream, "shard", shard, "err", err)
		if err := b.wait(ctx); err != nil {
			return err
		}
	}
}

func reason(err error) string {
	switch {
	case errors.Is(err, cwlogs.ErrBase64):
		return ReasonBadBase64
	case errors.Is(err, cwlogs.ErrGzip):
		return ReasonBadGzip
	case errors.Is(err, cwlogs.ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, cwlogs.ErrJSON):
		return ReasonBadJSON
	case errors.Is(err, cwlogs.ErrMessageType):
		return ReasonMessageType
	}
	return ReasonInvalid
}

// backoff is a capped exponential backoff with full jitter.
type backoff struct{ n int }

const (
	backoffBase = 200 * time.Millisecond
	backoffMax  = 10 * time.Second
)

func (b *backoff) reset() { b.n = 0 }

func (b *backoff) next() time.Duration {
	d := backoffBase << min(b.n, 10)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

// wait sleeps for the next backoff delay, returning ctx's error when
// cancelled first.
func (b *backoff) wait(ctx context.Context) error {
	sleep(ctx, b.next())
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
