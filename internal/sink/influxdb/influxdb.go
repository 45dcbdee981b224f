// Package influxdb is a sink that writes metrics, distributions, logs and
// spans as InfluxDB line protocol over HTTP: to InfluxDB 1.x's /write
// (version 1), to InfluxDB 2.x/3.x's /api/v2/write (version 2), or to
// anything that takes either (VictoriaMetrics takes both). The encoder is
// in line.go; the mapping of items to points is in README.md.
package influxdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
)

// DefaultMaxBody is the default bound on one request body (before
// compression). InfluxDB 1.x refuses bodies above 25 MB by default.
const DefaultMaxBody = 4 << 20

// Config is what users write under `influxdb:`.
type Config struct {
	// URL is the server's base URL (required), e.g. http://127.0.0.1:8086.
	URL string `yaml:"url"`
	// Version is 1 (default: POST /write?db=&rp=&precision=ns, InfluxDB
	// 1.x) or 2 (POST /api/v2/write?org=&bucket=&precision=ns).
	Version int `yaml:"version"`

	// Version 1: Database is required; RetentionPolicy is optional.
	// Username with the password from PasswordEnv or PasswordFile is sent
	// as HTTP basic auth (never in the URL).
	Database        string `yaml:"database"`
	RetentionPolicy string `yaml:"retention_policy"`
	Username        string `yaml:"username"`
	PasswordEnv     string `yaml:"password_env"`
	PasswordFile    string `yaml:"password_file"`

	// Version 2: Org and Bucket are required; the token from TokenEnv or
	// TokenFile is sent as `Authorization: Token …`.
	Org       string `yaml:"org"`
	Bucket    string `yaml:"bucket"`
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`

	// Compression is "none" (default) or "gzip".
	Compression string `yaml:"compression"`
	// MaxBody bounds one request body in bytes before compression
	// (default 4 MiB); a larger batch is sent in several requests, split
	// between lines.
	MaxBody int `yaml:"max_body"`
	// LogMeasurement and SpanMeasurement name the measurements of logs
	// and spans (default "logs", "spans").
	LogMeasurement  string `yaml:"log_measurement"`
	SpanMeasurement string `yaml:"span_measurement"`
	// LogAttrs is "fields" (default: log attributes become string fields)
	// or "tags" (they become tags: only for attributes of few values).
	LogAttrs string `yaml:"log_attrs"`

	TLS sink.TLSConfig `yaml:"tls"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if _, err := sink.CheckURL("url", c.URL, "use username and password_env/password_file, or token_env/token_file"); err != nil {
		return err
	}
	switch c.Version {
	case 0:
		c.Version = 1
		fallthrough
	case 1:
		if c.Database == "" {
			return errors.New("database: required with version 1")
		}
		if c.Org != "" || c.Bucket != "" || c.TokenEnv != "" || c.TokenFile != "" {
			return errors.New("org, bucket, token_env and token_file are for version 2")
		}
		if (c.PasswordEnv != "" || c.PasswordFile != "") && c.Username == "" {
			return errors.New("username: required with a password")
		}
		if c.PasswordEnv != "" && c.PasswordFile != "" {
			return errors.New("password_env, password_file: give one, not both")
		}
	case 2:
		if c.Org == "" || c.Bucket == "" {
			return errors.New("org, bucket: required with version 2")
		}
		if c.Database != "" || c.RetentionPolicy != "" || c.Username != "" || c.PasswordEnv != "" || c.PasswordFile != "" {
			return errors.New("database, retention_policy, username and password_* are for version 1")
		}
		if c.TokenEnv != "" && c.TokenFile != "" {
			return errors.New("token_env, token_file: give one, not both")
		}
	default:
		return fmt.Errorf("version: %d is not one of 1, 2", c.Version)
	}
	if err := sink.OneOf("compression", &c.Compression, "none", "gzip"); err != nil {
		return err
	}
	if err := sink.OneOf("log_attrs", &c.LogAttrs, "fields", "tags"); err != nil {
		return err
	}
	if err := sink.CheckSizes(sink.Size{Key: "max_body", V: &c.MaxBody, Def: DefaultMaxBody, Min: 1024}); err != nil {
		return err
	}
	if c.LogMeasurement == "" {
		c.LogMeasurement = "logs"
	}
	if c.SpanMeasurement == "" {
		c.SpanMeasurement = "spans"
	}
	return c.TLS.Validate()
}

// Counts are totals since New.
type Counts struct {
	Requests uint64 // requests the server answered 2xx
	Lines    uint64 // lines in those requests
	Dropped  uint64 // items left out by the encoder or refused by the server
}

// Sink writes to one InfluxDB-compatible server. It is safe for
// concurrent use: each Send encodes into an encoder and buffers of its own
// (taken from a pool), so the runner's `concurrency` Sends are in flight
// at once.
type Sink struct {
	cfg      Config
	name     string
	client   sink.Client
	endpoint string
	header   http.Header
	log      func(msg string, args ...any)
	dropped  *selfmetric.ReasonCounters

	encoder Encoder   // the settings each sendState's encoder copies
	states  sync.Pool // *sendState

	mu     sync.Mutex
	closed bool
	counts Counts
}

