// Package http is a sink that POSTs batches to a URL as NDJSON (the lines
// `les tail` prints, internal/format/jsonl) or as a JSON array of the same
// objects, optionally gzip-compressed, with a bearer token and headers of
// the user's choosing. Any 2xx answer acknowledges the batch.
package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
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
	// Headers are added to every request (values may use ${ENV}). They
	// cannot set Authorization when a token is configured, nor
	// Content-Type, Content-Encoding, Content-Length or Host.
	Headers map[string]string `yaml:"headers"`
	// TokenEnv or TokenFile holds a bearer token, sent as
	// `Authorization: Bearer …`.
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
	// MaxBody bounds one request body in bytes before compression
	// (default 4 MiB): a larger batch is split between items into several
	// requests.
	MaxBody int `yaml:"max_body"`

	TLS sink.TLSConfig `yaml:"tls"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.URL == "" {
		return errors.New("url: required")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url: %q is not an http or https URL", c.URL)
	}
	if u.User != nil {
		return errors.New("url: must not hold credentials (use token_env or token_file, or a header)")
	}
	switch c.Format {
	case "":
		c.Format = "ndjson"
	case "ndjson", "json_array":
	default:
		return fmt.Errorf("format: %q is not one of ndjson, json_array", c.Format)
	}
	switch c.Compression {
	case "":
		c.Compression = "none"
	case "none", "gzip":
	default:
		return fmt.Errorf("compression: %q is not one of none, gzip", c.Compression)
	}
	if c.TokenEnv != "" && c.TokenFile != "" {
		return errors.New("token_env, token_file: give one, not both")
	}
	for k, v := range c.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		switch {
		case !validHeaderName(k):
			return fmt.Errorf("headers: %q is not a valid header name", k)
		case strings.ContainsAny(v, "\r\n"):
			return fmt.Errorf("headers: value of %s holds a line break", k)
		case ck == "Content-Type", ck == "Content-Encoding", ck == "Content-Length", ck == "Host":
			return fmt.Errorf("headers: %s is set by the sink", ck)
		case ck == "Authorization" && (c.TokenEnv != "" || c.TokenFile != ""):
			return errors.New("headers: Authorization given together with token_env/token_file")
		}
	}
	if c.MaxBody < 0 {
		return errors.New("max_body: must not be negative")
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxBody < 1024 {
		return errors.New("max_body: must be at least 1024")
	}
	return c.TLS.Validate()
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Counts are totals since New.
type Counts struct {
	Requests uint64 // requests answered 2xx
	Items    uint64 // items in those requests
	Dropped  uint64 // items longer than max_body on their own
}

// Sink POSTs to one URL. It is safe for concurrent use; Sends are
// serialised (they share buffers).
type Sink struct {
	cfg     Config
	name    string
	client  *http.Client
	ownHTTP bool
	header  http.Header
	dropped *selfmetric.ReasonCounters

	mu     sync.Mutex
	lines  []byte // the batch's NDJSON
	ends   []int  // end offset of each line in lines
	body   []byte // a json_array body
	zbuf   bytes.Buffer
	zw     *gzip.Writer
	closed bool
	counts Counts
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
	client, err := sink.HTTPClient(d, cfg.TLS)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, name: d.Name, client: client, ownHTTP: client != d.HTTP, dropped: d.Dropped(), header: http.Header{}}
	for k, v := range cfg.Headers {
		s.header.Set(k, v)
	}
	tok, err := sink.Secret(cfg.TokenEnv, cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if tok != "" {
		if strings.ContainsAny(tok, "\r\n") {
			return nil, errors.New("token: holds a line break")
		}
		s.header.Set("Authorization", "Bearer "+tok)
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
	defer s.mu.Unlock()
	if s.closed {
		return s.errorf("sink is closed")
	}
	n := b.Len()
	if n == 0 {
		return nil
	}
	s.lines, s.ends = EncodeNDJSON(s.lines[:0], s.ends[:0], b, m.RecordID)
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
	for i, end := range s.ends {
		l := end - s.lineStart(i)
		if l+over > s.cfg.MaxBody {
			if i > start {
				ps = append(ps, part{start, i})
			}
			s.dropped.Inc(ReasonTooLarge)
			s.counts.Dropped++
			start, size = i+1, 0
			continue
		}
		if size+l+over > s.cfg.MaxBody {
			ps = append(ps, part{start, i})
			start, size = i, 0
		}
		size += l + 1
	}
	if start < len(s.ends) {
		ps = append(ps, part{start, len(s.ends)})
	}
	for i, p := range ps {
		if err := s.post(ctx, p.from, p.to, m.RecordID, i+1, len(ps)); err != nil {
			return err
		}
		s.counts.Items += uint64(p.to - p.from)
	}
	if cap(s.lines) > 16<<20 {
		s.lines, s.body = nil, nil // do not pin one huge batch's buffers
	}
	return nil
}

func (s *Sink) lineStart(i int) int {
	if i == 0 {
		return 0
	}
	return s.ends[i-1]
}

func (s *Sink) post(ctx context.Context, from, to int, record string, part, parts int) error {
	body := s.lines[s.lineStart(from):s.ends[to-1]]
	if s.cfg.Format == "json_array" {
		s.body = append(s.body[:0], '[')
		for i := from; i < to; i++ {
			if i > from {
				s.body = append(s.body, ',')
			}
			s.body = append(s.body, s.lines[s.lineStart(i):s.ends[i]]...) // the '\n' is JSON whitespace
		}
		s.body = append(s.body, ']')
		body = s.body
	}
	if s.cfg.Compression == "gzip" {
		s.zbuf.Reset()
		if s.zw == nil {
			s.zw = gzip.NewWriter(&s.zbuf)
		} else {
			s.zw.Reset(&s.zbuf)
		}
		_, _ = s.zw.Write(body) // writes to a bytes.Buffer do not fail
		_ = s.zw.Close()
		body = s.zbuf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return s.errorf("%w", err)
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	if record != "" {
		req.Header.Set("X-Les-Record", record)
	}
	req.Header.Set("X-Les-Part", strconv.Itoa(part)+"/"+strconv.Itoa(parts))
	resp, err := s.client.Do(req)
	if err != nil {
		return s.errorf("%w", err)
	}
	if err := sink.CheckResponse(resp); err != nil {
		return s.errorf("%w", err)
	}
	s.counts.Requests++
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
	if !s.closed && s.ownHTTP {
		s.client.CloseIdleConnections()
	}
	s.closed = true
	return nil
}
