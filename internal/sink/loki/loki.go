// Package loki is the loki sink: it delivers log records to Grafana Loki's
// push API (POST /loki/api/v1/push) as a protobuf PushRequest with snappy
// block compression (the default) or as JSON, optionally gzipped.
//
// A log record's stream labels come from a small configured set of fields
// (default: its source as service_name, and its level); the request id and
// the other attributes go into structured metadata or into the line, never
// into labels. Entries of a stream are sent sorted by time. Entries Loki
// refuses for good (out of order, too far behind, too old, too long) are
// isolated by splitting the request and counted as dropped. The encoder
// (encode.go) writes the protobuf and JSON by hand; README.md documents the
// mapping, the limits and the guarantees.
package loki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
)

// Defaults and Loki's own limits (Loki's defaults for limits_config).
const (
	DefaultMaxRequestBytes     = 1 << 20   // promtail's and Alloy's batch size
	DefaultMaxLineSize         = 256 << 10 // Loki max_line_size
	DefaultMaxLabelValueLength = 2048      // Loki max_label_value_length
	DefaultMaxLabelValues      = 1000
	// MaxLabels is Loki's default max_label_names_per_series.
	MaxLabels = 15
	// OverflowValue replaces a label value that is new once the label has
	// max_label_values distinct values (or that is too long); the value
	// itself goes into structured metadata or the line.
	OverflowValue = "_overflow_"
	// splitBudget bounds the extra requests one Send makes to isolate
	// entries Loki refuses.
	splitBudget = 256
	// maxStreamCache bounds the label sets remembered between Sends.
	maxStreamCache = 16384
)

// Config is what users write under `loki:`.
type Config struct {
	// URL is the push endpoint (required), e.g.
	// http://loki:3100/loki/api/v1/push.
	URL string `yaml:"url"`
	// Encoding is "protobuf" (default: logproto.PushRequest, snappy) or
	// "json".
	Encoding string `yaml:"encoding"`
	// Compression applies to JSON: "gzip" (default) or "none". Protobuf
	// is always snappy-compressed, as the API requires.
	Compression string `yaml:"compression"`
	// Tenant is sent as X-Scope-OrgID (multi-tenant Loki, Grafana
	// Enterprise Logs); empty sends none.
	Tenant string `yaml:"tenant"`

	// LabelFields are the fields that become stream labels: "source",
	// "level", or the key of a log attribute. Default [source, level].
	// Keep it small: every distinct combination is a stream.
	LabelFields []string `yaml:"label_fields"`
	// SourceLabel and LevelLabel name the labels of the source and the
	// level (default service_name, level).
	SourceLabel string `yaml:"source_label"`
	LevelLabel  string `yaml:"level_label"`
	// Labels are added to every stream (e.g. job: les).
	Labels map[string]string `yaml:"labels"`
	// MaxLabelValues bounds the distinct values of each label field seen
	// in the last hour of event time (default 1000); a new value past it
	// becomes OverflowValue (see README.md, "Cardinality").
	MaxLabelValues int `yaml:"max_label_values"`
	// MaxLabelValueLength: a longer label value becomes OverflowValue
	// (default 2048, Loki's limit).
	MaxLabelValueLength int `yaml:"max_label_value_length"`

	// LineFormat is "message" (default: the line is the message; the
	// request id and attributes are structured metadata), "logfmt" or
	// "json" (the line holds the message and every field that is not a
	// label; no structured metadata, for Loki without it).
	LineFormat string `yaml:"line_format"`
	// MaxLineSize: a longer message is cut to it (default 256 KiB, Loki's
	// max_line_size), counted in Counts().Truncated.
	MaxLineSize int `yaml:"max_line_size"`
	// MaxRequestBytes bounds one request before compression (default
	// 1 MiB); a larger batch is sent in several requests.
	MaxRequestBytes int `yaml:"max_request_bytes"`

	// Credentials and extra headers: basic_auth, bearer_token_env /
	// bearer_token_file, headers.
	sink.HTTPAuth `yaml:",inline"`
	TLS           sink.TLSConfig `yaml:"tls"`
}

