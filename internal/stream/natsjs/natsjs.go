// Package natsjs is the NATS JetStream stream backend, either embedded in
// the les process (nats-server with file storage under the data directory)
// or connected to an external NATS server or cluster.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/les-streams/les/internal/stream"
)

// Config is what users write under `stream:`.
type Config struct {
	// URL of an external NATS server; empty runs an embedded server.
	URL string `yaml:"url"`
	// Credentials file (NATS .creds) and TLS CA for external servers.
	CredsFile string `yaml:"creds_file"`
	TLSCAFile string `yaml:"tls_ca_file"`
	// Token for servers that use token auth; ${ENV} expansion applies.
	// For the embedded server it is required from every client (les tail
	// --token, your consumers); les itself connects in-process.
	Token string `yaml:"token"`

	// Name of the JetStream stream (default "LES").
	Name string `yaml:"name"`
	// MaxAge and MaxBytes bound what the stream retains (defaults 72h, 10 GiB).
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// Replicas for external clusters (default 1).
	Replicas int `yaml:"replicas"`
	// Duplicates is the de-duplication window for batch ids (default 2m).
	Duplicates time.Duration `yaml:"duplicates"`

	// Embedded server settings.
	Listen string `yaml:"listen"` // client address (default 127.0.0.1:4222; "" in tests picks a free port with "127.0.0.1:-1")
	// Sync is "os" (default: every write reaches the OS before the publish
	// is acknowledged, so a crash of les loses nothing acknowledged) or
	// "always" (fsync every write: survives power loss, slower).
	Sync string `yaml:"sync"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.Name == "" {
		c.Name = "LES"
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
	if c.Listen == "" {
		c.Listen = "127.0.0.1:4222"
	}
	switch c.Sync {
	case "", "os":
		c.Sync = "os"
	case "always":
	default:
		return fmt.Errorf("stream.sync: %q is not one of os, always", c.Sync)
	}
	if c.MaxAge < 0 || c.MaxBytes < 0 || c.Replicas < 0 {
		return errors.New("stream: max_age, max_bytes and replicas must not be negative")
	}
	return nil
}

// Stream is a JetStream-backed stream.Stream.
type Stream struct {
	cfg    Config
	log    *slog.Logger
	srv    *server.Server // nil for external servers
	nc     *nats.Conn
	js     jetstream.JetStream
	closed sync.Once
}

// Open starts the embedded server (when cfg.URL is empty, storing under
// dataDir) or connects to cfg.URL, and creates or updates the stream.
func Open(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*Stream, error) {
	return open(ctx, cfg, dataDir, log, true)
}

// Dial connects to the stream of a running les (or any server holding it)
// at cfg.URL without changing the stream's configuration.
func Dial(ctx context.Context, cfg Config, log *slog.Logger) (*Stream, error) {
	if cfg.URL == "" {
		return nil, errors.New("stream: dial needs a URL")
	}
	return open(ctx, cfg, "", log, false)
}

func open(ctx context.Context, cfg Config, dataDir string, log *slog.Logger, create bool) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Stream{cfg: cfg, log: log}
	var opts []nats.Option
	opts = append(opts, nats.Name("les"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	url := cfg.URL
	if url == "" {
		srv, err := startEmbedded(cfg, dataDir)
		if err != nil {
			return nil, err
		}
		s.srv = srv
		url = srv.ClientURL()
		opts = append(opts, nats.InProcessServer(srv))
		if cfg.Token != "" {
			opts = append(opts, nats.Token(cfg.Token))
		}
	} else {
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
		if cfg.TLSCAFile != "" {
			opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
		}
		if cfg.Token != "" {
			opts = append(opts, nats.Token(cfg.Token))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("stream: connect: %w", err)
	}
	s.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("stream: jetstream: %w", err)
	}
	s.js = js
	if !create {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			url := nc.ConnectedUrlRedacted() // cfg.URL may carry a password
			s.Close()
			return nil, fmt.Errorf("stream: %s at %s: %w (is les running?)", cfg.Name, url, err)
		}
		return s, nil
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       cfg.Name,
		Subjects:   []string{stream.Prefix + ".>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     cfg.MaxAge,
		MaxBytes:   cfg.MaxBytes,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.Duplicates,
		Discard:    jetstream.DiscardOld,
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("stream: create stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

func startEmbedded(cfg Config, dataDir string) (*server.Server, error) {
	host, portStr, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("stream.listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("stream.listen: bad port %q", portStr)
	}
	dir := filepath.Join(dataDir, "jetstream")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("stream: data dir: %w", err)
	}
	opts := &server.Options{
		ServerName:         "les-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           dir,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 64 << 20,
	}
	if cfg.Sync == "always" {
		opts.SyncAlways = true
	}
	if cfg.Token != "" {
		opts.Authorization = cfg.Token
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("stream: embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("stream: embedded server did not start listening on %s (port in use?)", cfg.Listen)
	}
	return srv, nil
}

func splitHostPort(a string) (string, string, error) {
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] == ':' {
			return a[:i], a[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("%q has no port", a)
}

// ClientURL is the address other processes (les tail, user consumers) use.
func (s *Stream) ClientURL() string {
	if s.srv != nil {
		return s.srv.ClientURL()
	}
	return s.nc.ConnectedUrlRedacted()
}

// Publish implements stream.Stream. It publishes all records asynchronously
// and waits for every acknowledgement; records the server pushes back on
// (for example a full inbound queue) are retried with backoff until ctx ends.
func (s *Stream) Publish(ctx context.Context, recs ...stream.Record) error {
	if max := s.MaxPayload(); max > 0 {
		for _, r := range recs {
			// Leave room for the subject and the Nats-Msg-Id header.
			if int64(len(r.Data)+len(r.Subject)+len(r.ID)+64) > max {
				return fmt.Errorf("%w: record %s is %d bytes, the server's max_payload is %d", stream.ErrTooLarge, r.ID, len(r.Data), max)
			}
		}
	}
	pending := recs
	backoff := 20 * time.Millisecond
	for {
		failed, err := s.publishOnce(ctx, pending)
		if len(failed) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stream: publish: %w (last error: %v)", ctx.Err(), err)
		}
		s.log.Debug("publish retry", "records", len(failed), "err", err)
		select {
		case <-ctx.Done():
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
		msg := &nats.Msg{Subject: r.Subject, Data: r.Data}
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

// MaxPayload is the largest message the server accepts (0 if unknown).
func (s *Stream) MaxPayload() int64 {
	if s.nc == nil {
		return 0
	}
	return s.nc.MaxPayload()
}

// Consume implements stream.Stream.
func (s *Stream) Consume(ctx context.Context, o stream.ConsumeOptions, h stream.Handler) error {
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 200 * time.Millisecond
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Minute
	}
	var cons jetstream.Consumer
	var err error
	if o.Durable == "" {
		policy := jetstream.DeliverNewPolicy
		if o.FromStart {
			policy = jetstream.DeliverAllPolicy
		}
		if o.StartSeq > 0 {
			policy = jetstream.DeliverByStartSequencePolicy
		}
		cons, err = s.js.OrderedConsumer(ctx, s.cfg.Name, jetstream.OrderedConsumerConfig{
			FilterSubjects: o.Subjects, DeliverPolicy: policy, OptStartSeq: o.StartSeq,
			// Fetch takes no ctx; with unlimited attempts it retries
			// recreating the consumer forever while the server is
			// unreachable. One attempt per Fetch hands the retry to the
			// loop below, which stops with ctx.
			MaxResetAttempts: 1,
		})
	} else {
		want := jetstream.ConsumerConfig{
			Durable:        o.Durable,
			FilterSubjects: o.Subjects,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        o.AckWait,
			MaxAckPending:  o.Batch * 4,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		}
		cons, err = s.reclaimPending(ctx, &want)
		if err == nil && cons == nil {
			cons, err = s.js.CreateOrUpdateConsumer(ctx, s.cfg.Name, want)
		}
	}
	if err != nil {
		return fmt.Errorf("stream: consumer %q: %w", o.Durable, err)
	}
	ds := make([]stream.Delivery, 0, o.Batch)
	msgs := make([]jetstream.Msg, 0, o.Batch)
	retry := 0
	for ctx.Err() == nil {
		batch, err := cons.Fetch(o.Batch, jetstream.FetchMaxWait(o.MaxWait))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Debug("fetch", "consumer", o.Durable, "err", err)
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		ds, msgs = ds[:0], msgs[:0]
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			msgs = append(msgs, m)
			ds = append(ds, stream.Delivery{Subject: m.Subject(), Data: m.Data(),
				Seq: md.Sequence.Stream, NumDelivered: md.NumDelivered, Time: md.Timestamp})
		}
		if len(ds) == 0 {
			continue
		}
		if err := h(ctx, ds); err != nil {
			if o.Durable == "" {
				return err // ordered consumers cannot redeliver
			}
			retry++
			delay := min(time.Duration(retry)*250*time.Millisecond, 10*time.Second)
			for _, m := range msgs {
				_ = m.NakWithDelay(delay)
			}
			continue
		}
		retry = 0
		if o.Durable != "" {
			for i, m := range msgs {
				if i == len(msgs)-1 {
					// Wait for the server to confirm the last ack of a batch:
					// that bounds what a crash can re-deliver.
					// The handler's effects are done, so confirm the ack even
					// when ctx was cancelled meanwhile.
					actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					_ = m.DoubleAck(actx)
					cancel()
				} else {
					_ = m.Ack()
				}
			}
		}
	}
	return nil
}

// reclaimPending looks up the durable consumer want describes. When it
// exists, want keeps its deliver policy (which cannot be updated). With
// the embedded server, this process is the durable's only client, so every
// ack still pending belongs to a crashed incarnation; JetStream would hold
// those records back for AckWait (2m) — and stop delivering altogether
// once a few crashes have filled MaxAckPending. Then the consumer is
// recreated at its ack floor and returned, so they are delivered at once;
// records acknowledged out of order after the floor come again (at least
// once; id-aware sinks skip them). It returns nil when the caller should
// create or update the consumer itself.
func (s *Stream) reclaimPending(ctx context.Context, want *jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := s.js.Consumer(ctx, s.cfg.Name, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	want.DeliverPolicy, want.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
	if s.srv == nil || info.NumAckPending == 0 {
		return nil, nil
	}
	if err := s.js.DeleteConsumer(ctx, s.cfg.Name, want.Durable); err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	want.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	want.OptStartSeq = info.AckFloor.Stream + 1
	c, err = s.js.CreateConsumer(ctx, s.cfg.Name, *want)
	if err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	s.log.Info("redelivering records a previous run left unacknowledged", "consumer", want.Durable,
		"pending", info.NumAckPending, "from_seq", want.OptStartSeq)
	return c, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Lag implements stream.Stream.
func (s *Stream) Lag(ctx context.Context, durable string) (uint64, error) {
	c, err := s.js.Consumer(ctx, s.cfg.Name, durable)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// LastSeq implements stream.Stream.
func (s *Stream) LastSeq(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, s.cfg.Name)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// Close implements stream.Stream: it drains the connection and shuts the
// embedded server down.
func (s *Stream) Close() error {
	s.closed.Do(func() {
		if s.nc != nil {
			_ = s.nc.Drain()
			for s.nc.IsDraining() {
				time.Sleep(10 * time.Millisecond)
			}
			s.nc.Close()
		}
		if s.srv != nil {
			s.srv.Shutdown()
			s.srv.WaitForShutdown()
		}
	})
	return nil
}
