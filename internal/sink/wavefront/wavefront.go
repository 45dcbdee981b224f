// Package wavefront is a sink that forwards metrics, distributions and spans
// in the Wavefront proxy line format over TCP (optionally TLS) to a
// Wavefront proxy or to another les listening for that format. Logs have no
// Wavefront line form and are skipped (counted).
package wavefront

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

// Config is what users write under `wavefront:`.
type Config struct {
	// Address is the proxy's host:port (required), e.g. "proxy:2878".
	Address string `yaml:"address"`
	// TraceAddress, when set, receives spans on a connection of their own:
	// a Wavefront proxy (and les) take span lines on a trace port (e.g.
	// 30000), not on 2878. Without it spans are sent to Address.
	TraceAddress string `yaml:"trace_address"`
	// TLS connects with TLS, verifying the server against the system roots
	// or, if set, the PEM certificates in TLSCAFile.
	TLS       bool   `yaml:"tls"`
	TLSCAFile string `yaml:"tls_ca_file"`
	// DialTimeout bounds connecting (default 5s); WriteTimeout bounds
	// writing one batch (default 10s). The Send context's deadline, if
	// sooner, applies too.
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.Address == "" {
		return errors.New("wavefront.address: required")
	}
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil {
		return fmt.Errorf("wavefront.address: %w", err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("wavefront.address: bad port %q", port)
	}
	if c.TLSCAFile != "" && !c.TLS {
		return errors.New("wavefront.tls_ca_file: set without tls: true")
	}
	if c.TLS && host == "" {
		return errors.New("wavefront.address: tls needs a host name")
	}
	if c.TraceAddress != "" {
		if _, _, err := net.SplitHostPort(c.TraceAddress); err != nil {
			return fmt.Errorf("wavefront.trace_address: %w", err)
		}
	}
	if c.DialTimeout < 0 || c.WriteTimeout < 0 {
		return errors.New("wavefront: dial_timeout and write_timeout must not be negative")
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	return nil
}

// Counts are totals since New.
type Counts struct {
	Batches     uint64 // Sends that wrote their lines
	Items       uint64 // lines written
	SkippedLogs uint64 // logs dropped: the format has no logs
	Invalid     uint64 // items dropped: non-finite metric value, distribution without centroids, or a string with a line break or a trailing backslash
	Dials       uint64 // connections opened
	WriteErrors uint64 // failed writes (the connection was then closed)
}

// Sink forwards to one proxy over one connection. It is safe for
// concurrent use; Sends are serialised.
type Sink struct {
	cfg   Config
	trace *Sink // spans, when cfg.TraceAddress is set

	mu     sync.Mutex
	conn   net.Conn // nil until needed, and after a failure
	tlsCfg *tls.Config
	buf    []byte
	closed bool
	// memo holds each metric series' line parts within one encode
	// (model.SeriesMemo): the wire series encoding gives the points of a
	// series one memory, so its name, source and tags are quoted once per
	// batch instead of once per point.
	memo   model.SeriesMemo[lineParts]
	counts Counts
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It does no I/O: the connection is
// made (and TLSCAFile read) on the first Send with something to send.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg}
	if cfg.TraceAddress != "" {
		tc := cfg
		tc.Address, tc.TraceAddress = cfg.TraceAddress, ""
		s.trace = &Sink{cfg: tc}
	}
	return s, nil
}

// Send encodes the metrics, distributions and spans of b into one buffer
// and writes it to the connection, connecting first if needed (or if the
// proxy closed the previous connection). On a failure the connection is
// closed and a retryable error returned; the next Send reconnects. Lines of
// a failed write may have been partly received, so a retry can duplicate
// points (the proxy and Wavefront treat a repeated point as the same
// point). It does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wavefront: %w", err)
	}
	if s.trace != nil && len(b.Spans) > 0 {
		// Spans first: if their port fails, the whole batch is retried and
		// the metric lines are not sent twice.
		if err := s.trace.Send(ctx, &model.Batch{Spans: b.Spans}, m); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("wavefront: sink is closed")
	}
	buf, n := s.encode(s.buf[:0], b)
	s.buf = buf
	if n == 0 {
		return nil
	}
	if s.conn != nil && peerGone(s.conn) {
		s.drop()
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(s.cfg.WriteTimeout)
	ctxDeadline := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	conn := s.conn
	if err := conn.SetWriteDeadline(deadline); err != nil {
		s.drop()
		return fmt.Errorf("wavefront: %w", err)
	}
	stop := func() bool { return false }
	if ctx.Done() != nil { // cancellation interrupts the write
		stop = context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Unix(1, 0)) })
	}
	_, err := conn.Write(buf)
	stop()
	if err != nil {
		s.counts.WriteErrors++
		s.drop()
		cerr := ctx.Err()
		if cerr == nil && ctxDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			cerr = context.DeadlineExceeded // the conn's timer fired first
		}
		if cerr != nil {
			return fmt.Errorf("wavefront: write: %w (%v)", cerr, err)
		}
		return fmt.Errorf("wavefront: write: %w", err)
	}
	s.counts.Batches++
	s.counts.Items += uint64(n)
	if cap(s.buf) > 16<<20 {
		s.buf = nil // do not pin one huge batch's buffer
	}
	return nil
}

