package sink

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/les-streams/les/internal/netconf"
	"github.com/les-streams/les/internal/selfmetric"
)

// Deps is what every sink constructor receives from the app.
type Deps struct {
	// Name is the sink's name in les.yaml; label its self-metrics with
	// sink=Name.
	Name string
	Log  *slog.Logger
	// Metrics is the registry behind /metrics.
	Metrics *selfmetric.Registry
	// HTTP is the client network sinks use unless their TLS settings need
	// a client of their own (HTTPClient builds it). Per-attempt timeouts
	// come from the Send context.
	HTTP *http.Client
	// Drops counts les_sink_dropped_items_total{sink,reason}; the runner
	// reads it to keep drops out of les_sink_delivered_items_total. Use
	// Dropped().
	Drops *selfmetric.ReasonCounters
}

// Dropped returns the counter family les_sink_dropped_items_total{sink,
// reason} for items a sink was handed and could not deliver by design
// (a name the backend refuses, a value it cannot store, a rejection the
// backend reports for part of a request).
func (d Deps) Dropped() *selfmetric.ReasonCounters {
	if d.Drops != nil {
		return d.Drops
	}
	return d.Metrics.NewReasonCounters("les_sink_dropped_items_total", "sink", d.Name)
}

// TLSConfig is what users write under a network sink's `tls:` key.
type TLSConfig = netconf.TLS

// HTTPClient returns d.HTTP when tc is zero, else a client of its own
// with tc applied (same pooling settings as the shared one).
func HTTPClient(d Deps, tc TLSConfig) (*http.Client, error) {
	if tc.IsZero() && d.HTTP != nil {
		return d.HTTP, nil
	}
	cfg, err := tc.Config()
	if err != nil {
		return nil, err
	}
	t := NewTransport()
	t.TLSClientConfig = cfg
	return &http.Client{Transport: t}, nil
}

// NewTransport returns the transport network sinks share: pooled
// keep-alive connections, HTTP/2 where the server offers it, bounded
// dial and TLS handshake times.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 0 // the Send context bounds each attempt
	return t
}

// Secret reads a credential from the environment variable env or, if env
// is empty, from file (see netconf.Secret): errors name where it was looked
// for, never its value.
func Secret(env, file string) (string, error) { return netconf.Secret(env, file) }

// RetryAfterError is a retryable failure for which the backend said how
// long to wait (HTTP 429/503 with Retry-After). Deliver waits After
// (bounded by the retry's max_backoff) instead of its own backoff.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// StatusError is a non-2xx answer from an HTTP backend.
type StatusError struct {
	Code int
	// Reason is the start of the response body (at most 512 bytes, valid
	// UTF-8), which backends use to say what they refused.
	Reason string
}

func (e *StatusError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Code, http.StatusText(e.Code), e.Reason)
}

// CheckResponse classifies an HTTP answer and drains and closes its body:
// 2xx is nil; 408, 429 and 5xx are retryable (a *RetryAfterError when the
// answer carries Retry-After); every other status is permanent (wraps
// ErrPermanent), so the runner dead-letters the record with the reason.
func CheckResponse(resp *http.Response) error {
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	err := &StatusError{Code: resp.StatusCode, Reason: reason(body)}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode >= 500:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &RetryAfterError{Err: err, After: d}
		}
		return err
	}
	return Permanent(err)
}

func reason(body []byte) string {
	body = bytes.TrimSpace(body)
	for !utf8.Valid(body) && len(body) > 0 {
		body = body[:len(body)-1] // cut inside a rune at the 512-byte limit
	}
	return strings.Join(strings.Fields(string(body)), " ")
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
