package kafkalite

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
)

// Connection timeouts. A connection unused for longer than maxIdle is
// closed before its next use rather than written to: after a long freeze
// of the sandbox a NAT may have dropped it silently, and a write into such
// a connection waits for the whole deadline.
const (
	dialTimeout = 2 * time.Second
	tlsTimeout  = 3 * time.Second
	maxIdle     = 60 * time.Second
	maxResponse = 64 << 20
)

// Request keys.
const (
	keyProduce          = 0
	keyMetadata         = 3
	keySASLHandshake    = 17
	keyApiVersions      = 18
	keyCreateTopics     = 19
	keyInitProducerID   = 22
	keySASLAuthenticate = 36
)

// maxVersion caps the version of each request this package sends (the
// broker's maximum wins when lower), and flexibleFrom is its first
// "flexible" version (KIP-482: tagged fields in the header;
// TestVersions checks both against kmsg). Produce and Metadata stop at
// 12: v13 names topics by id only.
func maxVersion(key int16) (max, flexibleFrom int16, ok bool) {
	switch key {
	case keyProduce: // v3+: record batches v2
		return 12, 9, true
	case keyMetadata:
		return 12, 9, true
	case keySASLHandshake:
		return 1, 1 << 14, true
	case keyApiVersions: // v0 is understood by every broker
		return 0, 3, true
	case keyCreateTopics:
		return 7, 5, true
	case keyInitProducerID:
		return 4, 2, true
	case keySASLAuthenticate:
		return 2, 2, true
	}
	return 0, 0, false
}

// conn is one connection to one broker. It is used by one goroutine at a
// time.
type conn struct {
	addr     string
	nc       net.Conn
	versions map[int16]int16 // api key → the highest version both sides speak
	corr     int32
	clientID string
	lastUse  time.Time
	broken   bool
}

// dial connects to addr, negotiates versions and authenticates.
func dial(ctx context.Context, addr string, cfg *dialConfig) (*conn, error) {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg.tls != nil {
		tc := cfg.tls.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(addr)
		}
		hctx, cancel := context.WithTimeout(ctx, tlsTimeout)
		t := tls.Client(nc, tc)
		err := t.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			err = fmt.Errorf("tls handshake with %s: %w", addr, err)
			var ve *tls.CertificateVerificationError
			if errors.As(err, &ve) {
				return nil, &authError{err} // the same certificate next time
			}
			return nil, err
		}
		nc = t
	}
	c := &conn{addr: addr, nc: nc, clientID: cfg.clientID, versions: map[int16]int16{18: 0}}
	if err := c.negotiate(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if cfg.sasl != nil {
		if err := c.authenticate(ctx, cfg.sasl); err != nil {
			nc.Close()
			if ctx.Err() != nil {
				return nil, err
			}
			// Brokers close the connection after a failed
			// authentication (kfake without an answer): retrying within
			// this publish would only repeat it until the deadline.
			return nil, &authError{err}
		}
	}
	return c, nil
}

type dialConfig struct {
	clientID string
	tls      *tls.Config
	sasl     sasl.Mechanism
}

func (c *conn) negotiate(ctx context.Context) error {
	req := kmsg.NewPtrApiVersionsRequest()
	r := kmsg.NewPtrApiVersionsResponse()
	if err := c.do(ctx, keyApiVersions, req.AppendTo, r.ReadFrom, &req.Version, &r.Version); err != nil {
		return fmt.Errorf("api versions from %s: %w", c.addr, err)
	}
	if err := errorForCode(r.ErrorCode); err != nil {
		return fmt.Errorf("api versions from %s: %w", c.addr, err)
	}
	for _, k := range r.ApiKeys {
		if ours, _, ok := maxVersion(k.ApiKey); ok && k.MinVersion <= ours {
			c.versions[k.ApiKey] = min(ours, k.MaxVersion)
		}
	}
	if v, ok := c.versions[keyProduce]; !ok || v < 3 {
		return fmt.Errorf("broker %s does not accept produce v3+ (Kafka 0.11 or later is required)", c.addr)
	}
	if _, ok := c.versions[keyMetadata]; !ok {
		return fmt.Errorf("broker %s: no common metadata version", c.addr)
	}
	return nil
}