var reservedHeaders = []string{"Content-Encoding", "Content-Type", "Content-Length", "X-Scope-Orgid", "User-Agent"}

// perRequestFields are fields that would make a stream per request (or per
// trace): refused in label_fields.
var perRequestFields = []string{"request_id", "requestid", "aws_request_id", "trace_id", "span_id", "traceid", "spanid"}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if _, err := sink.CheckURL("url", c.URL, "they would show in errors; use basic_auth"); err != nil {
		return err
	}
	if err := sink.OneOf("encoding", &c.Encoding, "protobuf", "json"); err != nil {
		return err
	}
	if err := sink.OneOf("compression", &c.Compression, "gzip", "none"); err != nil {
		return err
	}
	if err := sink.OneOf("line_format", &c.LineFormat, "message", "logfmt", "json"); err != nil {
		return err
	}
	if strings.ContainsFunc(c.Tenant, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return errors.New("tenant: control characters")
	}
	if c.LabelFields == nil {
		c.LabelFields = []string{"source", "level"}
	}
	if c.SourceLabel == "" {
		c.SourceLabel = "service_name"
	}
	if c.LevelLabel == "" {
		c.LevelLabel = "level"
	}
	for _, k := range []struct{ key, v string }{{"source_label", c.SourceLabel}, {"level_label", c.LevelLabel}} {
		if !validLabelName(k.v) {
			return fmt.Errorf("%s: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __…)", k.key, k.v)
		}
	}
	names := map[string]string{}
	for i, f := range c.LabelFields {
		if slices.Contains(c.LabelFields[:i], f) {
			return fmt.Errorf("label_fields: %q given twice", f)
		}
		if slices.Contains(perRequestFields, strings.ToLower(string(appendLabelName(nil, f)))) {
			return fmt.Errorf("label_fields: %q would make a stream per request; it is sent as structured metadata (or in the line)", f)
		}
		n := fieldLabel(c, f)
		if prev, ok := names[n]; ok {
			return fmt.Errorf("label_fields: %q and %q both become label %s", prev, f, n)
		}
		names[n] = f
	}
	for k, v := range c.Labels {
		if !validLabelName(k) {
			return fmt.Errorf("labels: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __…)", k)
		}
		if v == "" {
			return fmt.Errorf("labels: %s: empty value", k)
		}
		if f, ok := names[k]; ok {
			return fmt.Errorf("labels: %s is also the label of label_fields %q", k, f)
		}
	}
	if n := len(c.LabelFields) + len(c.Labels); n == 0 {
		return errors.New("label_fields, labels: a stream needs at least one label")
	} else if n > MaxLabels {
		return fmt.Errorf("label_fields, labels: %d labels, Loki takes at most %d per stream", n, MaxLabels)
	}
	if err := sink.CheckSizes(
		sink.Size{Key: "max_label_values", V: &c.MaxLabelValues, Def: DefaultMaxLabelValues},
		sink.Size{Key: "max_label_value_length", V: &c.MaxLabelValueLength, Def: DefaultMaxLabelValueLength},
		sink.Size{Key: "max_line_size", V: &c.MaxLineSize, Def: DefaultMaxLineSize},
		sink.Size{Key: "max_request_bytes", V: &c.MaxRequestBytes, Def: DefaultMaxRequestBytes, Min: 1024},
	); err != nil {
		return err
	}
	if err := c.HTTPAuth.Validate(reservedHeaders, " (X-Scope-OrgID: use tenant)"); err != nil {
		return err
	}
	return c.TLS.Validate()
}

// fieldLabel is the label name of label field f.
func fieldLabel(c *Config, f string) string {
	switch f {
	case "source":
		return c.SourceLabel
	case "level":
		return c.LevelLabel
	}
	return string(appendLabelName(nil, f))
}

