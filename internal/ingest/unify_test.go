package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream/mem"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		in   string
		want sniff
	}{
		{"POST /report?f=wavefront HTTP/1.1\r\nHost: x\r\n", sniffHTTP},
		{"GET /healthz HTTP/1.0\n", sniffHTTP},
		{"HEAD / HTTP/1.1\r\n", sniffHTTP},
		{"P", sniffMore},
		{"POS", sniffMore},
		{"POST /report?f=wavefront HTT", sniffMore},
		{"", sniffMore},
		{"cpu.load 1 source=a\n", sniffRaw},
		{"POST.latency 12 source=a\n", sniffRaw}, // a metric named POST.*
		{"GET 1 source=a\n", sniffRaw},           // a metric named GET
		{"POST /x 1 source=a\n", sniffRaw},
		{"POST  HTTP/1.1\n", sniffRaw},
		{"POST /x HTTP/2.0\n", sniffRaw},
		{"GETS.count 1\n", sniffRaw},
		{"!M 1700000000 #3 1.5 x source=a\n", sniffRaw},
		{"POST /" + strings.Repeat("a", maxRequestLine) + " HTTP/1.1\n", sniffRaw},
	} {
		if got := classify([]byte(c.in)); got != c.want {
			t.Errorf("classify(%.40q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// FuzzClassify: classify never panics and decides once: the answer for a
// prefix that decided is the answer for every longer input, so reading
// more after deciding could not have changed the decision.
func FuzzClassify(f *testing.F) {
	f.Add([]byte("POST /report?f=wavefront HTTP/1.1\r\nHost: 127.0.0.1:2878\r\nContent-Encoding: gzip\r\n\r\n"))
	f.Add([]byte("GET /healthz HTTP/1.1\r\n\r\n"))
	f.Add([]byte("POST.latency 12 source=a\n"))
	f.Add([]byte("cpu.load 1 1700000000 source=a env=prod\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		whole := classify(b)
		for k := range len(b) {
			if p := classify(b[:k]); p != sniffMore && p != whole {
				t.Fatalf("prefix %q says %d, whole %q says %d", b[:k], p, b, whole)
			}
		}
		if whole == sniffHTTP {
			line, _, _ := bytes.Cut(b, []byte("\n"))
			if !bytes.Contains(line, []byte(" HTTP/1.")) {
				t.Fatalf("HTTP without a request line: %q", b)
			}
		}
	})
}

// lineSink is a decoder that hands every line it decodes to a channel.
type lineSink chan string

func (l lineSink) Decode(dst *model.Batch, payload []byte, now int64) {
	for _, line := range strings.Split(strings.TrimSuffix(string(payload), "\n"), "\n") {
		l <- line
	}
}

// unified starts a unified TCP listener whose HTTP handler echoes the
// method, path and body of each request to got.
func unified(t *testing.T, cfg TCPConfig) (addr string, lines lineSink, got chan string, reg *selfmetric.Registry, stop func()) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	reg = selfmetric.New()
	b, err := NewBatcher(BatchConfig{}, openStream(t), reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lines = make(lineSink, 16)
	got = make(chan string, 16)
	cfg.Address = "127.0.0.1:0"
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Server{ReadHeaderTimeout: 10 * time.Second}
	}
	cfg.HTTP.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.String() + " " + string(body)
		w.WriteHeader(http.StatusAccepted)
	})
	tcp, err := ListenTCP(cfg, NewIntake("wavefront", "tcp", b, reg), func() Decoder { return lines }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tcp.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		goleak.VerifyNone(t, ignore)
	}
	t.Cleanup(stop)
	return tcp.Addr().String(), lines, got, reg, stop
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived in 10s")
		return ""
	}
}

// TestUnifiedPort: one port takes raw Wavefront lines (including lines
// that start like an HTTP method) and HTTP requests, keep-alive ones too,
// and a request line that arrives in pieces; shutdown ends an idle HTTP
// connection and leaks no goroutine.
func TestUnifiedPort(t *testing.T) {
	addr, lines, got, _, stop := unified(t, TCPConfig{})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte("POST.latency 12 source=a\nGET 1 source=b\n")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"POST.latency 12 source=a", "GET 1 source=b"} {
		if l := recv(t, lines); l != want {
			t.Errorf("raw line %q, want %q", l, want)
		}
	}

	client := &http.Client{Transport: &http.Transport{}}
	for i := range 2 { // the second request reuses the connection
		resp, err := client.Post("http://"+addr+"/report?f=wavefront", "text/plain", strings.NewReader("x 1 source=h\n"))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("request %d: %d", i, resp.StatusCode)
		}
		if g := recv(t, got); g != "POST /report?f=wavefront x 1 source=h\n" {
			t.Errorf("request %d: handler saw %q", i, g)
		}
	}

	// A request line in pieces: the first byte alone is undecided.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, part := range []string{"P", "OST /report?f=trace HTT", "P/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"} {
		if _, err := c.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if g := recv(t, got); g != "POST /report?f=trace ok" {
		t.Errorf("split request: handler saw %q", g)
	}

	// Raw lines still arrive on the raw connection after the HTTP ones.
	if _, err := raw.Write([]byte("after 2 source=a\n")); err != nil {
		t.Fatal(err)
	}
	if l := recv(t, lines); l != "after 2 source=a" {
		t.Errorf("raw line %q", l)
	}
	stop() // with an idle keep-alive connection and c still open
	client.CloseIdleConnections()
}