// sendState is one Send's encoder and buffers.
type sendState struct {
	enc Encoder
	buf []byte
	gz  sink.Gzipper
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It reads the credential (from the
// environment or its file) and the TLS files, but connects to nothing.
func New(cfg Config, d sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Metrics == nil {
		d.Metrics = selfmetric.New()
	}
	s := &Sink{cfg: cfg, name: d.Name, dropped: d.Dropped(),
		encoder: Encoder{Version: cfg.Version, LogMeasurement: cfg.LogMeasurement, SpanMeasurement: cfg.SpanMeasurement, LogAttrs: cfg.LogAttrs}}
	s.log = func(string, ...any) {}
	if d.Log != nil {
		s.log = d.Log.Warn
	}
	var err error
	if s.client, err = sink.NewClient(d, cfg.TLS); err != nil {
		return nil, err
	}
	s.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	if cfg.Compression == "gzip" {
		s.header.Set("Content-Encoding", "gzip")
	}
	q := url.Values{}
	q.Set("precision", "ns")
	base := strings.TrimRight(cfg.URL, "/")
	switch cfg.Version {
	case 1:
		q.Set("db", cfg.Database)
		if cfg.RetentionPolicy != "" {
			q.Set("rp", cfg.RetentionPolicy)
		}
		s.endpoint = base + "/write?" + q.Encode()
		if cfg.Username != "" {
			ba := sink.BasicAuth{Username: cfg.Username, PasswordEnv: cfg.PasswordEnv, PasswordFile: cfg.PasswordFile}
			v, err := ba.Value()
			if err != nil {
				return nil, fmt.Errorf("password: %w", err)
			}
			s.header.Set("Authorization", v)
		}
	case 2:
		q.Set("org", cfg.Org)
		q.Set("bucket", cfg.Bucket)
		s.endpoint = base + "/api/v2/write?" + q.Encode()
		v, err := sink.Token(cfg.TokenEnv, cfg.TokenFile, "Token")
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		if v != "" {
			s.header.Set("Authorization", v)
		}
	}
	return s, nil
}

// Send encodes b and POSTs it in one request, or several of at most
// max_body bytes split between lines. It returns nil once every request
// was answered 2xx. A failed request returns an error naming the sink
// (never the credential): retryable for transport errors, 408, 429 and
// 5xx (honouring Retry-After), permanent for other 4xx. A retry sends the
// whole batch again; InfluxDB keeps one point per series and timestamp,
// so points already written are overwritten with the same values.
//
// A 400 or 422 answer saying "partial write" (the server stored the other
// points and refused some, e.g. for a field type conflict) is not an
// error: the refused points are counted as dropped, reason
// backend_refused, and logged once per Send. It does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	if err := ctx.Err(); err != nil {
		return s.errorf("%w", err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return s.errorf("sink is closed")
	}
	st, _ := s.states.Get().(*sendState)
	if st == nil {
		st = &sendState{enc: s.encoder}
	}
	defer s.states.Put(st)
	st.enc.Drops = Drops{}
	buf, n := st.enc.AppendBatch(st.buf[:0], b)
	st.buf = buf
	defer func() {
		if cap(st.buf) > 16<<20 {
			st.buf = nil // do not pin one huge batch's buffer
		}
	}()
	s.countDrops(st.enc.Drops)
	for len(buf) > 0 {
		chunk := buf
		if len(chunk) > s.cfg.MaxBody {
			cut := bytes.LastIndexByte(chunk[:s.cfg.MaxBody], '\n') + 1
			if cut == 0 { // one line longer than max_body: send it alone
				cut = bytes.IndexByte(chunk, '\n') + 1
			}
			chunk = chunk[:cut]
		}
		buf = buf[len(chunk):]
		if err := s.post(ctx, st, chunk); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.counts.Lines += uint64(n)
	s.mu.Unlock()
	return nil
}

func (s *Sink) countDrops(d Drops) {
	for _, r := range []struct {
		n      int
		reason string
	}{{d.EmptyName, ReasonEmptyName}, {d.NonFinite, ReasonNonFinite}, {d.LineBreak, ReasonLineBreak}, {d.Backslash, ReasonBackslash}} {
		if r.n > 0 {
			s.dropped.Add(r.reason, r.n)
			s.mu.Lock()
			s.counts.Dropped += uint64(r.n)
			s.mu.Unlock()
		}
	}
}

func (s *Sink) post(ctx context.Context, st *sendState, body []byte) error {
	if s.cfg.Compression == "gzip" {
		body = st.gz.Compress(body)
	}
	err := s.client.Post(ctx, s.endpoint, s.header, body)
	if se, ok := errors.AsType[*sink.StatusError](err); ok && (se.Code == 400 || se.Code == 422) && strings.Contains(se.Reason, "partial write") {
		n := partialDropped(se.Reason)
		s.dropped.Add(ReasonBackendRefused, n)
		s.mu.Lock()
		s.counts.Dropped += uint64(n)
		s.mu.Unlock()
		s.log("influxdb: server refused some points", "status", se.Code, "reason", se.Reason)
		err = nil
	}
	if err != nil {
		return s.errorf("%w", err)
	}
	s.mu.Lock()
	s.counts.Requests++
	s.mu.Unlock()
	return nil
}

var droppedRE = regexp.MustCompile(`dropped=(\d+)`)

// partialDropped reads N from "... dropped=N" (1 if absent).
func partialDropped(reason string) int {
	if m := droppedRE.FindStringSubmatch(reason); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return n
		}
	}
	return 1
}

func (s *Sink) errorf(format string, args ...any) error {
	return fmt.Errorf("influxdb sink %q: "+format, append([]any{s.name}, args...)...)
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Close makes later Sends fail and releases idle connections of a client
// of its own. Nothing is buffered between Sends, so there is nothing to
// flush. A second Close returns nil.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.client.CloseIdle()
	}
	s.closed = true
	return nil
}