// Counts are totals since New.
type Counts struct {
	Requests   uint64 // requests Loki accepted (2xx)
	Entries    uint64 // entries in them
	Splits     uint64 // requests sent to isolate refused entries
	Refused    uint64 // entries Loki refused for good (dropped, counted by reason)
	Truncated  uint64 // messages cut to max_line_size
	Overflowed uint64 // label values replaced by OverflowValue
	Ignored    uint64 // metrics, distributions and spans handed to the sink (it takes logs only)
}

// Sink pushes to one Loki. It is safe for concurrent use: label
// resolution is serialised, encoding and posting are not.
type Sink struct {
	cfg     Config
	name    string
	log     *slog.Logger
	client  sink.Client
	header  http.Header
	authVar string // where the credential came from, for error hints
	dropped *selfmetric.ReasonCounters
	pool    sync.Pool // *sendState

	mu      sync.Mutex
	closed  bool
	res     resolver
	counts  Counts
	nextID  uint64
	streams map[string]*streamInfo
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It reads the credentials (and TLS
// files) but connects to nothing.
func New(cfg Config, d sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, name: d.Name, log: d.Log, header: http.Header{}, streams: map[string]*streamInfo{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = selfmetric.New()
	}
	s.dropped = d.Dropped()
	var err error
	if s.client, err = sink.NewClient(d, cfg.TLS); err != nil {
		return nil, err
	}
	from, err := cfg.HTTPAuth.Apply(s.header)
	if err != nil {
		return nil, err
	}
	s.authVar = from
	s.header.Set("User-Agent", "les")
	if cfg.Encoding == "protobuf" {
		s.header.Set("Content-Type", "application/x-protobuf")
	} else {
		s.header.Set("Content-Type", "application/json")
		if cfg.Compression == "gzip" {
			s.header.Set("Content-Encoding", "gzip")
		}
	}
	if cfg.Tenant != "" {
		s.header.Set("X-Scope-OrgID", cfg.Tenant)
	}
	s.res = newResolver(&s.cfg, d, s.name)
	s.pool.New = func() any { return &sendState{} }
	return s, nil
}

// sendState is what one Send uses; pooled.
type sendState struct {
	entries []entry
	enc     encoder
	body    []byte
	gz      sink.Gzipper
	drops   map[string]int
	refused uint64
	splits  uint64
	reqs    uint64
	sent    uint64
}

// Send pushes the logs of b in requests of at most max_request_bytes,
// one after another, each stream's entries sorted by time. It returns nil
// when every request was accepted, or when Loki refused some entries for
// good (out of order, too far behind, too old or too new, line too long:
// those are isolated by splitting, dropped and counted). A request
// answered 408, 429, 5xx or not at all fails the Send with a retryable
// error; the retry sends the whole batch again, and Loki ignores the
// entries it already holds (same stream, timestamp and line). Other 4xx
// answers are permanent errors. Metrics, distributions and spans are
// ignored. It does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, _ sink.Meta) error {
	st := s.pool.Get().(*sendState)
	defer s.pool.Put(st)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.errorf("sink is closed")
	}
	s.counts.Ignored += uint64(len(b.Metrics) + len(b.Dists) + len(b.Spans))
	st.entries = s.resolve(st.entries[:0], b)
	s.mu.Unlock()
	if len(st.entries) == 0 {
		return nil
	}
	st.enc.c = &s.res.ec
	sortEntries(st.entries)
	clear(st.drops)
	st.refused, st.splits, st.reqs, st.sent = 0, 0, 0, 0
	budget := splitBudget
	var err error
	for lo := 0; lo < len(st.entries); {
		hi := cut(st.entries, lo, s.cfg.MaxRequestBytes)
		if err = s.deliver(ctx, b, st, st.entries[lo:hi], &budget); err != nil {
			break
		}
		lo = hi
	}
	s.mu.Lock()
	s.counts.Requests += st.reqs
	s.counts.Entries += st.sent
	s.counts.Splits += st.splits
	if err == nil || errors.Is(err, sink.ErrPermanent) {
		// Done for good: the refusals stand (a retry would count them again).
		s.counts.Refused += st.refused
		for r, n := range st.drops {
			s.dropped.Add(r, n)
		}
	}
	s.mu.Unlock()
	clear(st.entries) // no references to b's strings stay in the pool
	if err != nil {
		return s.errorf("%w", err)
	}
	return nil
}