// encode appends the lines for b to dst and returns it with the number of
// lines.
func (s *Sink) encode(dst []byte, b *model.Batch) ([]byte, int) {
	n := 0
	// Points of a series share memory only when the batch was decoded
	// from the series encoding; other batches, and those of fewer than
	// three points per series, skip the memo: a miss costs about 1.5
	// lines, a hit half of one (docs/performance.md).
	memo := b.SeriesRepeat(3)
	if memo {
		s.memo.Next()
	}
	for i := range b.Metrics {
		m := &b.Metrics[i]
		if !memo {
			if !model.IsFinite(m.Value) || !quotable(m.Name) || !quotable(m.Source) || !quotableTags(m.Tags) {
				s.counts.Invalid++
				continue
			}
			dst = s.keep(wavefront.AppendMetric(dst, &b.Metrics[i]), len(dst), &n)
			continue
		}
		if !model.IsFinite(m.Value) {
			s.counts.Invalid++
			continue
		}
		lp, hit := s.memo.Slot(m.Series, m.Name, m.Source, m.Tags, 0)
		if !hit {
			dst = s.setParts(lp, dst, m)
			if !lp.invalid {
				n++
			}
			continue
		}
		if lp.invalid {
			s.counts.Invalid++
			continue
		}
		// wavefront.AppendMetric's line, its series' parts from the memo.
		dst = append(dst, lp.name...)
		dst = append(dst, ' ')
		dst = strconv.AppendFloat(dst, m.Value, 'g', -1, 64)
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, floorDiv(m.Timestamp, 1e9), 10)
		dst = append(dst, lp.tail...)
		dst = append(dst, '\n')
		n++
	}
	for i := range b.Dists {
		d := &b.Dists[i]
		if len(d.Centroids) == 0 || !quotable(d.Name) || !quotable(d.Source) || !quotableTags(d.Tags) {
			s.counts.Invalid++
			continue
		}
		dst = s.keep(wavefront.AppendDistribution(dst, &b.Dists[i]), len(dst), &n)
	}
	for i := range b.Spans {
		if s.trace != nil {
			break // sent on the trace connection
		}
		sp := &b.Spans[i]
		if !quotable(sp.Name) || !quotable(sp.Source) || !quotable(sp.SpanID) || !quotable(sp.TraceID) ||
			!quotable(sp.ParentID) || !quotableTags(sp.Tags) {
			s.counts.Invalid++
			continue
		}
		dst = s.keep(wavefront.AppendSpan(dst, &b.Spans[i]), len(dst), &n)
	}
	s.counts.SkippedLogs += uint64(len(b.Logs))
	return dst, n
}