// authenticate runs SASLHandshake v1 and SASLAuthenticate.
func (c *conn) authenticate(ctx context.Context, m sasl.Mechanism) error {
	if c.versions[keySASLHandshake] < 1 {
		return fmt.Errorf("sasl with %s: broker does not speak SASLHandshake v1", c.addr)
	}
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = m.Name()
	hr := kmsg.NewPtrSASLHandshakeResponse()
	if err := c.do(ctx, keySASLHandshake, hs.AppendTo, hr.ReadFrom, &hs.Version, &hr.Version); err != nil {
		return fmt.Errorf("sasl handshake with %s: %w", c.addr, err)
	}
	if err := errorForCode(hr.ErrorCode); err != nil {
		return fmt.Errorf("sasl handshake with %s (%s): %w", c.addr, m.Name(), err)
	}
	host, _, _ := net.SplitHostPort(c.addr)
	sess, msg, err := m.Authenticate(ctx, host)
	if err != nil {
		return fmt.Errorf("sasl %s: %w", m.Name(), err)
	}
	for {
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.SASLAuthBytes = msg
		r := kmsg.NewPtrSASLAuthenticateResponse()
		if err := c.do(ctx, keySASLAuthenticate, req.AppendTo, r.ReadFrom, &req.Version, &r.Version); err != nil {
			return fmt.Errorf("sasl authenticate with %s: %w", c.addr, err)
		}
		if err := errorForCode(r.ErrorCode); err != nil {
			msg := ""
			if r.ErrorMessage != nil {
				msg = ": " + *r.ErrorMessage
			}
			return fmt.Errorf("sasl %s with %s: %w%s", m.Name(), c.addr, err, msg)
		}
		done, next, err := sess.Challenge(r.SASLAuthBytes)
		if err != nil {
			return fmt.Errorf("sasl %s with %s: %w", m.Name(), c.addr, err)
		}
		if done {
			return nil
		}
		msg = next
	}
}

// do sends a request of key at the negotiated version (stored in *reqV
// and *respV before enc and dec run) and decodes its response, bounded by
// ctx: a cancelled ctx interrupts the read or write at once. Any error
// leaves the connection broken (responses would be out of step). enc and
// dec are the concrete kmsg methods, never called through an interface,
// so that the linker keeps only those (ADR 0005).
func (c *conn) do(ctx context.Context, key int16, enc func([]byte) []byte, dec func([]byte) error, reqV, respV *int16) error {
	v, ok := c.versions[key]
	if !ok {
		c.broken = true
		return fmt.Errorf("broker %s does not support request key %d", c.addr, key)
	}
	*reqV, *respV = v, v
	c.lastUse = time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultProduceTimeout)
	}
	c.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	err := c.roundTrip(key, v, enc, dec)
	if !stop() || err != nil {
		c.broken = true
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}
	return err
}

func (c *conn) roundTrip(key, v int16, enc func([]byte) []byte, dec func([]byte) error) error {
	c.corr++
	_, flex, _ := maxVersion(key)
	flexible := v >= flex
	buf := make([]byte, 4, 256)
	buf = binary.BigEndian.AppendUint16(buf, uint16(key))
	buf = binary.BigEndian.AppendUint16(buf, uint16(v))
	buf = binary.BigEndian.AppendUint32(buf, uint32(c.corr))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(c.clientID)))
	buf = append(buf, c.clientID...)
	if flexible {
		buf = append(buf, 0) // no tagged fields
	}
	buf = enc(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	if _, err := c.nc.Write(buf); err != nil {
		return err
	}
	var hdr [8]byte
	if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
		return err
	}
	n := int32(binary.BigEndian.Uint32(hdr[:4]))
	if n < 4 || n > maxResponse {
		return fmt.Errorf("broker %s: response of %d bytes", c.addr, n)
	}
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != c.corr {
		return fmt.Errorf("broker %s: response to request %d, want %d", c.addr, corr, c.corr)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c.nc, body); err != nil {
		return err
	}
	// Flexible responses have a tag section after the correlation id,
	// except ApiVersions (KIP-511).
	if flexible && key != keyApiVersions {
		if len(body) == 0 || body[0] != 0 {
			return fmt.Errorf("broker %s: unexpected tagged fields in a response header", c.addr)
		}
		body = body[1:]
	}
	if err := dec(body); err != nil {
		return fmt.Errorf("broker %s: decode response to key %d v%d: %w", c.addr, key, v, err)
	}
	return nil
}

// stale reports whether c should be closed rather than used.
func (c *conn) stale(now time.Time) bool {
	return c.broken || now.Sub(c.lastUse) > maxIdle
}

func (c *conn) close() { c.nc.Close() }

// authError is a failed SASL exchange or a broker certificate that does
// not verify; it is not retried within a publish (the next publish tries
// again).
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }
