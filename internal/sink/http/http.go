// Package http is a sink that POSTs batches to a URL as NDJSON (the lines
// `les tail` prints, internal/format/jsonl) or as a JSON array of the same
// objects, optionally gzip-compressed, with a bearer token and headers of
// the user's choosing. Any 2xx answer acknowledges the batch.
package http

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
)

// DefaultMaxBody is the default bound on one request body (before
// compression).
const DefaultMaxBody = 4 << 20

// ReasonTooLarge is the drop reason of an item whose line alone is longer
// than max_body.
const ReasonTooLarge = "item_too_large"

// Config is what users write under `http:`.
type Config struct {
	// URL receives the POSTs (required).
	URL string `yaml:"url"`
	// Format is "ndjson" (default: Content-Type application/x-ndjson, one
	// object per line) or "json_array" (application/json, [obj,obj,…]).
	Format string `yaml:"format"`
	// Compression is "none" (default) or "gzip".
	Compression string `yaml:"compression"`
	// TokenEnv or TokenFile holds a bearer token, sent as
	// `Authorization: Bearer …` (the same as bearer_token_env and
	// bearer_token_file).
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
	// MaxBody bounds one request body in bytes before compression
	// (default 4 MiB): a larger batch is split between items into several
	// requests.
	MaxBody int `yaml:"max_body"`

	// Credentials and extra headers: basic_auth, bearer_token_env /
	// bearer_token_file, headers (values may use ${ENV}). Headers cannot
	// set Authorization when a credential is configured, nor
	// Content-Type, Content-Encoding, Content-Length or Host.
	sink.HTTPAuth `yaml:",inline"`
	TLS           sink.TLSConfig `yaml:"tls"`
}

// reservedHeaders are set by the sink (or by net/http).
var reservedHeaders = []string{"Content-Type", "Content-Encoding", "Content-Length", "Host", "X-Les-Record", "X-Les-Part"}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if _, err := sink.CheckURL("url", c.URL, "use token_env or token_file, basic_auth, or a header"); err != nil {
		return err
	}
	if err := sink.OneOf("format", &c.Format, "ndjson", "json_array"); err != nil {
		return err
	}
	if err := sink.OneOf("compression", &c.Compression, "none", "gzip"); err != nil {
		return err
	}
	if c.TokenEnv != "" && c.TokenFile != "" {
		return errors.New("token_env, token_file: give one, not both")
	}
	if (c.TokenEnv != "" || c.TokenFile != "") && (c.BearerTokenEnv != "" || c.BearerTokenFile != "" || c.BasicAuth != nil) {
		return errors.New("token_env, token_file: give them or basic_auth / bearer_token_*, not both")
	}
	if err := c.auth().Validate(reservedHeaders, ""); err != nil {
		return err
	}
	if err := sink.CheckSizes(sink.Size{Key: "max_body", V: &c.MaxBody, Def: DefaultMaxBody, Min: 1024}); err != nil {
		return err
	}
	return c.TLS.Validate()
}

// auth is the HTTPAuth with token_env and token_file as the bearer token.
func (c *Config) auth() *sink.HTTPAuth {
	a := c.HTTPAuth
	if c.TokenEnv != "" || c.TokenFile != "" {
		a.BearerTokenEnv, a.BearerTokenFile = c.TokenEnv, c.TokenFile
	}
	return &a
}

// Counts are totals since New.
type Counts struct {
	Requests uint64 // requests answered 2xx
	Items    uint64 // items in those requests
	Dropped  uint64 // items longer than max_body on their own
}

// Sink POSTs to one URL. It is safe for concurrent use: each Send encodes
// into buffers of its own (taken from a pool), so the runner's
// `concurrency` Sends are in flight at once.
type Sink struct {
	cfg     Config
	name    string
	client  sink.Client
	header  http.Header // every request's headers; each sendState has a copy, X-Les-* set per request
	dropped *selfmetric.ReasonCounters
	states  sync.Pool // *sendState

	mu     sync.Mutex
	closed bool
	counts Counts
}

