// Package datadog is the datadog sink: metrics to Datadog's series API
// (/api/v2/series, or /api/v1/series), distributions as agent sketches
// (/api/beta/sketches, the agent-payload SketchPayload with the agent's
// DDSketch key mapping) or as summary series, and logs to the logs intake
// (/api/v2/logs). The API key comes from the environment (DD_API_KEY) or
// a file; the site picks the endpoints. The encoders (encode.go,
// sketch.go) write JSON and protobuf by hand; README.md documents the
// mapping and the limits.
package datadog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/zlib"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
)

// Defaults and Datadog's documented limits.
const (
	DefaultSite      = "datadoghq.com"
	DefaultAPIKeyEnv = "DD_API_KEY"
	// DefaultMaxRequestBytes bounds a series or sketch request before
	// compression: Datadog takes at most 500 KB compressed and 5 MB
	// uncompressed per series request; JSON series compress well below a
	// fifth.
	DefaultMaxRequestBytes = 1 << 20
	// DefaultMaxLogRequestBytes: the logs intake takes 5 MB uncompressed
	// and 1000 entries per request.
	DefaultMaxLogRequestBytes = 4 << 20
	// DefaultMaxLogLength: a log over 1 MB is truncated by Datadog; the
	// sink cuts the message first.
	DefaultMaxLogLength = 1_000_000
)

