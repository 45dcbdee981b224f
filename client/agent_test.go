package client_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/client"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/model"
)

func TestMain(m *testing.M) {
	// The client reads these; a developer's environment must not steer
	// the tests.
	for _, k := range []string{client.EnvAgentHost, client.EnvStatsDPort, client.EnvLogsPort, client.EnvLambdaFunction} {
		os.Unsetenv(k)
	}
	goleak.VerifyTestMain(m)
}

// agent is a stand-in for les' statsd and logs UDP listeners: two real
// loopback sockets whose datagrams the tests decode with les' own
// decoders.
type agent struct {
	metrics, logs *net.UDPConn
	// datagrams read so far from each socket, so received can be called
	// again on the same client
	readMetrics, readLogs uint64
}

func newAgent(t testing.TB) *agent {
	t.Helper()
	a := &agent{metrics: listenUDP(t), logs: listenUDP(t)}
	return a
}

func listenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// opts points a client at the agent, with no background flusher (tests
// flush explicitly) unless more options say otherwise.
func (a *agent) opts(more ...client.Option) []client.Option {
	return append([]client.Option{
		client.WithAddr(a.metrics.LocalAddr().String()),
		client.WithLogsAddr(a.logs.LocalAddr().String()),
		client.WithFlushInterval(0),
		client.WithSource(""),
	}, more...)
}

func (a *agent) client(t testing.TB, more ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(a.opts(more...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, client.ErrClosed) {
			t.Error(err)
		}
	})
	return c
}

// readN reads n datagrams that the kernel already holds (the client's
// writes completed before the caller asks); the deadline only turns a
// missing datagram into a failure instead of a hang.
func readN(t testing.TB, conn *net.UDPConn, n uint64) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	for uint64(len(out)) < n {
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, append([]byte(nil), buf[:k]...))
	}
	return out
}

// now is the arrival time the tests give the decoders.
const now = int64(1_700_000_000_000_000_000)

// received flushes c and decodes everything it sent to a with les'
// statsd decoder (metrics socket) and logs decoder (logs socket).
func (a *agent) received(t testing.TB, c *client.Client) (metrics, logs *model.Batch, datagrams [][]byte) {
	t.Helper()
	c.Flush()
	st := c.Stats()
	metrics, logs = &model.Batch{}, &model.Batch{}
	sd := statsd.NewDecoder(statsd.Options{})
	for _, d := range readN(t, a.metrics, st.Metrics.SentDatagrams-a.readMetrics) {
		sd.Decode(metrics, d, now)
		datagrams = append(datagrams, d)
	}
	ld := logline.NewDecoder(logline.Options{})
	for _, d := range readN(t, a.logs, st.Logs.SentDatagrams-a.readLogs) {
		ld.Decode(logs, d, now)
		datagrams = append(datagrams, d)
	}
	a.readMetrics, a.readLogs = st.Metrics.SentDatagrams, st.Logs.SentDatagrams
	for _, b := range []*model.Batch{metrics, logs} {
		for _, r := range b.Rejects {
			t.Errorf("les rejected %q: %s", r.Line, r.Reason)
		}
	}
	return metrics, logs, datagrams
}

// freeUDPAddr is a loopback address where nothing listens.
func freeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}
