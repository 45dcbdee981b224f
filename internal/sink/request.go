package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// Client is a network sink's HTTP client: Deps.HTTP, or one of its own
// when the sink's TLS settings need it (see HTTPClient).
type Client struct {
	*http.Client
	own bool
}

// NewClient returns the client a sink with TLS settings tc uses. Errors
// start with "tls: ".
func NewClient(d Deps, tc TLSConfig) (Client, error) {
	c, err := HTTPClient(d, tc)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "tls: ") {
			err = fmt.Errorf("tls: %w", err)
		}
		return Client{}, err
	}
	return Client{Client: c, own: c != d.HTTP}, nil
}

// CloseIdle releases the idle connections of a client of the sink's own;
// the shared Deps.HTTP is left alone. Sinks call it from Close.
func (c Client) CloseIdle() {
	if c.own && c.Client != nil {
		c.Client.CloseIdleConnections()
	}
}

// Do POSTs body to url with the header h (read, not kept or changed)
// and returns the answer, whose body the caller closes. A transport error
// is retryable and names the URL (redacted), never the headers; when ctx
// ended it wraps ctx.Err(), so errors.Is(err, context.DeadlineExceeded)
// holds. A request that cannot be built is permanent. body is read before
// Do returns an answer or an error only as far as the transport needs it;
// the caller must not change it until Do returns.
func (c Client) Do(ctx context.Context, url string, h http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, Permanent(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, err
	}
	return resp, nil
}

// Post is Do followed by CheckResponse: nil for a 2xx answer, else an
// error classified as CheckResponse does (a *StatusError inside).
func (c Client) Post(ctx context.Context, url string, h http.Header, body []byte) error {
	resp, err := c.Do(ctx, url, h, body)
	if err != nil {
		return err
	}
	return CheckResponse(resp)
}

// Gzipper gzip-compresses request bodies into a buffer it reuses, so a
// warm Gzipper does not allocate. It is not safe for concurrent use; the
// zero value compresses at the default level.
type Gzipper struct {
	// Level is a compress/gzip level; 0 is gzip.DefaultCompression.
	Level int
	buf   bytes.Buffer
	zw    *gzip.Writer
}

// Compress returns p compressed. The result is valid until the next
// call; p is not kept.
func (z *Gzipper) Compress(p []byte) []byte {
	z.buf.Reset()
	if z.zw == nil {
		level := z.Level
		if level == 0 {
			level = gzip.DefaultCompression
		}
		z.zw, _ = gzip.NewWriterLevel(&z.buf, level) // levels are constants
	} else {
		z.zw.Reset(&z.buf)
	}
	_, _ = z.zw.Write(p) // writes to a bytes.Buffer do not fail
	_ = z.zw.Close()
	return z.buf.Bytes()
}

// Accepted remembers the request bodies a backend accepted while one
// batch is being sent, by hash: a retry that encodes the batch to the same
// bytes skips them, so nothing is written twice. Reset it once the batch
// is done, for good or ill. Not safe for concurrent use; the zero value is
// ready.
type Accepted struct {
	seed maphash.Seed
	set  map[uint64]struct{}
}

// Hash returns the key of body for Has and Add; body is not kept.
func (a *Accepted) Hash(body []byte) uint64 {
	if a.set == nil {
		a.seed, a.set = maphash.MakeSeed(), map[uint64]struct{}{}
	}
	return maphash.Bytes(a.seed, body)
}

// Has reports whether the body of hash h was accepted.
func (a *Accepted) Has(h uint64) bool { _, ok := a.set[h]; return ok }

// Add records that the body of hash h (from Hash) was accepted.
func (a *Accepted) Add(h uint64) { a.set[h] = struct{}{} }

// Reset forgets every body.
func (a *Accepted) Reset() { clear(a.set) }

// ReasonTooLarge is the refusal reason of a request answered 413.
const ReasonTooLarge = "request_too_large"

// Refusal is a text a backend's 400 answer holds when it stored the rest
// of the request and refused some items for good, and the drop reason
// those items are counted with.
type Refusal struct{ Text, Reason string }

// Refused returns the drop reason of an error from CheckResponse that
// refuses items for good: ReasonTooLarge for 413, the Reason of the first
// of rules whose Text a 400 answer's reason holds (case-insensitive;
// Texts are lower case); "" for anything else.
func Refused(err error, rules []Refusal) string {
	se, ok := errors.AsType[*StatusError](err)
	if !ok {
		return ""
	}
	if se.Code == http.StatusRequestEntityTooLarge {
		return ReasonTooLarge
	}
	if se.Code != http.StatusBadRequest {
		return ""
	}
	r := strings.ToLower(se.Reason)
	for _, rule := range rules {
		if strings.Contains(r, rule.Text) {
			return rule.Reason
		}
	}
	return ""
}

// Isolate sends the items [0, n) of a request with send(lo, hi, split)
// and, while the backend refuses some for good (refused returns their
// reason, ""  for any other failure), splits the range in halves and
// sends each again (split true), until the refused items stand alone or
// *budget extra requests are spent; then refuse(lo, hi, reason) counts
// the items of the range as dropped. Backends that store the rest of a
// refused request (Prometheus, Loki) take the halves they already hold
// again without harm. It returns nil when every range was sent or
// refused, else the first other failure. Two requests of the budget are
// spent per split.
func Isolate(n int, budget *int, send func(lo, hi int, split bool) error, refused func(error) string, refuse func(lo, hi int, reason string)) error {
	return isolate(0, n, false, budget, send, refused, refuse)
}

func isolate(lo, hi int, split bool, budget *int, send func(lo, hi int, split bool) error, refused func(error) string, refuse func(lo, hi int, reason string)) error {
	err := send(lo, hi, split)
	if err == nil {
		return nil
	}
	reason := refused(err)
	if reason == "" {
		return err
	}
	if hi-lo == 1 || *budget <= 0 {
		refuse(lo, hi, reason)
		return nil
	}
	*budget -= 2
	mid := lo + (hi-lo)/2
	if err := isolate(lo, mid, true, budget, send, refused, refuse); err != nil {
		return err
	}
	return isolate(mid, hi, true, budget, send, refused, refuse)
}
