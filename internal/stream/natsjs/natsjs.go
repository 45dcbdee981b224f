// Package natsjs is the NATS JetStream stream backend: a client of an
// external NATS server or cluster (stream.kind nats) and the client half
// of the embedded backend (package embedded runs the server). It does not
// link nats-server.
//
// Subjects are les.<origin>.<signal>.<partition>. JetStream keeps one
// sequence per stream, so a delivery's physical partition is the logical
// partition token and its position the stream sequence, which increases
// within every partition. Publishes carry the record id as Nats-Msg-Id,
// so re-publishes within the stream's duplicate window are dropped.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Config is what users write under `stream.nats:`.
type Config struct {
	// URL of a NATS server; Servers lists several (a cluster). At least
	// one of them is required.
	URL     string   `yaml:"url"`
	Servers []string `yaml:"servers"`
	// CredsFile is a NATS .creds file; Token, User and Password are the
	// other ways to authenticate (${ENV} expansion applies).
	CredsFile string `yaml:"creds_file"`
	Token     string `yaml:"token"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	// TLS: a CA to verify the servers, and a client certificate.
	TLSCAFile   string `yaml:"tls_ca_file"`
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`

	// Name of the JetStream stream (default "LES").
	Name string `yaml:"name"`
	// Create makes les create or update the stream (default true); false
	// uses a stream an operator created.
	Create *bool `yaml:"create"`
	// MaxAge and MaxBytes bound what the stream retains (defaults 72h, 10 GiB).
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// MaxMsgs bounds the number of records retained (default 0: no bound).
	MaxMsgs int64 `yaml:"max_msgs"`
	// Replicas of the stream in a cluster (default 1; 3 survives losing a node).
	Replicas int `yaml:"replicas"`
	// Duplicates is the de-duplication window for record ids (default 2m).
	Duplicates time.Duration `yaml:"duplicates"`
}

// Validate fills defaults and checks values; errors name the field under
// `stream.nats`.
func (c *Config) Validate() error {
	if c.Name == "" {
		c.Name = "LES"
	}
	if c.Create == nil {
		t := true
		c.Create = &t
	}
	if c.MaxAge == 0 {
		c.MaxAge = 72 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 10 << 30
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.MaxAge < 0 || c.MaxBytes < 0 || c.MaxMsgs < 0 || c.Replicas < 0 || c.Duplicates < 0 {
		return errors.New("max_age, max_bytes, max_msgs, replicas and duplicates must not be negative")
	}
	if c.Replicas > 5 {
		return fmt.Errorf("replicas: %d is more than JetStream's maximum of 5", c.Replicas)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("tls_cert_file and tls_key_file go together")
	}
	return nil
}

// url returns the server list for nats.Connect.
func (c *Config) url() string {
	urls := c.Servers
	if c.URL != "" {
		urls = append([]string{c.URL}, urls...)
	}
	return strings.Join(urls, ",")
}

// Deps is what code supplies.
type Deps struct {
	Log     *slog.Logger
	Metrics *selfmetric.Registry // nil: a private registry
	// Backend names the backend in Capabilities and metrics (default "nats").
	Backend string
	// ConnOptions are extra connection options (the embedded backend
	// connects in-process).
	ConnOptions []nats.Option
	// SoleClient says this process is the only client of its durable
	// consumers (the embedded server): acks a previous run left pending
	// are then redelivered at once instead of after AckWait.
	SoleClient bool
	// MustExist makes Open fail unless the stream exists (les tail).
	MustExist bool
	// StatePath is where the lost-range check (lost.go) keeps the
	// stream's end between runs ("": nowhere; the embedded backend keeps
	// it under the data directory).
	StatePath string
	// WatchInterval is how often the stream's end is checked for moving
	// backwards (default 2s; negative: never, CheckCursors only).
	WatchInterval time.Duration
}

// Stream is a JetStream-backed stream.Stream.
type Stream struct {
	cfg        Config
	deps       Deps
	log        *slog.Logger
	partitions int
	nc         *nats.Conn
	js         jetstream.JetStream
	closed     sync.Once

	ready   sync.Mutex // held while ensuring the stream exists
	created bool

	publishErrors *metrics.Counter
	retries       *metrics.Counter
	gaps          *metrics.Counter

	guard     *guard
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// Open connects to the servers of cfg and, unless cfg.Create is false,
// creates or updates the stream. When the servers are unreachable it
// still returns a Stream that keeps reconnecting (so an agent can start,
// spool and say so); operations fail until a server answers. With
// deps.MustExist it fails instead.
func Open(ctx context.Context, cfg Config, partitions int, deps Deps) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stream.nats: %w", err)
	}
	if cfg.url() == "" {
		return nil, errors.New("stream.nats: url or servers is required")
	}
	if partitions < 1 {
		partitions = 1
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = selfmetric.New()
	}
	if deps.Backend == "" {
		deps.Backend = "nats"
	}
	s := &Stream{cfg: cfg, deps: deps, log: deps.Log, partitions: partitions,
		publishErrors: deps.Metrics.Counter("les_stream_publish_errors_total", "backend", deps.Backend),
		retries:       deps.Metrics.Counter("les_stream_publish_retries_total", "backend", deps.Backend),
		gaps:          deps.Metrics.Counter("les_stream_position_gaps_total", "backend", deps.Backend),
	}
	s.guard = newGuard(deps.StatePath, deps.Metrics.Counter("les_stream_lost_records_total", "backend", deps.Backend))
	opts := []nats.Option{nats.Name("les"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(!deps.MustExist)}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	opts = append(opts, deps.ConnOptions...)
	nc, err := nats.Connect(cfg.url(), opts...)
	if err != nil {
		return nil, fmt.Errorf("stream: connect: %w", err)
	}
	s.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(pubAckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("stream: jetstream: %w", err)
	}
	s.js = js
	if deps.MustExist {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			url := nc.ConnectedUrlRedacted() // the URL may carry a password
			s.Close()
			return nil, fmt.Errorf("stream: %s at %s: %w (is les running?)", cfg.Name, url, err)
		}
		s.created = true
		return s, nil
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.ensure(ectx); err != nil {
		s.log.Warn("the stream is not reachable yet; les keeps trying (records are spooled meanwhile)",
			"backend", deps.Backend, "err", err)
	}
	s.startWatch()
	return s, nil
}

// startWatch runs the lost-range watcher (lost.go) until Close.
func (s *Stream) startWatch() {
	interval := s.deps.WatchInterval
	if interval < 0 {
		return
	}
	if interval == 0 {
		interval = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatch, s.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(s.watchDone)
		s.watch(ctx, interval)
	}()
}

// ensure creates or updates the stream once per Stream.
func (s *Stream) ensure(ctx context.Context) error {
	s.ready.Lock()
	defer s.ready.Unlock()
	if s.created {
		return nil
	}
	if !*s.cfg.Create {
		if _, err := s.js.Stream(ctx, s.cfg.Name); err != nil {
			return fmt.Errorf("stream: %s: %w", s.cfg.Name, err)
		}
		s.created = true
		return nil
	}
	_, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       s.cfg.Name,
		Subjects:   []string{prefix + ".>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     s.cfg.MaxAge,
		MaxBytes:   s.cfg.MaxBytes,
		MaxMsgs:    maxMsgs(s.cfg.MaxMsgs),
		Replicas:   s.cfg.Replicas,
		Duplicates: s.cfg.Duplicates,
		Discard:    jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("stream: create stream %s: %w", s.cfg.Name, err)
	}
	s.created = true
	return nil
}

func maxMsgs(n int64) int64 {
	if n <= 0 {
		return -1 // JetStream's "no limit"
	}
	return n
}

// prefix is the first token of every les subject.
const prefix = "les"

// Subject returns "les.<origin>.<signal>.<partition>".
func Subject(origin string, sig wire.Signal, partition int) string {
	return prefix + "." + origin + "." + sig.String() + "." + strconv.Itoa(partition)
}

// parseSubject splits a les subject; ok is false for any other subject.
func parseSubject(subj string) (origin string, sig wire.Signal, part string, ok bool) {
	t := strings.Split(subj, ".")
	if len(t) != 4 || t[0] != prefix {
		return "", 0, "", false
	}
	sig, err := wire.ParseSignal(t[2])
	if err != nil {
		return "", 0, "", false
	}
	return t[1], sig, t[3], true
}

// filters maps consumer options to subject filters.
func (s *Stream) filters(origins []string, sigs []wire.Signal, parts []int) []string {
	os := origins
	if len(os) == 0 {
		os = []string{"*"}
	}
	ss := make([]string, 0, len(sigs))
	for _, sg := range sigs {
		ss = append(ss, sg.String())
	}
	if len(ss) == 0 {
		ss = []string{"*"}
	}
	ps := []string{"*"}
	if parts != nil {
		ps = ps[:0]
		for _, p := range parts {
			ps = append(ps, strconv.Itoa(p))
		}
	}
	var out []string
	for _, o := range os {
		for _, sg := range ss {
			for _, p := range ps {
				out = append(out, prefix+"."+o+"."+sg+"."+p)
			}
		}
	}
	return out
}

// ClientURL is the address other processes use (password redacted).
func (s *Stream) ClientURL() string { return s.nc.ConnectedUrlRedacted() }

// Capabilities implements stream.Stream.
func (s *Stream) Capabilities() stream.Capabilities {
	max := int64(1 << 20) // nats-server's default until connected
	if mp := s.nc.MaxPayload(); mp > 0 {
		max = mp
	}
	return stream.Capabilities{Backend: s.deps.Backend, Partitions: s.partitions,
		MaxRecordBytes: max - overhead, DedupWindow: s.cfg.Duplicates, DurableCursors: true}
}

// pubAckTimeout is how long Publish waits for one record's
// acknowledgement before publishing it again (the same Nats-Msg-Id, so a
// record that was stored after all is dropped as a duplicate). Without it
// an ack that never comes — the stream leader of a cluster went down with
// the record in flight while this connection, to another node, stayed up —
// blocks Publish until its ctx ends. It is JetStream's default API timeout
// and below the agent's publish_timeout (10s), so one retry fits.
const pubAckTimeout = 5 * time.Second

// overhead leaves room in a message for the subject and headers.
const overhead = 256

// Publish implements stream.Stream. It publishes all records
// asynchronously and waits for every acknowledgement; records the server
// pushes back on (for example a full inbound queue, or no server
// reachable) are retried with backoff until ctx ends.
func (s *Stream) Publish(ctx context.Context, recs ...stream.Record) error {
	max := s.Capabilities().MaxRecordBytes
	for _, r := range recs {
		if int64(len(r.Data)) > max {
			return fmt.Errorf("%w: record %s is %d bytes, the server accepts %d", stream.ErrTooLarge, r.ID, len(r.Data), max)
		}
		if r.Partition < 0 || r.Partition >= s.partitions {
			return fmt.Errorf("stream: record %s: partition %d not in [0,%d)", r.ID, r.Partition, s.partitions)
		}
	}
	if err := s.ensure(ctx); err != nil {
		s.publishErrors.Inc()
		return err
	}
	pending := recs
	backoff := 20 * time.Millisecond
	for {
		failed, err := s.publishOnce(ctx, pending)
		if len(failed) == 0 {
			return nil
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			s.publishErrors.Inc()
			return fmt.Errorf("%w: %v", stream.ErrTooLarge, err)
		}
		if ctx.Err() != nil {
			s.publishErrors.Inc()
			return fmt.Errorf("stream: publish: %w (last error: %v)", ctx.Err(), err)
		}
		s.retries.Inc()
		s.log.Debug("publish retry", "records", len(failed), "err", err)
		select {
		case <-ctx.Done():
			s.publishErrors.Inc()
			return fmt.Errorf("stream: publish: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
		pending = failed
	}
}

func (s *Stream) publishOnce(ctx context.Context, recs []stream.Record) ([]stream.Record, error) {
	futures := make([]jetstream.PubAckFuture, len(recs))
	var failed []stream.Record
	var lastErr error
	for i := range recs {
		r := &recs[i]
		msg := &nats.Msg{Subject: Subject(r.Origin, r.Signal, r.Partition), Data: r.Data}
		f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(r.ID))
		if err != nil {
			failed = append(failed, *r)
			lastErr = err
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			failed = append(failed, recs[i])
			lastErr = err
		case <-ctx.Done():
			return append(failed, recs[i:]...), ctx.Err()
		}
	}
	return failed, lastErr
}