// sendState is one Send's buffers.
type sendState struct {
	lines  []byte // the batch's NDJSON
	ends   []int  // end offset of each line in lines
	body   []byte // a json_array body
	gz     sink.Gzipper
	header http.Header
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It reads the token (from the
// environment or its file) and the TLS files, but connects to nothing.
func New(cfg Config, d sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Metrics == nil {
		d.Metrics = selfmetric.New()
	}
	client, err := sink.NewClient(d, cfg.TLS)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, name: d.Name, client: client, dropped: d.Dropped(), header: http.Header{}}
	if _, err := cfg.auth().Apply(s.header); err != nil {
		return nil, err
	}
	if cfg.Format == "ndjson" {
		s.header.Set("Content-Type", "application/x-ndjson")
	} else {
		s.header.Set("Content-Type", "application/json")
	}
	if cfg.Compression == "gzip" {
		s.header.Set("Content-Encoding", "gzip")
	}
	return s, nil
}

// Send encodes every item of b as one jsonl object (with the record id,
// item and items fields when m.RecordID is set, so a receiver can
// de-duplicate and tell a record complete) and POSTs them in one request,
// or several of at most max_body bytes split between items. Requests
// carry X-Les-Record (m.RecordID) and X-Les-Part ("1/3"). It returns nil
// once every request was answered 2xx; a retry sends every part again. An
// item whose line alone exceeds max_body is dropped and counted (reason
// item_too_large). Errors name the sink, never the token: retryable for
// transport errors, 408, 429 and 5xx (honouring Retry-After), permanent
// for other 4xx (e.g. 413: lower max_body). It does not keep b.
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
	n := b.Len()
	if n == 0 {
		return nil
	}
	st, _ := s.states.Get().(*sendState)
	if st == nil {
		st = &sendState{header: s.header.Clone()}
	}
	defer s.states.Put(st)
	st.lines, st.ends = EncodeNDJSON(st.lines[:0], st.ends[:0], b, m.RecordID)
	// Parts: runs of whole lines of at most MaxBody bytes (json_array adds
	// one byte per line for '[' or ',' and one for ']').
	over := 1
	if s.cfg.Format == "json_array" {
		over = 2
	}
	type part struct{ from, to int } // line indexes
	var parts [8]part
	ps := parts[:0]
	start, size := 0, 0
	for i, end := range st.ends {
		l := end - st.lineStart(i)
		if l+over > s.cfg.MaxBody {
			if i > start {
				ps = append(ps, part{start, i})
			}
			s.dropped.Inc(ReasonTooLarge)
			s.count(func(c *Counts) { c.Dropped++ })
			start, size = i+1, 0
			continue
		}
		if size+l+over > s.cfg.MaxBody {
			ps = append(ps, part{start, i})
			start, size = i, 0
		}
		size += l + 1
	}
	if start < len(st.ends) {
		ps = append(ps, part{start, len(st.ends)})
	}
	defer func() {
		if cap(st.lines) > 16<<20 {
			st.lines, st.body = nil, nil // do not pin one huge batch's buffers
		}
	}()
	for i, p := range ps {
		if err := s.post(ctx, st, p.from, p.to, m.RecordID, i+1, len(ps)); err != nil {
			return err
		}
		s.count(func(c *Counts) { c.Requests++; c.Items += uint64(p.to - p.from) })
	}
	return nil
}

// count updates the totals.
func (s *Sink) count(f func(*Counts)) {
	s.mu.Lock()
	f(&s.counts)
	s.mu.Unlock()
}

func (st *sendState) lineStart(i int) int {
	if i == 0 {
		return 0
	}
	return st.ends[i-1]
}

func (s *Sink) post(ctx context.Context, st *sendState, from, to int, record string, part, parts int) error {
	body := st.lines[st.lineStart(from):st.ends[to-1]]
	if s.cfg.Format == "json_array" {
		st.body = append(st.body[:0], '[')
		for i := from; i < to; i++ {
			if i > from {
				st.body = append(st.body, ',')
			}
			st.body = append(st.body, st.lines[st.lineStart(i):st.ends[i]]...) // the '\n' is JSON whitespace
		}
		st.body = append(st.body, ']')
		body = st.body
	}
	if s.cfg.Compression == "gzip" {
		body = st.gz.Compress(body)
	}
	if record != "" {
		st.header.Set("X-Les-Record", record)
	} else {
		st.header.Del("X-Les-Record")
	}
	st.header.Set("X-Les-Part", strconv.Itoa(part)+"/"+strconv.Itoa(parts))
	if err := s.client.Post(ctx, s.cfg.URL, st.header, body); err != nil {
		return s.errorf("%w", err)
	}
	return nil
}

// EncodeNDJSON appends one jsonl line per item of b to dst (metrics,
// distributions, logs, spans, in batch order) and the end offset of each
// line to ends, and returns both. With a record id, lines carry record,
// item and items. It does not keep b; warm buffers make it allocation
// free.
func EncodeNDJSON(dst []byte, ends []int, b *model.Batch, record string) ([]byte, []int) {
	o := jsonl.Options{RecordID: record, Items: b.Len()}
	if record == "" {
		o.Items = 0
	}
	for i := range b.Metrics {
		dst = jsonl.AppendMetric(dst, &b.Metrics[i], o)
		ends = append(ends, len(dst))
		o.Item++
	}
	for i := range b.Dists {
		dst = jsonl.AppendDistribution(dst, &b.Dists[i], o)
		ends = append(ends, len(dst))
		o.Item++
	}
	for i := range b.Logs {
		dst = jsonl.AppendLog(dst, &b.Logs[i], o)
		ends = append(ends, len(dst))
		o.Item++
	}
	for i := range b.Spans {
		dst = jsonl.AppendSpan(dst, &b.Spans[i], o)
		ends = append(ends, len(dst))
		o.Item++
	}
	return dst, ends
}

func (s *Sink) errorf(format string, args ...any) error {
	return fmt.Errorf("http sink %q: "+format, append([]any{s.name}, args...)...)
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Close makes later Sends fail and releases idle connections of a client
// of its own. Nothing is buffered between Sends. A second Close returns
// nil.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.client.CloseIdle()
	}
	s.closed = true
	return nil
}