// Config is what users write under `datadog:`.
type Config struct {
	// Site is the Datadog site (default datadoghq.com; datadoghq.eu,
	// us3.datadoghq.com, us5.datadoghq.com, ap1.datadoghq.com,
	// ddog-gov.com, …): metrics go to https://api.<site>, logs to
	// https://http-intake.logs.<site>.
	Site string `yaml:"site"`
	// APIURL and LogsURL override those base URLs (a proxy, a test
	// receiver; VictoriaMetrics: http://vm:8428/datadog with series_api v1).
	APIURL  string `yaml:"api_url"`
	LogsURL string `yaml:"logs_url"`
	// APIKeyEnv (default DD_API_KEY) or APIKeyFile holds the API key, sent
	// as DD-API-KEY.
	APIKeyEnv  string `yaml:"api_key_env"`
	APIKeyFile string `yaml:"api_key_file"`
	// SeriesAPI is "v2" (default: /api/v2/series) or "v1"
	// (/api/v1/series, which VictoriaMetrics and older proxies take).
	SeriesAPI string `yaml:"series_api"`
	// Distributions is "sketches" (default: /api/beta/sketches, queryable
	// as Datadog distributions with any percentile) or "series" (.count,
	// .sum, .min, .max, .avg and one gauge per precomputed percentile).
	Distributions string `yaml:"distributions"`
	// SourceAs is "host" (default: the item's source is the host) or
	// "tag" (a source:<source> tag, no host).
	SourceAs string `yaml:"source_as"`
	// Tags are added to every series, sketch and log (k:v or k).
	Tags []string `yaml:"tags"`
	// LogSource is every log's ddsource (default les); Service the
	// service of logs without a service attribute (default: the source).
	LogSource string `yaml:"log_source"`
	Service   string `yaml:"service"`
	// Compression is "gzip" (default; sketches use zlib "deflate", as the
	// agent does) or "none".
	Compression        string `yaml:"compression"`
	MaxRequestBytes    int    `yaml:"max_request_bytes"`
	MaxLogRequestBytes int    `yaml:"max_log_request_bytes"`
	MaxLogLength       int    `yaml:"max_log_length"`

	TLS sink.TLSConfig `yaml:"tls"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.Site == "" {
		c.Site = DefaultSite
	}
	for _, r := range c.Site {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return fmt.Errorf("site: %q is not a host name like datadoghq.com or datadoghq.eu", c.Site)
		}
	}
	if strings.HasPrefix(c.Site, "app.") || strings.HasPrefix(c.Site, "api.") {
		return fmt.Errorf("site: %q: give the site without app. or api. (e.g. datadoghq.eu)", c.Site)
	}
	for _, u := range []struct {
		key string
		v   *string
		def string
	}{{"api_url", &c.APIURL, "https://api." + c.Site}, {"logs_url", &c.LogsURL, "https://http-intake.logs." + c.Site}} {
		if *u.v == "" {
			*u.v = u.def
		}
		if _, err := sink.CheckURL(u.key, *u.v, ""); err != nil {
			return err
		}
		*u.v = strings.TrimRight(*u.v, "/")
	}
	if c.APIKeyEnv != "" && c.APIKeyFile != "" {
		return errors.New("api_key_env, api_key_file: give one")
	}
	if c.APIKeyEnv == "" && c.APIKeyFile == "" {
		c.APIKeyEnv = DefaultAPIKeyEnv
	}
	for _, err := range []error{
		sink.OneOf("series_api", &c.SeriesAPI, "v2", "v1"),
		sink.OneOf("distributions", &c.Distributions, "sketches", "series"),
		sink.OneOf("source_as", &c.SourceAs, "host", "tag"),
		sink.OneOf("compression", &c.Compression, "gzip", "none"),
	} {
		if err != nil {
			return err
		}
	}
	for _, t := range c.Tags {
		if t == "" || strings.ContainsAny(t, ", \t\n") {
			return fmt.Errorf("tags: %q: a tag is k:v or k, without commas or spaces", t)
		}
	}
	if c.LogSource == "" {
		c.LogSource = "les"
	}
	if err := sink.CheckSizes(
		sink.Size{Key: "max_request_bytes", V: &c.MaxRequestBytes, Def: DefaultMaxRequestBytes, Min: 1024},
		sink.Size{Key: "max_log_request_bytes", V: &c.MaxLogRequestBytes, Def: DefaultMaxLogRequestBytes, Min: 1024},
		sink.Size{Key: "max_log_length", V: &c.MaxLogLength, Def: DefaultMaxLogLength},
	); err != nil {
		return err
	}
	if c.MaxLogRequestBytes > 5_000_000 {
		return errors.New("max_log_request_bytes: Datadog takes at most 5 MB per request")
	}
	return c.TLS.Validate()
}

// Counts are totals since New.
type Counts struct {
	Requests uint64 // requests Datadog accepted (2xx)
	Items    uint64 // metrics, distributions and logs in them
	Skipped  uint64 // requests not sent again on a retry: accepted by an earlier attempt
	Ignored  uint64 // spans handed to the sink (it does not take them)
}

// Sink delivers to one Datadog site. It is safe for concurrent use;
// Sends are serialised (they share buffers).
type Sink struct {
	cfg     Config
	name    string
	client  sink.Client
	keyFrom string
	dropped *selfmetric.ReasonCounters
	urls    [3]string      // series, sketches, logs
	headers [3]http.Header // of each endpoint's requests

	mu       sync.Mutex
	closed   bool
	enc      *encoder
	gz       sink.Gzipper
	body     bytes.Buffer // zlib-compressed sketches
	zl       *zlib.Writer
	accepted sink.Accepted
	counts   Counts
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It reads the API key (and TLS
// files) but connects to nothing.
func New(cfg Config, d sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := sink.Secret(cfg.APIKeyEnv, cfg.APIKeyFile)
	if err != nil {
		return nil, fmt.Errorf("api key: %w", err)
	}
	if d.Metrics == nil {
		d.Metrics = selfmetric.New()
	}
	s := &Sink{cfg: cfg, name: d.Name, keyFrom: cfg.APIKeyEnv + cfg.APIKeyFile, dropped: d.Dropped()}
	if s.client, err = sink.NewClient(d, cfg.TLS); err != nil {
		return nil, err
	}
	s.urls = [3]string{cfg.APIURL + "/api/" + cfg.SeriesAPI + "/series", cfg.APIURL + "/api/beta/sketches", cfg.LogsURL + "/api/v2/logs"}
	for i := range s.headers {
		h := http.Header{}
		h.Set("DD-API-KEY", key)
		h.Set("User-Agent", "les")
		h.Set("Content-Type", "application/json")
		if i == 1 {
			h.Set("Content-Type", "application/x-protobuf")
		}
		switch {
		case cfg.Compression != "gzip":
		case i == 1: // sketches: zlib, as the agent sends them
			h.Set("Content-Encoding", "deflate")
		default:
			h.Set("Content-Encoding", "gzip")
		}
		s.headers[i] = h
	}
	s.enc = newEncoder(encOptions{seriesV1: cfg.SeriesAPI == "v1", sketches: cfg.Distributions == "sketches", sourceAsTag: cfg.SourceAs == "tag",
		tags: cfg.Tags, logSource: cfg.LogSource, service: cfg.Service, maxBytes: cfg.MaxRequestBytes,
		maxLogBytes: cfg.MaxLogRequestBytes, maxLogLength: cfg.MaxLogLength})
	return s, nil
}

// Send encodes b into series, sketch and log requests and posts them one
// after another. It returns nil when every request was accepted. A
// request answered 408, 429, 5xx or not at all fails the Send with a
// retryable error; the retry encodes b to the same bytes and skips the
// requests already accepted. Other 4xx answers are permanent errors (403:
// the API key was refused). Items Datadog would refuse (names, non-finite
// values) are dropped and counted. Spans are ignored. It does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, _ sink.Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.errorf("sink is closed")
	}
	s.counts.Ignored += uint64(len(b.Spans))
	s.enc.encode(b)
	err := s.postAll(ctx)
	if err != nil && !errors.Is(err, sink.ErrPermanent) {
		return s.errorf("%w", err)
	}
	s.accepted.Reset()
	for r, n := range s.enc.drops {
		s.dropped.Add(r, n)
	}
	if err != nil {
		return s.errorf("%w", err)
	}
	s.counts.Items += uint64(s.enc.items)
	return nil
}

func (s *Sink) postAll(ctx context.Context) error {
	for i, rs := range []*requests{&s.enc.series, &s.enc.sketches, &s.enc.logs} {
		for _, r := range rs.all() {
			if err := s.post(ctx, i, r.raw); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Sink) errorf(format string, args ...any) error {
	err := fmt.Errorf("datadog sink %q: "+format, append([]any{s.name}, args...)...)
	for _, a := range args {
		if e, ok := a.(error); ok && errors.Is(e, sink.ErrPermanent) {
			return sink.Permanent(err)
		}
	}
	return err
}

var endpointNames = [3]string{"series", "sketches", "logs"}

// post sends raw to endpoint i (0 series, 1 sketches, 2 logs), unless an
// earlier attempt of this batch had it accepted.
func (s *Sink) post(ctx context.Context, i int, raw []byte) error {
	h := s.accepted.Hash(raw)
	if s.accepted.Has(h) {
		s.counts.Skipped++
		return nil
	}
	resp, err := s.client.Do(ctx, s.urls[i], s.headers[i], s.compress(i, raw))
	if err != nil {
		return fmt.Errorf("%s: %w", endpointNames[i], err)
	}
	err = sink.CheckResponse(resp)
	if err == nil {
		s.accepted.Add(h)
		s.counts.Requests++
		return nil
	}
	if se, ok := errors.AsType[*sink.StatusError](err); ok && (se.Code == http.StatusForbidden || se.Code == http.StatusUnauthorized) {
		return fmt.Errorf("%s: %w (the API key from %s was refused: a wrong key, or a key of another site than %s)", endpointNames[i], err, s.keyFrom, s.cfg.Site)
	}
	return fmt.Errorf("%s: %w", endpointNames[i], err)
}

// compress returns the body to send to endpoint i, as its headers'
// Content-Encoding says. The body is valid until the next call.
func (s *Sink) compress(i int, raw []byte) []byte {
	if s.cfg.Compression != "gzip" {
		return raw
	}
	if i != 1 {
		return s.gz.Compress(raw)
	}
	s.body.Reset() // sketches: zlib, as the agent sends them
	if s.zl == nil {
		s.zl = zlib.NewWriter(&s.body)
	} else {
		s.zl.Reset(&s.body)
	}
	_, _ = s.zl.Write(raw)
	_ = s.zl.Close()
	return s.body.Bytes()
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Close releases idle connections. Later Sends fail; a second Close
// returns nil.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.client.CloseIdle()
	return nil
}
