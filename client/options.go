package client

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Environment variables New reads; options override them.
const (
	// EnvAgentHost is the agent's host for metrics and logs (default
	// 127.0.0.1).
	EnvAgentHost = "LES_AGENT_HOST"
	// EnvStatsDPort is the port of the agent's statsd listener (default
	// 8125).
	EnvStatsDPort = "LES_STATSD_PORT"
	// EnvLogsPort is the port of the agent's logs listener (default 5170).
	EnvLogsPort = "LES_LOGS_PORT"
	// EnvLambdaFunction is set by AWS Lambda; its value is the default
	// source.
	EnvLambdaFunction = "AWS_LAMBDA_FUNCTION_NAME"
)

// Option configures New.
type Option func(*config)

type config struct {
	statsdAddr, logsAddr        string
	namespace, source           string
	tags                        []Tag
	interval                    time.Duration
	maxDatagram, maxLogDatagram int
	buffers                     int
}

// WithAddr sets the agent's statsd address, "host:port" (default
// $LES_AGENT_HOST:$LES_STATSD_PORT, else 127.0.0.1:8125).
func WithAddr(hostport string) Option { return func(c *config) { c.statsdAddr = hostport } }

// WithLogsAddr sets the agent's logs listener address, "host:port"
// (default $LES_AGENT_HOST:$LES_LOGS_PORT, else 127.0.0.1:5170).
func WithLogsAddr(hostport string) Option { return func(c *config) { c.logsAddr = hostport } }

// WithSource sets the source of every metric, event and log (a constant
// "source" tag on StatsD lines, the "source" field of log records). The
// default is $AWS_LAMBDA_FUNCTION_NAME inside Lambda and none elsewhere
// (the agent then applies its own default); WithSource("") sets none.
func WithSource(source string) Option {
	return func(c *config) { c.source = source }
}

// WithTags adds constant tags to every metric and event and constant
// attributes to every log record. A per-call tag with the same key wins.
func WithTags(tags ...Tag) Option {
	return func(c *config) { c.tags = append(c.tags, tags...) }
}

// WithNamespace prefixes every metric name (not event titles or logs),
// e.g. "checkout." makes Count("requests") emit "checkout.requests".
func WithNamespace(prefix string) Option { return func(c *config) { c.namespace = prefix } }

// WithFlushInterval sets how often the background goroutine writes
// buffered lines (default 100 ms). Zero or less starts no goroutine: lines
// leave when a buffer fills, on Flush and on Close.
func WithFlushInterval(d time.Duration) Option {
	return func(c *config) { c.interval = d }
}

// WithMaxDatagram sets the largest metrics datagram in bytes (default
// LoopbackDatagram to a loopback address, RemoteDatagram otherwise). One
// line never spans datagrams: a longer line is dropped (DroppedInvalid).
func WithMaxDatagram(n int) Option { return func(c *config) { c.maxDatagram = n } }

// WithMaxLogDatagram sets the largest logs datagram in bytes (default
// LoopbackLogDatagram to a loopback address, RemoteDatagram otherwise).
// A longer log record has its message truncated (TruncatedLogs).
func WithMaxLogDatagram(n int) Option { return func(c *config) { c.maxLogDatagram = n } }

// WithBuffers sets how many datagram buffers each socket has (default 4,
// at least 2): one is filled while the others are being written by the
// goroutines that filled them.
func WithBuffers(n int) Option { return func(c *config) { c.buffers = n } }

// maxUDPPayload is the largest IPv4 UDP payload.
const maxUDPPayload = 65507

func newConfig(opts []Option) (config, error) {
	c := config{interval: DefaultFlushInterval, buffers: 4}
	if v := os.Getenv(EnvLambdaFunction); v != "" {
		c.source = v
	}
	host := DefaultHost
	if v := os.Getenv(EnvAgentHost); v != "" {
		host = v
	}
	sport, lport := strconv.Itoa(DefaultStatsDPort), strconv.Itoa(DefaultLogsPort)
	for _, e := range []struct {
		name string
		dst  *string
	}{{EnvStatsDPort, &sport}, {EnvLogsPort, &lport}} {
		v := os.Getenv(e.name)
		if v == "" {
			continue
		}
		if n, err := strconv.Atoi(v); err != nil || n <= 0 || n > 65535 {
			return c, fmt.Errorf("client: %s=%q is not a port", e.name, v)
		}
		*e.dst = v
	}
	c.statsdAddr = net.JoinHostPort(host, sport)
	c.logsAddr = net.JoinHostPort(host, lport)
	for _, o := range opts {
		o(&c)
	}
	if c.buffers < 2 {
		c.buffers = 2
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"WithMaxDatagram", c.maxDatagram}, {"WithMaxLogDatagram", c.maxLogDatagram}} {
		if n.v < 0 || n.v > maxUDPPayload || (n.v > 0 && n.v < 512) {
			return c, fmt.Errorf("client: %s(%d): want 512..%d bytes", n.name, n.v, maxUDPPayload)
		}
	}
	return c, nil
}