func (s *Sink) errorf(format string, args ...any) error {
	err := fmt.Errorf("loki sink %q: "+format, append([]any{s.name}, args...)...)
	for _, a := range args {
		if e, ok := a.(error); ok && errors.Is(e, sink.ErrPermanent) {
			return sink.Permanent(err)
		}
	}
	return err
}

// deliver posts the entries ents. When Loki refuses some of them for good
// (it stores the others and answers 400 naming the refused ones),
// sink.Isolate splits them in halves and sends each half again — Loki
// ignores the entries it already holds — until the refused entries stand
// alone (or the split budget is spent), and are dropped with the reason.
func (s *Sink) deliver(ctx context.Context, b *model.Batch, st *sendState, ents []entry, budget *int) error {
	send := func(lo, hi int, split bool) error {
		if split {
			st.splits++
		}
		part := ents[lo:hi]
		var body []byte
		if s.cfg.Encoding == "protobuf" {
			st.body = s2.EncodeSnappy(st.body[:cap(st.body)], st.enc.proto(b, part))
			body = st.body
		} else {
			body = st.enc.json(b, part)
			if s.cfg.Compression == "gzip" {
				body = st.gz.Compress(body)
			}
		}
		if err := s.post(ctx, body); err != nil {
			return err
		}
		st.reqs++
		st.sent += uint64(len(part))
		return nil
	}
	refuse := func(lo, hi int, reason string) {
		if st.drops == nil {
			st.drops = map[string]int{}
		}
		st.drops[reason] += hi - lo
		st.refused += uint64(hi - lo)
	}
	return sink.Isolate(len(ents), budget, send, refusal, refuse)
}

// refusal classifies an answer refusing entries for good — Loki answers
// 400 for entries out of order, too far behind, too old or too new, or
// too long, having stored the rest of the request, and 413 for a request
// too large — and returns the drop reason, or "" for any other answer.
func refusal(err error) string { return sink.Refused(err, refusals) }

var refusals = []sink.Refusal{
	{Text: "out of order", Reason: "out_of_order"},
	{Text: "too far behind", Reason: "too_far_behind"},
	{Text: "timestamp too old", Reason: "too_old"},
	{Text: "timestamp too new", Reason: "too_new"},
	{Text: "max entry size", Reason: "line_too_long"}, {Text: "line too long", Reason: "line_too_long"},
}

func (s *Sink) post(ctx context.Context, body []byte) error {
	resp, err := s.client.Do(ctx, s.cfg.URL, s.header, body)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	err = sink.CheckResponse(resp)
	se, ok := errors.AsType[*sink.StatusError](err)
	switch {
	case !ok:
	case se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden:
		hint := "no credentials configured (basic_auth, bearer_token_env)"
		if s.authVar != "" {
			hint = "check the " + s.authVar
		}
		if s.cfg.Tenant == "" && strings.Contains(strings.ToLower(se.Reason), "org id") {
			hint = "this Loki is multi-tenant: set tenant"
		}
		return fmt.Errorf("%w (%s)", err, hint)
	case se.Code == http.StatusBadRequest && strings.Contains(strings.ToLower(se.Reason), "structured metadata"):
		return fmt.Errorf("%w (set line_format: logfmt or json, or allow structured metadata in Loki: limits_config.allow_structured_metadata, schema v13)", err)
	}
	return err
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	c.Overflowed = s.res.overflowed
	c.Truncated = s.res.truncated
	return c
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
