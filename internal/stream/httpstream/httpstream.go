// Package httpstream is the agent-only stream backend `stream.kind: http`:
// it forwards wire records over HTTP(S) to a central les (les up or les
// agent), which publishes them to its own stream and answers 2xx only once
// that stream has stored them. It cannot be consumed: consumers read the
// central les' stream.
//
// One record travels per request: POST <url>/v1/records, the body the
// exact wire record, its origin, signal, partition and id in Les-* headers
// and the token as "Authorization: Bearer". docs/wire-format.md ("HTTP
// forwarding") specifies the framing and the answers; the server is
// ingest.RecordHandler.
package httpstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
)

// Backend is the backend name in Capabilities and the backend label of the
// les_stream_* metrics.
const Backend = "http"

// The framing of one forwarded record (docs/wire-format.md, "HTTP
// forwarding").
const (
	// Path is appended to the configured URL.
	Path = "/v1/records"
	// ContentType is the media type of a request body: one wire record.
	ContentType = "application/vnd.les.record"
	// HeaderOrigin carries stream.Record.Origin (in, agg, …).
	HeaderOrigin = "Les-Origin"
	// HeaderSignal carries the signal name (metrics, distributions, logs,
	// spans); it must equal the record header's signal.
	HeaderSignal = "Les-Signal"
	// HeaderPartition carries the producer's logical partition under its
	// own stream.partitions (advisory: the central places records by
	// their items under its own partition count).
	HeaderPartition = "Les-Partition"
	// HeaderRecordID carries the batch id; it must equal the record
	// header's (producer, seq).
	HeaderRecordID = "Les-Record-Id"
)

// Deps is what code supplies.
type Deps struct {
	Log     *slog.Logger
	Metrics *selfmetric.Registry // nil: a private registry
	// HTTP replaces the client Open builds from Config.TLS (tests).
	HTTP *http.Client
}

// Stream forwards records to a central les. It implements stream.Stream;
// Consume and Lag fail with errors.ErrUnsupported.
type Stream struct {
	cfg        Config
	endpoint   string
	partitions int
	log        *slog.Logger
	client     *http.Client
	own        bool // client built by Open: Close releases its connections

	mu    sync.Mutex
	token string

	retries       *metrics.Counter
	publishErrors *metrics.Counter
	closeOnce     sync.Once
	closed        chan struct{}
}

// Open validates cfg and reads the token. It does no network I/O: the
// first Publish connects, so an agent starts (and spools) while the
// central les is unreachable.
func Open(_ context.Context, cfg Config, partitions int, deps Deps) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stream.http: %w", err)
	}
	tok, err := secret(cfg.TokenEnv, cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("stream.http: %w", err)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = selfmetric.New()
	}
	s := &Stream{cfg: cfg, endpoint: cfg.endpoint(), partitions: max(partitions, 1), log: deps.Log,
		client: deps.HTTP, token: tok, closed: make(chan struct{}),
		retries:       deps.Metrics.Counter("les_stream_publish_retries_total", "backend", Backend),
		publishErrors: deps.Metrics.Counter("les_stream_publish_errors_total", "backend", Backend),
	}
	if s.client == nil {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("stream.http: %w", err)
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		t.MaxIdleConnsPerHost = 16
		t.TLSHandshakeTimeout = 5 * time.Second
		// A connection found dead after a Lambda thaw fails the request;
		// Publish retries on a fresh one. Idle connections are dropped
		// well before load balancers usually drop them (60s).
		t.IdleConnTimeout = 30 * time.Second
		s.client = &http.Client{Transport: t}
		s.own = true
	}
	return s, nil
}

// ClientURL is the central les' URL (it carries no credentials).
func (s *Stream) ClientURL() string { return s.cfg.URL }

// Capabilities implements stream.Stream. De-duplication is the central
// stream's business (records keep their ids there), unknown here: 0.
func (s *Stream) Capabilities() stream.Capabilities {
	return stream.Capabilities{Backend: Backend, Partitions: s.partitions, MaxRecordBytes: s.cfg.MaxRecordBytes}
}

// Consume implements stream.Stream: kind http cannot be read (nor
// rewound: ConsumeOptions.Rewind), so it fails with errors.ErrUnsupported.
func (s *Stream) Consume(context.Context, stream.ConsumeOptions, stream.Handler) error {
	return s.unsupported("consume")
}

// Lag implements stream.Stream: kind http cannot be read.
func (s *Stream) Lag(context.Context, stream.LagQuery) (uint64, error) {
	return 0, s.unsupported("lag")
}

func (s *Stream) unsupported(op string) error {
	return fmt.Errorf("stream http: %s: %w: kind http only forwards records to the central les at %s; read that les' stream instead",
		op, errors.ErrUnsupported, s.cfg.URL)
}

// Close releases idle connections. Publish fails with stream.ErrClosed
// afterwards.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.own {
			s.client.CloseIdleConnections()
		}
	})
	return nil
}