// lineParts is what the lines of a metric series share: its quoted name,
// the source and tags after the timestamp, and whether its lines are
// dropped (a string with a trailing backslash or a line break).
type lineParts struct {
	name, tail []byte
	invalid    bool
}

// setParts appends m's line to dst as wavefront.AppendMetric writes it (or
// nothing, counted, when it is invalid) and makes lp the parts of m's
// series, cut from that line: `"name" value seconds` + tail + '\n', where
// the quoted name is as long as m.Name plus its quotes and the escapes of
// its '"', and the tail begins at the first ' ' after the seconds (the
// numbers hold none). TestSeriesMemoSameLines checks the lines built from
// the parts against AppendMetric's.
func (s *Sink) setParts(lp *lineParts, dst []byte, m *model.Metric) []byte {
	start := len(dst)
	dst = wavefront.AppendMetric(dst, m)
	line := dst[start:]
	// A line break in a string would split the line (see keep).
	lp.invalid = !quotable(m.Name) || !quotable(m.Source) || !quotableTags(m.Tags) ||
		bytes.IndexByte(line[:len(line)-1], '\n') >= 0
	nl := 2 + len(m.Name) + strings.Count(m.Name, `"`)
	lp.name = append(lp.name[:0], line[:nl]...)
	rest := line[nl+1:]                        // value seconds tail\n
	rest = rest[bytes.IndexByte(rest, ' ')+1:] // seconds tail\n
	t := bytes.IndexAny(rest, " \n")
	lp.tail = append(lp.tail[:0], rest[t:len(rest)-1]...)
	if lp.invalid {
		s.counts.Invalid++
		return dst[:start]
	}
	return dst
}

// floorDiv is a/b rounded down (the format's seconds of a timestamp).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// keep keeps the line appended at out[start:] unless a string in it held a
// line break (which would split it, letting one field inject a line).
// Callers pass len(dst) as start: the append returns a new slice header
// and leaves their dst variable unchanged.
func (s *Sink) keep(out []byte, start int, n *int) []byte {
	if bytes.IndexByte(out[start:len(out)-1], '\n') >= 0 {
		s.counts.Invalid++
		return out[:start]
	}
	*n++
	return out
}

// quotable reports whether s survives the line format's quoting: a
// trailing backslash would escape the closing quote (`"x\"`), so the
// receiver would read the following fields as part of s and could take text
// of a later field for a field of its own.
func quotable(s string) bool { return !strings.HasSuffix(s, `\`) }

func quotableTags(t model.Tags) bool {
	for _, tag := range t {
		if !quotable(tag.Key) || !quotable(tag.Value) {
			return false
		}
	}
	return true
}

func (s *Sink) dial(ctx context.Context) error {
	d := &net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	var (
		conn net.Conn
		err  error
	)
	if s.cfg.TLS {
		if s.tlsCfg == nil {
			if s.tlsCfg, err = s.loadTLS(); err != nil {
				return fmt.Errorf("wavefront: %w", err)
			}
		}
		conn, err = (&tls.Dialer{NetDialer: d, Config: s.tlsCfg}).DialContext(ctx, "tcp", s.cfg.Address)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.cfg.Address)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("wavefront: dial: %w (%v)", cerr, err)
		}
		return fmt.Errorf("wavefront: %w", err)
	}
	s.counts.Dials++
	s.conn = conn
	return nil
}

func (s *Sink) loadTLS() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(s.cfg.Address)
	c := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if s.cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(s.cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca_file %s: no PEM certificates", s.cfg.TLSCAFile)
		}
	}
	return c, nil
}

func (s *Sink) drop() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Close closes the connection. Later Sends fail; a second Close returns nil.
func (s *Sink) Close() error {
	if s.trace != nil {
		_ = s.trace.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if err != nil {
		return fmt.Errorf("wavefront: close: %w", err)
	}
	return nil
}
