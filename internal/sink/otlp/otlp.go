// Package otlp is a sink that exports metrics, distributions, logs and
// spans with OTLP/HTTP protobuf (POST /v1/metrics, /v1/logs, /v1/traces)
// to an OpenTelemetry Collector or any backend that takes OTLP.
// Distributions become delta exponential histograms; README.md has the
// mapping and the accuracy of the DDSketch → exponential-histogram step.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
)

// Defaults.
const (
	DefaultMaxScale   = 6
	DefaultMaxBuckets = 2048
	// MaxProgress bounds the records whose partly delivered signals are
	// remembered for their retry.
	MaxProgress = 1024
)

// Config is what users write under `otlp:`.
type Config struct {
	// Endpoint is the base URL (required), e.g. "http://collector:4318";
	// requests go to Endpoint + /v1/metrics, /v1/logs, /v1/traces (a path
	// in Endpoint is kept as a prefix, as OTEL_EXPORTER_OTLP_ENDPOINT).
	Endpoint string `yaml:"endpoint"`
	// MetricsPath, LogsPath and TracesPath replace the default paths.
	MetricsPath string `yaml:"metrics_path"`
	LogsPath    string `yaml:"logs_path"`
	TracesPath  string `yaml:"traces_path"`
	// Compression is "gzip" (default) or "none".
	Compression string `yaml:"compression"`
	// Headers are sent with every request.
	Headers map[string]string `yaml:"headers"`
	// TokenEnv or TokenFile name where a credential is read (at New). It
	// is sent as "Authorization: <TokenScheme> <token>" or, when
	// TokenHeader is another header, as that header's whole value (an
	// API key header such as x-honeycomb-team or api-key).
	TokenEnv    string `yaml:"token_env"`
	TokenFile   string `yaml:"token_file"`
	TokenHeader string `yaml:"token_header"` // default Authorization
	TokenScheme string `yaml:"token_scheme"` // default Bearer; only with Authorization
	// TLS configures https endpoints.
	TLS sink.TLSConfig `yaml:"tls"`
	// SourceAttribute is the resource attribute the les source goes to
	// (default service.name); les.source always carries it too.
	SourceAttribute string `yaml:"source_attribute"`
	// ResourceAttributes are added to every resource (e.g.
	// deployment.environment.name).
	ResourceAttributes map[string]string `yaml:"resource_attributes"`
	// MaxScale (default 6, at most 20) and MaxBuckets (default 2048 per
	// sign) choose each exponential histogram's scale: the highest scale
	// <= MaxScale at which its buckets fit (README: Accuracy). Scale 6 is
	// the lowest at which every DDSketch bin keeps a bucket of its own.
	MaxScale   *int `yaml:"max_scale"`
	MaxBuckets int  `yaml:"max_buckets"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	u, err := sink.CheckURL("endpoint", c.Endpoint, "use token_env or token_file")
	if err != nil {
		return err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("endpoint: no query or fragment allowed")
	}
	for _, p := range []struct {
		key string
		v   *string
		def string
	}{{"metrics_path", &c.MetricsPath, "/v1/metrics"}, {"logs_path", &c.LogsPath, "/v1/logs"}, {"traces_path", &c.TracesPath, "/v1/traces"}} {
		if *p.v == "" {
			*p.v = p.def
		} else if !strings.HasPrefix(*p.v, "/") {
			return fmt.Errorf("%s: %q does not start with /", p.key, *p.v)
		}
	}
	if err := sink.OneOf("compression", &c.Compression, "gzip", "none"); err != nil {
		return err
	}
	if err := (&sink.HTTPAuth{Headers: c.Headers}).Validate(nil, ""); err != nil {
		return err
	}
	if c.TokenEnv != "" && c.TokenFile != "" {
		return errors.New("token_env, token_file: give one, not both")
	}
	if c.TokenHeader == "" {
		c.TokenHeader = "Authorization"
	} else if !sink.ValidHeaderName(c.TokenHeader) {
		return fmt.Errorf("token_header: %q is not a valid header name", c.TokenHeader)
	}
	if c.TokenScheme == "" && strings.EqualFold(c.TokenHeader, "Authorization") {
		c.TokenScheme = "Bearer"
	}
	if c.TokenScheme != "" && !strings.EqualFold(c.TokenHeader, "Authorization") {
		return errors.New("token_scheme: only applies to token_header Authorization")
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if !c.TLS.IsZero() && u.Scheme != "https" {
		return errors.New("tls: set, but endpoint is not https")
	}
	if c.SourceAttribute == "" {
		c.SourceAttribute = "service.name"
	}
	if c.MaxScale == nil {
		s := DefaultMaxScale
		c.MaxScale = &s
	} else if *c.MaxScale < MinScale || *c.MaxScale > MaxScale {
		return fmt.Errorf("max_scale: %d is outside [%d, %d]", *c.MaxScale, MinScale, MaxScale)
	}
	switch {
	case c.MaxBuckets == 0:
		c.MaxBuckets = DefaultMaxBuckets
	case c.MaxBuckets < 2 || c.MaxBuckets > 1<<16:
		return fmt.Errorf("max_buckets: %d is outside [2, 65536]", c.MaxBuckets)
	}
	return nil
}

// Counts are totals since New.
type Counts struct {
	Requests uint64 // requests answered 2xx
	Items    uint64 // data points, log records and spans in them
	Bytes    uint64 // request bytes sent (after compression)
	Rejected uint64 // items the backend's partial_success rejected
	Skipped  uint64 // signals of a retried record not sent again (already accepted)
}

// signal is one of the three OTLP request types.
type signal int

const (
	sigMetrics signal = iota // metrics and distributions
	sigLogs
	sigTraces
	numSignals
)

func (s signal) String() string { return [...]string{"metrics", "logs", "traces"}[s] }

// Sink exports to one OTLP/HTTP endpoint. It is safe for concurrent use:
// concurrent Sends run their requests in parallel.
type Sink struct {
	cfg    Config
	name   string
	log    *slog.Logger
	client sink.Client
	urls   [numSignals]string
	header http.Header
	opts   encOptions

	encoders sync.Pool // *encoder
	gzips    sync.Pool // *sink.Gzipper

	dropped  *selfmetric.ReasonCounters
	requests [numSignals]interface{ Inc() }
	reqBytes interface{ Add(int) }

	mu       sync.Mutex
	closed   bool
	progress map[string]uint8 // record id → signals already accepted
	order    []string         // progress keys, oldest first

	counts struct{ requests, items, bytes, rejected, skipped atomic.Uint64 }
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg, reads the credential and TLS files it names, and
// returns a sink. It opens no connection.
func New(cfg Config, d sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("otlp: %w", err)
	}
	s := &Sink{cfg: cfg, name: d.Name, log: d.Log, progress: map[string]uint8{}, header: http.Header{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	token, err := sink.Token(cfg.TokenEnv, cfg.TokenFile, cfg.TokenScheme)
	if err != nil {
		return nil, fmt.Errorf("otlp %s: credential: %w", d.Name, err)
	}
	if _, err := (&sink.HTTPAuth{Headers: cfg.Headers}).Apply(s.header); err != nil {
		return nil, fmt.Errorf("otlp %s: %w", d.Name, err)
	}
	if token != "" {
		s.header.Set(cfg.TokenHeader, token)
	}
	s.header.Set("Content-Type", "application/x-protobuf")
	s.header.Set("User-Agent", "les")
	if cfg.Compression == "gzip" {
		s.header.Set("Content-Encoding", "gzip")
	}
	base := strings.TrimSuffix(cfg.Endpoint, "/")
	s.urls = [numSignals]string{base + cfg.MetricsPath, base + cfg.LogsPath, base + cfg.TracesPath}
	if s.client, err = sink.NewClient(d, cfg.TLS); err != nil {
		return nil, fmt.Errorf("otlp %s: %w", d.Name, err)
	}
	s.opts = encOptions{sourceAttr: cfg.SourceAttribute, maxScale: *cfg.MaxScale, maxBuckets: cfg.MaxBuckets}
	for _, k := range slices.Sorted(maps.Keys(cfg.ResourceAttributes)) {
		s.opts.resource = append(s.opts.resource, model.Tag{Key: k, Value: cfg.ResourceAttributes[k]})
	}
	reg := d.Metrics
	if reg == nil {
		reg = selfmetric.New()
	}
	if d.Metrics == nil && d.Drops == nil {
		d.Metrics = reg
	}
	s.dropped = d.Dropped()
	for sig := range numSignals {
		s.requests[sig] = reg.Counter("les_otlp_sink_requests_total", "sink", d.Name, "signal", sig.String())
	}
	s.reqBytes = reg.Counter("les_otlp_sink_request_bytes_total", "sink", d.Name)
	return s, nil
}

// Send exports b: one request per signal it holds (metrics and
// distributions, then logs, then spans), each one attempt. It returns the
// first failure; the signals accepted before it are remembered by
// m.RecordID (when set), so the retry of the same record sends only the
// rest. Items the mapping cannot carry, and items the backend reports as
// rejected in partial_success, are counted in
// les_sink_dropped_items_total. It does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("otlp %s: %w", s.name, err)
	}
	s.mu.Lock()
	closed, done := s.closed, s.progress[m.RecordID]
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("otlp %s: sink is closed", s.name)
	}
	if b.Len() == 0 {
		return nil
	}
	enc, _ := s.encoders.Get().(*encoder)
	if enc == nil {
		enc = newEncoder(s.opts)
	}
	defer s.encoders.Put(enc)
	for sig := range numSignals {
		if done&(1<<sig) != 0 {
			if has(b, sig) {
				s.counts.skipped.Add(1)
			}
			continue
		}
		var (
			body []byte
			n    int
			d    drops
			err  error
		)
		switch sig {
		case sigMetrics:
			if len(b.Metrics)+len(b.Dists) > 0 {
				body, n, d, err = enc.metricsRequest(b)
			}
		case sigLogs:
			body, n, err = enc.logsRequest(b)
		case sigTraces:
			body, n, d, err = enc.tracesRequest(b)
		}
		if err != nil {
			return sink.Permanent(fmt.Errorf("otlp %s: encode %s: %w", s.name, sig, err))
		}
		if n > 0 {
			if err := s.post(ctx, sig, body, n); err != nil {
				if done != 0 && m.RecordID != "" {
					s.remember(m.RecordID, done)
				}
				return err
			}
		}
		// Items left out count once, when their signal is through.
		for r, c := range d {
			if c > 0 {
				s.dropped.Add(dropReason(r), c)
			}
		}
		done |= 1 << sig
	}
	if m.RecordID != "" {
		s.forget(m.RecordID)
	}
	return nil
}

func has(b *model.Batch, sig signal) bool {
	switch sig {
	case sigMetrics:
		return len(b.Metrics)+len(b.Dists) > 0
	case sigLogs:
		return len(b.Logs) > 0
	}
	return len(b.Spans) > 0
}

func (s *Sink) remember(id string, done uint8) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.progress[id]; !ok {
		if len(s.order) >= MaxProgress {
			delete(s.progress, s.order[0])
			s.order = slices.Delete(s.order, 0, 1)
		}
		id = strings.Clone(id)
		s.order = append(s.order, id)
	}
	s.progress[id] = done
}

func (s *Sink) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.progress[id]; ok {
		delete(s.progress, id)
		if i := slices.Index(s.order, id); i >= 0 {
			s.order = slices.Delete(s.order, i, i+1)
		}
	}
}

// post sends one export request of n items and interprets the answer.
func (s *Sink) post(ctx context.Context, sig signal, body []byte, n int) error {
	if s.cfg.Compression == "gzip" {
		gz, _ := s.gzips.Get().(*sink.Gzipper)
		if gz == nil {
			gz = &sink.Gzipper{Level: gzip.BestSpeed}
		}
		defer s.gzips.Put(gz)
		body = gz.Compress(body)
	}
	size := len(body)
	resp, err := s.client.Do(ctx, s.urls[sig], s.header, body)
	if err != nil {
		// url.Error names the URL (redacted), never the headers.
		return fmt.Errorf("otlp %s: %s: %w", s.name, sig, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		statusBody(resp)
		if err := sink.CheckResponse(resp); err != nil {
			return fmt.Errorf("otlp %s: %s: %w", s.name, sig, err)
		}
		return nil
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if err != nil {
		// The request was answered 2xx: it is accepted, the answer's
		// partial_success is lost.
		s.log.Warn("otlp: reading the export response", "signal", sig.String(), "err", err)
	}
	s.counts.requests.Add(1)
	s.counts.items.Add(uint64(n))
	s.counts.bytes.Add(uint64(size))
	s.requests[sig].Inc()
	s.reqBytes.Add(size)
	rejected, msg, perr := partialSuccess(sig, rb, resp.Header.Get("Content-Type"))
	if perr != nil {
		s.log.Warn("otlp: unreadable export response", "signal", sig.String(), "err", perr)
	}
	if rejected > 0 {
		rejected = min(rejected, int64(n))
		s.counts.rejected.Add(uint64(rejected))
		s.dropped.Add(ReasonPartialSuccess, int(rejected))
		if len(msg) > 512 {
			msg = msg[:512]
		}
		s.log.Warn("otlp: backend rejected part of a request", "signal", sig.String(), "rejected", rejected, "of", n, "message", msg)
	}
	return nil
}

// partialSuccess reads an Export*ServiceResponse (protobuf, or JSON if the
// answer says so; empty means full success).
func partialSuccess(sig signal, body []byte, contentType string) (rejected int64, msg string, err error) {
	if len(body) == 0 {
		return 0, "", nil
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	json := mt == "application/json"
	switch sig {
	case sigMetrics:
		r := pmetricotlp.NewExportResponse()
		if json {
			err = r.UnmarshalJSON(body)
		} else {
			err = r.UnmarshalProto(body)
		}
		return r.PartialSuccess().RejectedDataPoints(), r.PartialSuccess().ErrorMessage(), err
	case sigLogs:
		r := plogotlp.NewExportResponse()
		if json {
			err = r.UnmarshalJSON(body)
		} else {
			err = r.UnmarshalProto(body)
		}
		return r.PartialSuccess().RejectedLogRecords(), r.PartialSuccess().ErrorMessage(), err
	}
	r := ptraceotlp.NewExportResponse()
	if json {
		err = r.UnmarshalJSON(body)
	} else {
		err = r.UnmarshalProto(body)
	}
	return r.PartialSuccess().RejectedSpans(), r.PartialSuccess().ErrorMessage(), err
}

// statusBody replaces a protobuf error answer's body (a google.rpc.Status,
// as OTLP/HTTP specifies) with its message, so sink.CheckResponse reports
// readable text as the reason.
func statusBody(resp *http.Response) {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/x-protobuf" && mt != "application/protobuf" {
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	msg := statusMessage(b)
	resp.Body = io.NopCloser(strings.NewReader(msg))
}

// statusMessage returns field 2 (message) of a google.rpc.Status, or ""
// if b is not one.
func statusMessage(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	return Counts{Requests: s.counts.requests.Load(), Items: s.counts.items.Load(), Bytes: s.counts.bytes.Load(),
		Rejected: s.counts.rejected.Load(), Skipped: s.counts.skipped.Load()}
}

// Close makes later Sends fail and releases idle connections of a client
// built for this sink's TLS settings. Sends in progress finish. A second
// Close returns nil.
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