// Publish implements stream.Stream: it POSTs each record in turn and
// returns once the central les has answered 2xx for all of them, which it
// does only after its stream stored them. Retryable failures (no
// connection, 408, 429, 5xx) are retried with backoff, honouring
// Retry-After, until ctx ends, or at once when the wait would outlast
// ctx's deadline (the caller then spools). Other answers fail at once
// with a *StatusError; 413 wraps stream.ErrTooLarge. Errors name the URL,
// never the token.
func (s *Stream) Publish(ctx context.Context, recs ...stream.Record) error {
	for _, r := range recs {
		if int64(len(r.Data)) > s.cfg.MaxRecordBytes {
			s.publishErrors.Inc()
			return fmt.Errorf("%w: record %s is %d bytes, stream.http.max_record_bytes is %d", stream.ErrTooLarge, r.ID, len(r.Data), s.cfg.MaxRecordBytes)
		}
		if r.Partition < 0 || r.Partition >= s.partitions {
			s.publishErrors.Inc()
			return fmt.Errorf("stream http: record %s: partition %d not in [0,%d)", r.ID, r.Partition, s.partitions)
		}
		if !stream.ValidOrigin(r.Origin) {
			s.publishErrors.Inc()
			return fmt.Errorf("stream http: record %s: unknown origin %q", r.ID, r.Origin)
		}
	}
	for i := range recs {
		if err := s.publish(ctx, &recs[i]); err != nil {
			s.publishErrors.Inc()
			return err
		}
	}
	return nil
}

// Backoff between retries of one record.
const (
	initialBackoff = 50 * time.Millisecond
	maxBackoff     = 2 * time.Second
)

func (s *Stream) publish(ctx context.Context, r *stream.Record) error {
	backoff := initialBackoff
	reloaded := false
	for {
		select {
		case <-s.closed:
			return stream.ErrClosed
		default:
		}
		err := s.post(ctx, r)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stream http: publish %s: %w (last error: %v)", r.ID, ctx.Err(), err)
		}
		var se *StatusError
		if errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden) && !reloaded {
			// The token may have been rotated: read it again once.
			reloaded = true
			if s.reloadToken() {
				s.retries.Inc()
				continue
			}
		}
		if !IsRetryable(err) {
			return err
		}
		wait := backoff
		if se != nil && se.RetryAfter > 0 {
			wait = se.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err // the caller spools rather than wait in vain
		}
		s.retries.Inc()
		s.log.Debug("publish retry", "backend", Backend, "record", r.ID, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("stream http: publish %s: %w (last error: %v)", r.ID, ctx.Err(), err)
		case <-s.closed:
			t.Stop()
			return stream.ErrClosed
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// reloadToken reads the token again and reports whether it changed.
func (s *Stream) reloadToken() bool {
	tok, err := secret(s.cfg.TokenEnv, s.cfg.TokenFile)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok == s.token {
		return false
	}
	s.token = tok
	return true
}

// post sends r once.
func (s *Stream) post(ctx context.Context, r *stream.Record) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(r.Data))
	if err != nil {
		return fmt.Errorf("stream http: %w", err)
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set(HeaderOrigin, r.Origin)
	req.Header.Set(HeaderSignal, r.Signal.String())
	req.Header.Set(HeaderPartition, strconv.Itoa(r.Partition))
	req.Header.Set(HeaderRecordID, r.ID)
	s.mu.Lock()
	tok := s.token
	s.mu.Unlock()
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error names the method and URL (which has no credentials).
		return &netError{err: err}
	}
	return checkResponse(s.endpoint, resp)
}

// StatusError is a non-2xx answer of the central les.
type StatusError struct {
	URL  string
	Code int
	// Reason is the start of the answer's body (at most 512 bytes), where
	// les says what it refused.
	Reason string
	// RetryAfter is the answer's Retry-After (0 if none).
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("stream http: %s answered %d %s", e.URL, e.Code, http.StatusText(e.Code))
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	switch e.Code {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += " (the token of stream.http.token_env or token_file must be the central les' agent.http.token)"
	}
	return msg
}

// Unwrap makes a 413 answer match stream.ErrTooLarge, and a 400 or 422
// (the central les found the record invalid) stream.ErrRejected.
func (e *StatusError) Unwrap() error {
	switch e.Code {
	case http.StatusRequestEntityTooLarge:
		return stream.ErrTooLarge
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return stream.ErrRejected
	}
	return nil
}

// Retryable reports whether the same request may succeed later: 408, 429
// and 5xx.
func (e *StatusError) Retryable() bool {
	return e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// netError is a request that got no answer (connection refused or reset,
// DNS, timeout): retryable, except for certificate problems.
type netError struct{ err error }

func (e *netError) Error() string { return "stream http: " + e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

func (e *netError) Retryable() bool {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
		invalid   x509.CertificateInvalidError
	)
	return !errors.As(e.err, &unknownCA) && !errors.As(e.err, &hostname) &&
		!errors.As(e.err, &verify) && !errors.As(e.err, &invalid)
}

// IsRetryable reports whether a Publish error may go away by itself: the
// central les was unreachable, overloaded (429) or its stream unavailable
// (503). A wrong token, a refused record or a certificate that does not
// verify are not; the agent still spools such records, so fixing the
// cause delivers them.
func IsRetryable(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}

// checkResponse classifies resp and drains and closes its body.
func checkResponse(url string, resp *http.Response) error {
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	e := &StatusError{URL: url, Code: resp.StatusCode, Reason: reason(body)}
	if e.Retryable() {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e
}

func reason(body []byte) string {
	body = bytes.TrimSpace(body)
	for !utf8.Valid(body) && len(body) > 0 {
		body = body[:len(body)-1] // cut inside a rune at the 512-byte limit
	}
	return strings.Join(strings.Fields(string(body)), " ")
}

// retryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3); 0 when
// absent or invalid.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(n)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
