package kafkalite

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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

// maxVersions caps the version of each request this package sends (the
// broker's maximum wins when lower). Produce and Metadata stop at 12: v13
// names topics by id only.
var maxVersions = map[int16]int16{
	0:  12, // Produce (v3+: record batches v2)
	3:  12, // Metadata
	17: 1,  // SASLHandshake
	18: 0,  // ApiVersions: v0 is understood by every broker
	19: 7,  // CreateTopics
	22: 4,  // InitProducerID
	36: 2,  // SASLAuthenticate
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
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
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
			return nil, err
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
	resp, err := c.do(ctx, req)
	if err != nil {
		return fmt.Errorf("api versions from %s: %w", c.addr, err)
	}
	r := resp.(*kmsg.ApiVersionsResponse)
	if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
		return fmt.Errorf("api versions from %s: %w", c.addr, err)
	}
	for _, k := range r.ApiKeys {
		if ours, ok := maxVersions[k.ApiKey]; ok && k.MinVersion <= ours {
			c.versions[k.ApiKey] = min(ours, k.MaxVersion)
		}
	}
	if v, ok := c.versions[0]; !ok || v < 3 {
		return fmt.Errorf("broker %s does not accept produce v3+ (Kafka 0.11 or later is required)", c.addr)
	}
	if _, ok := c.versions[3]; !ok {
		return fmt.Errorf("broker %s: no common metadata version", c.addr)
	}
	return nil
}

// authenticate runs SASLHandshake v1 and SASLAuthenticate.
func (c *conn) authenticate(ctx context.Context, m sasl.Mechanism) error {
	if c.versions[17] < 1 {
		return fmt.Errorf("sasl with %s: broker does not speak SASLHandshake v1", c.addr)
	}
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = m.Name()
	resp, err := c.do(ctx, hs)
	if err != nil {
		return fmt.Errorf("sasl handshake with %s: %w", c.addr, err)
	}
	if err := kerr.ErrorForCode(resp.(*kmsg.SASLHandshakeResponse).ErrorCode); err != nil {
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
		resp, err := c.do(ctx, req)
		if err != nil {
			return fmt.Errorf("sasl authenticate with %s: %w", c.addr, err)
		}
		r := resp.(*kmsg.SASLAuthenticateResponse)
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
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

// do sends req at the negotiated version and reads its response, bounded
// by ctx: a cancelled ctx interrupts the read or write at once. Any error
// leaves the connection broken (responses would be out of step).
func (c *conn) do(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	v, ok := c.versions[req.Key()]
	if !ok {
		c.broken = true
		return nil, fmt.Errorf("broker %s does not support request key %d", c.addr, req.Key())
	}
	req.SetVersion(v)
	c.lastUse = time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultProduceTimeout)
	}
	c.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.roundTrip(req)
	if !stop() || err != nil {
		c.broken = true
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}
	return resp, err
}

func (c *conn) roundTrip(req kmsg.Request) (kmsg.Response, error) {
	c.corr++
	buf := make([]byte, 4, 256)
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.Key()))
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.GetVersion()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(c.corr))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(c.clientID)))
	buf = append(buf, c.clientID...)
	if req.IsFlexible() {
		buf = append(buf, 0) // no tagged fields
	}
	buf = req.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	if _, err := c.nc.Write(buf); err != nil {
		return nil, err
	}
	var hdr [8]byte
	if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(hdr[:4]))
	if n < 4 || n > maxResponse {
		return nil, fmt.Errorf("broker %s: response of %d bytes", c.addr, n)
	}
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != c.corr {
		return nil, fmt.Errorf("broker %s: response to request %d, want %d", c.addr, corr, c.corr)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c.nc, body); err != nil {
		return nil, err
	}
	// Flexible responses have a tag section after the correlation id,
	// except ApiVersions (KIP-511).
	if req.IsFlexible() && req.Key() != 18 {
		if len(body) == 0 || body[0] != 0 {
			return nil, fmt.Errorf("broker %s: unexpected tagged fields in a response header", c.addr)
		}
		body = body[1:]
	}
	resp := req.ResponseKind()
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("broker %s: decode response to key %d v%d: %w", c.addr, req.Key(), req.GetVersion(), err)
	}
	return resp, nil
}

// stale reports whether c should be closed rather than used.
func (c *conn) stale(now time.Time) bool {
	return c.broken || now.Sub(c.lastUse) > maxIdle
}

func (c *conn) close() { c.nc.Close() }
