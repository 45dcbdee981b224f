// Package client emits metrics, events and logs from Go programs to a local
// les agent (`les up`, `les agent`, or the les Lambda extension) without
// blocking and without allocating on the hot path.
//
// Metrics and events are DogStatsD lines written as UDP datagrams to the
// agent's statsd listener (default 127.0.0.1:8125); logs are NDJSON lines
// written as UDP datagrams to its logs listener (default 127.0.0.1:5170).
// Every call encodes its line into a buffer allocated by New; several lines
// share one datagram, which is written when the next line would not fit,
// every flush interval (default 100 ms) by a background goroutine, and on
// Flush and Close. Writes never wait: when the kernel refuses a datagram
// (no agent listening, a full socket buffer) it is dropped and counted in
// Stats. UDP cannot tell whether the agent read a datagram, so "sent"
// means the kernel accepted it.
//
// Names, tags and messages are sanitised so that no user string can break
// a line or a datagram; the rules are in README.md and on each method.
//
// A Client is safe for concurrent use. In an AWS Lambda handler, call Flush
// before returning so the invocation's lines leave before the sandbox is
// frozen.
package client

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// Default addresses, flush interval and datagram sizes.
const (
	DefaultHost          = "127.0.0.1"
	DefaultStatsDPort    = 8125
	DefaultLogsPort      = 5170
	DefaultFlushInterval = 100 * time.Millisecond

	// LoopbackDatagram is the metrics datagram size to a loopback agent:
	// loopback has a 64 KiB MTU, so nothing fragments, and les' statsd
	// listener reads datagrams up to 64 KiB (max_datagram). A write costs
	// about the same at 8 and 32 KiB, so 32 KiB quarters its share per
	// metric. (The Datadog agent reads 8 KiB by default: use
	// WithMaxDatagram(8192) against one.)
	LoopbackDatagram = 32 << 10
	// LoopbackLogDatagram is the logs datagram size to a loopback agent
	// (les' logs listener reads datagrams up to 64 KiB).
	LoopbackLogDatagram = 32 << 10
	// RemoteDatagram is the datagram size to an agent on another host:
	// an Ethernet MTU of 1500 less IP and UDP headers with room for IP
	// options, so no datagram is fragmented (and lost whole when one
	// fragment is).
	RemoteDatagram = 1432

	// MaxTags is the most tags (constant and per call) one line may carry:
	// les' StatsD decoder rejects lines with more.
	MaxTags = 100
)

// Tag is one key/value tag of a metric or event, or an attribute of a log
// record.
type Tag struct {
	Key, Value string
}

// T returns Tag{key, value}.
func T(key, value string) Tag { return Tag{Key: key, Value: value} }

// Client writes to one les agent. The zero value is not usable; call New.
type Client struct {
	metrics *pipe // statsd: metrics and events
	logs    *pipe // logs listener: NDJSON

	ns     []byte // sanitised namespace prefix of metric names
	consts []constTag
	// constLens has bit len(key)%64 set for every constant tag key.
	constLens uint64
	// constEnc is the constant tags encoded for a StatsD line
	// ("k:v,k2:v2", no "|#"), used when no per-call tag overrides one.
	constEnc []byte
	// logSource is the "source" field of log records: the source, or a
	// constant tag "source".
	logSource string

	stop     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	isClosed bool
}

type constTag struct {
	key, value string // sanitised
}

// New returns a client writing to the agent named by opts and the
// environment (see Option). It resolves the addresses and allocates every
// buffer the client will use; it sends nothing, and succeeds whether or
// not an agent is listening.
func New(opts ...Option) (*Client, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	c := &Client{stop: make(chan struct{})}
	c.ns = appendName(nil, cfg.namespace, true)
	tags := cfg.tags
	if cfg.source != "" {
		tags = append([]Tag{{Key: "source", Value: cfg.source}}, tags...)
	}
	for _, t := range tags {
		if t.Key == "" {
			continue
		}
		ct := constTag{
			key:   string(appendClean(nil, t.Key, className)),
			value: string(appendClean(nil, t.Value, classValue)),
		}
		if slices.ContainsFunc(c.consts, func(o constTag) bool { return o.key == ct.key }) {
			continue // the first of repeated keys wins
		}
		c.consts = append(c.consts, ct)
		c.constLens |= 1 << (len(ct.key) & 63)
		if ct.key == "source" {
			c.logSource = t.Value
		}
	}
	if len(c.consts) > MaxTags {
		return nil, fmt.Errorf("client: %d constant tags, at most %d", len(c.consts), MaxTags)
	}
	for i, t := range c.consts {
		if i > 0 {
			c.constEnc = append(c.constEnc, ',')
		}
		c.constEnc = appendTagEnc(c.constEnc, t.key, t.value)
	}

	c.metrics, err = newPipe(cfg.statsdAddr, cfg.maxDatagram, LoopbackDatagram, cfg.buffers)
	if err != nil {
		return nil, fmt.Errorf("client: statsd address: %w", err)
	}
	c.logs, err = newPipe(cfg.logsAddr, cfg.maxLogDatagram, LoopbackLogDatagram, cfg.buffers)
	if err != nil {
		c.metrics.close()
		return nil, fmt.Errorf("client: logs address: %w", err)
	}
	if cfg.interval > 0 {
		c.wg.Add(1)
		go c.flusher(cfg.interval)
	}
	return c, nil
}