// TestUnifiedPortSlowClients: a client dribbling a request line is bounded
// by the line timeout (it is an unfinished line until it is a request), a
// client stalling in its headers by the HTTP server's ReadHeaderTimeout.
func TestUnifiedPortSlowClients(t *testing.T) {
	addr, _, _, reg, _ := unified(t, TCPConfig{LineTimeout: 200 * time.Millisecond,
		HTTP: &http.Server{ReadHeaderTimeout: 200 * time.Millisecond}})
	for _, c := range []struct{ name, send string }{
		{"request line", "POST /report?f=wavefront HT"},
		{"headers", "POST /report?f=wavefront HTTP/1.1\r\nHost: x\r\n"},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(c.send)); err != nil {
			t.Fatal(err)
		}
		// les closes the connection (an HTTP 408 may come first); the
		// 10s bound only catches a les that never does.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: connection still open after 10s", c.name)
		}
		_ = conn.Close()
	}
	if n := reg.Counter("les_ingest_rejected_total", "format", "wavefront", "reason", ReasonLineTimeout).Get(); n != 1 {
		t.Errorf("line_timeout rejections %d, want 1 (the dribbled request line)", n)
	}
}

// TestReadBodyGzipByBytes: the gzip magic bytes decide, not the header:
// wavefront-sdk-go's direct sender posts plain JSON events with
// "Content-Encoding: gzip"; a gzip body without the header is still
// gunzipped, and a body that starts like gzip but is not stays bad_gzip.
func TestReadBodyGzipByBytes(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("x 1\n"))
	_ = zw.Close()
	for _, c := range []struct {
		name, body, header, want, reason string
	}{
		{"plain with gzip header", `{"name":"deploy"}`, "gzip", `{"name":"deploy"}`, ""},
		{"gzip without header", gz.String(), "", "x 1\n", ""},
		{"gzip with header", gz.String(), "gzip", "x 1\n", ""},
		{"broken gzip", "\x1f\x8bnot gzip", "gzip", "", ReasonBadGzip},
	} {
		r, _ := http.NewRequest(http.MethodPost, "/api/v2/event", strings.NewReader(c.body))
		if c.header != "" {
			r.Header.Set("Content-Encoding", c.header)
		}
		got, reason, err := ReadBody(r, 1<<20)
		if string(got) != c.want || reason != c.reason || (err != nil) != (c.reason != "") {
			t.Errorf("%s: %q %q %v, want %q %q", c.name, got, reason, err, c.want, c.reason)
		}
	}
}

// BenchmarkTCPConnection: the cost of one short raw connection (dial, one
// line, close) on a plain and on a unified port; the difference is the
// sniffing, paid once per connection (the lines after it take the same
// path).
func BenchmarkTCPConnection(b *testing.B) {
	for _, mode := range []string{"plain", "unified"} {
		b.Run(mode, func(b *testing.B) {
			reg := selfmetric.New()
			st := mem.New(mem.NewStore(), mem.Config{Partitions: 3, MaxRecordBytes: 8 << 20})
			b.Cleanup(func() { st.Close() })
			bt, err := NewBatcher(BatchConfig{}, st, reg, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			lines := make(lineSink, 1)
			cfg := TCPConfig{Address: "127.0.0.1:0"}
			if mode == "unified" {
				cfg.HTTP = &http.Server{Handler: http.NotFoundHandler()}
			}
			tcp, err := ListenTCP(cfg, NewIntake("wavefront", "tcp", bt, reg), func() Decoder { return lines }, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tcp.Run(ctx) }()
			line := []byte("cpu.load 1.5 source=a env=prod\n")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", tcp.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(line); err != nil {
					b.Fatal(err)
				}
				<-lines
				_ = c.Close()
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}
