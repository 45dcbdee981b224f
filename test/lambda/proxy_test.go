//go:build linux

package lambda_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
)

// proxy forwards the connections a unix socket accepts (the sandbox's
// side of a netbridge forward) to a TCP address on the host. Stop is the
// endpoint going away — listener and every open connection closed, the
// socket file removed, so new connections from the sandbox fail — and
// Start brings it back at the same place: what a client sees when the
// server it talks to restarts.
type proxy struct {
	t      *testing.T
	sock   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// accepted counts connections accepted since the start.
	accepted int
	// inspect, when set (SetInspect), makes the proxy relay HTTP/1.1
	// request by request and see each one first.
	inspect func(raw, body []byte) (hold bool)
}

// SetInspect makes connections accepted from now on relay HTTP/1.1
// requests one at a time, calling f with each request (raw: as the
// proxy would forward it; body: its body) before forwarding it. When f
// returns true the request is held: never forwarded by the proxy and
// never answered, its connection left open until the client or Stop
// closes it (f keeps raw to deliver it itself, or drops it).
func (p *proxy) SetInspect(f func(raw, body []byte) (hold bool)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inspect = f
}

func newProxy(t *testing.T, sock, target string) *proxy {
	p := &proxy{t: t, sock: sock, target: target, conns: map[net.Conn]struct{}{}}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start listens (again); a no-op while running.
func (p *proxy) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	_ = os.Remove(p.sock)
	ln, err := net.Listen("unix", p.sock)
	if err != nil {
		p.t.Fatalf("proxy: %v", err)
	}
	p.ln = ln
	p.wg.Add(1)
	go p.serve(ln)
}

// Stop closes the listener and every connection and waits for them.
func (p *proxy) Stop() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	if ln != nil {
		ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	_ = os.Remove(p.sock)
}

// Accepted is the number of connections accepted so far.
func (p *proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		inspect := p.inspect
		p.mu.Unlock()
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			d, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			if !p.track(d) {
				return
			}
			defer p.untrack(d)
			if inspect != nil {
				relayHTTP(c, d, inspect)
				return
			}
			done := make(chan struct{})
			go func() { _, _ = io.Copy(d, c); d.Close(); close(done) }()
			_, _ = io.Copy(c, d)
			c.Close()
			<-done
		}()
	}
}

// relayHTTP relays HTTP/1.1 requests from c to d and their answers back,
// one at a time (what an HTTP/1.1 client without pipelining sends),
// until either side closes or a request is held (see SetInspect).
func relayHTTP(c, d net.Conn, inspect func(raw, body []byte) bool) {
	cr, dr := bufio.NewReader(c), bufio.NewReader(d)
	for {
		req, err := http.ReadRequest(cr)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var raw bytes.Buffer
		if err := req.Write(&raw); err != nil {
			return
		}
		if inspect(raw.Bytes(), body) {
			_, _ = io.Copy(io.Discard, c) // held: until the client or Stop closes c
			return
		}
		if _, err := d.Write(raw.Bytes()); err != nil {
			return
		}
		resp, err := http.ReadResponse(dr, req)
		if err != nil {
			return
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil {
			return
		}
	}
}

// hostPort is the host:port of an endpoint URL.
func hostPort(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		panic(err)
	}
	return u.Host
}

// TestKinesaliteSurvivesAbortedRequest: a client that drops its
// connection in the middle of a request (what the freeze test's endpoint
// restarts do to requests in flight) does not take kinesalite down
// (test/kinesalite/start.js; kinesalite itself throws), so the stream is
// still there for the next publish. kinesistest fails the test if
// kinesalite exits while it runs.
func TestKinesaliteSurvivesAbortedRequest(t *testing.T) {
	endpoint, name := kinesisStream(t)
	for range 3 {
		c, err := net.Dial("tcp", hostPort(endpoint))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: kinesis\r\nContent-Type: application/x-amz-json-1.1\r\n"+
			"X-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Length: 1000\r\n\r\n{\"StreamName\":")
		c.Close()
	}
	kinesistest.Put(t, kinesistest.Client(endpoint), name, []byte("after the aborted requests"))
}