func (c *Client) flusher(interval time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.metrics.flush()
			c.logs.flush()
		}
	}
}

// Flush writes the lines buffered so far, without waiting (a refused
// datagram is dropped and counted). Lines in a datagram that another
// goroutine is writing at that moment leave with that write.
func (c *Client) Flush() {
	c.metrics.flush()
	c.logs.flush()
}

// ErrClosed is returned by a second Close.
var ErrClosed = errors.New("client: closed")

// Close stops the background flusher, flushes and closes the sockets.
// Calls after Close drop their lines and count them in Stats. A second
// Close returns ErrClosed.
func (c *Client) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.isClosed {
		return ErrClosed
	}
	c.isClosed = true
	close(c.stop)
	c.wg.Wait()
	c.metrics.close()
	c.logs.close()
	return nil
}

// Stats counts what the client did since New, per socket.
type Stats struct {
	Metrics SocketStats // metrics and events (statsd listener)
	Logs    SocketStats // log records (logs listener)
}

// SocketStats counts the lines of one socket. Every line is sent, dropped
// or still buffered: Lines = SentLines + DroppedLines + buffered lines.
type SocketStats struct {
	// Lines counts every line the client was asked to write (a negative
	// gauge is two lines, see Gauge), including dropped ones.
	Lines uint64
	// SentDatagrams, SentLines and SentBytes count what the kernel
	// accepted. Against a port where nothing listens, the kernel accepts a
	// datagram and reports the refusal on the next write, which fails.
	SentDatagrams, SentLines, SentBytes uint64
	// DroppedDatagrams counts writes the kernel refused (ECONNREFUSED: no
	// agent; EAGAIN/ENOBUFS: socket buffer full) and writes that raced
	// with Close.
	DroppedDatagrams uint64
	// DroppedLines counts every line that will not be written: the lines
	// of DroppedDatagrams plus DroppedInvalid, DroppedBusy and calls after
	// Close.
	DroppedLines uint64
	// DroppedInvalid counts calls refused before encoding: empty name,
	// title or set member, NaN or ±Inf value, more than MaxTags tags, or a
	// line longer than a datagram.
	DroppedInvalid uint64
	// DroppedBusy counts lines dropped because every buffer was being
	// written by other goroutines at that moment.
	DroppedBusy uint64
	// TruncatedLogs counts log records whose message was cut to fit a
	// datagram (they carry the attribute truncated=true).
	TruncatedLogs uint64
}

// Total adds the counters of both sockets.
func (s Stats) Total() SocketStats {
	m, l := s.Metrics, s.Logs
	return SocketStats{
		Lines: m.Lines + l.Lines, SentDatagrams: m.SentDatagrams + l.SentDatagrams,
		SentLines: m.SentLines + l.SentLines, SentBytes: m.SentBytes + l.SentBytes,
		DroppedDatagrams: m.DroppedDatagrams + l.DroppedDatagrams, DroppedLines: m.DroppedLines + l.DroppedLines,
		DroppedInvalid: m.DroppedInvalid + l.DroppedInvalid, DroppedBusy: m.DroppedBusy + l.DroppedBusy,
		TruncatedLogs: m.TruncatedLogs + l.TruncatedLogs,
	}
}

// Stats returns the counters. It holds each socket's mutex only to read
// one counter, as briefly as an emitting call holds it.
func (c *Client) Stats() Stats {
	return Stats{Metrics: c.metrics.stats(), Logs: c.logs.stats()}
}

// MetricsAddr is the address of the agent's statsd listener.
func (c *Client) MetricsAddr() net.Addr { return c.metrics.conn.RemoteAddr() }

// LogsAddr is the address of the agent's logs listener.
func (c *Client) LogsAddr() net.Addr { return c.logs.conn.RemoteAddr() }
