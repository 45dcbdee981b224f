package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInputRejectedWithReasons sends every kind of bad input the issue
// lists and checks that each is rejected with its reason, counted, and that
// valid lines in the same payload still arrive.
func TestBadInputRejectedWithReasons(t *testing.T) {
	l := NewLes(t, `
sinks:
  - name: archive
    type: file
    file: { path: ./out.ndjson }
`)
	// A small datagram limit on a second UDP listener exercises the
	// oversized-datagram path (IPv4 UDP cannot carry more than 64 KiB).
	small := freePort(t)
	l.Config = strings.Replace(l.Config, "  http:", fmt.Sprintf("    - { format: wavefront, transport: udp, address: 127.0.0.1:%d, max_datagram: 1024 }\n  http:", small), 1)
	l.Start()
	now := time.Now().Unix()
	var tags strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&tags, " t%d=v", i)
	}
	udp := strings.Join([]string{
		"ok.one 1 source=s",
		"many.tags 1 source=s" + tags.String(),
		"bad.utf8 1 source=s k=\xff\xfe",
		"nan.value NaN source=s",
		"inf.value +Inf source=s",
		fmt.Sprintf("old.point 1 %d source=s", now-2*366*86400),
		fmt.Sprintf("future.point 1 %d source=s", now+2*86400),
		"ok.two 2 source=s",
	}, "\n") + "\n"
	conn, err := net.Dial("udp", l.Addr("wavefront"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(udp)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// Oversized datagram.
	c2, _ := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", small))
	c2.Write([]byte("big 1 source=s " + strings.Repeat("x", 2000) + "\n"))
	c2.Close()
	// A line over 32 KiB on TCP, then a valid line on the same connection.
	tcp := "long.line 1 source=s k=" + strings.Repeat("v", 40<<10) + "\nok.three 3 source=s\n"
	if _, err := l.Run(tcp, "send", "--addr", l.Addr("wavefront")); err != nil {
		t.Fatal(err)
	}
	// A body that says gzip but is plain text is read as what its bytes
	// are (wavefront-sdk-go mislabels its events; ADR 0012); a body that
	// starts as gzip but is cut is refused with the reason.
	status, body := postAPI(t, l, "/report", []byte("plain.text 1 source=s\n"), map[string]string{"Content-Encoding": "gzip"})
	if status != http.StatusAccepted {
		t.Errorf("plain body labelled gzip: %d %s", status, body)
	}
	status, body = postAPI(t, l, "/report", []byte{0x1f, 0x8b, 0x08, 0x00, 0x00}, map[string]string{"Content-Encoding": "gzip"})
	if status != http.StatusBadRequest || !strings.Contains(body, "gzip") {
		t.Errorf("truncated gzip body: %d %s", status, body)
	}

	items := byName(parseItems(t, l.Tail(4)))
	for _, n := range []string{"ok.one", "ok.two", "ok.three", "plain.text"} {
		if _, ok := items[n]; !ok {
			t.Errorf("valid line %s did not arrive; got %v", n, items)
		}
	}
	reasons := map[string]float64{
		`les_ingest_rejected_total{format="wavefront",reason="too_many_tags"}`:          1,
		`les_ingest_rejected_total{format="wavefront",reason="invalid_utf8"}`:           1,
		`les_ingest_rejected_total{format="wavefront",reason="non_finite_value"}`:       2,
		`les_ingest_rejected_total{format="wavefront",reason="timestamp_out_of_range"}`: 2,
		`les_ingest_rejected_total{format="wavefront",reason="datagram_too_large"}`:     1,
		`les_ingest_rejected_total{format="wavefront",reason="line_too_long"}`:          1,
		`les_ingest_rejected_total{format="wavefront",reason="bad_gzip"}`:               1,
	}
	Eventually(t, "rejection counters", func() bool {
		for s, want := range reasons {
			if l.Metric(s) != want {
				return false
			}
		}
		return true
	})
	// Listeners still work after all that.
	if _, err := l.Run("", "send", "--addr", l.Addr("wavefront"), "after.bad 1 source=s"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, "line after bad input", func() bool {
		b, _ := os.ReadFile(filepath.Join(l.Dir, "out.ndjson"))
		return strings.Contains(string(b), `"after.bad"`)
	})
	l.Stop()
}

func countLines(t *testing.T, path, needle string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), needle)
}

// TestRestartResumes stops les cleanly and starts it again: the file sink's
// durable cursor resumes where it stopped, so nothing is lost or repeated.
func TestRestartResumes(t *testing.T) {
	l := NewLes(t, `
sinks:
  - name: archive
    type: file
    file: { path: ./out.ndjson }
`)
	out := filepath.Join(l.Dir, "out.ndjson")
	l.Start()
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf("first.batch %d source=s", i))
	}
	if _, err := l.Run(strings.Join(lines, "\n")+"\n", "send", "--addr", l.Addr("wavefront")); err != nil {
		t.Fatal(err)
	}
	l.Stop() // drains: open batches are published and delivered
	if n := countLines(t, out, `"first.batch"`); n != 50 {
		t.Fatalf("after clean stop the file has %d of 50 lines", n)
	}
	l.Start()
	if _, err := l.Run("second.batch 1 source=s\n", "send", "--addr", l.Addr("wavefront")); err != nil {
		t.Fatal(err)
	}
	Eventually(t, "second batch", func() bool { return countLines(t, out, `"second.batch"`) == 1 })
	if n := countLines(t, out, `"first.batch"`); n != 50 {
		t.Fatalf("restart re-delivered: %d first.batch lines", n)
	}
	l.Stop()
}

// TestHTTPAcceptedSurvivesKill9: a 2xx from /report means durable, so
// everything acknowledged reaches the sink after a SIGKILL and restart,
// exactly once (the file sink de-duplicates re-deliveries by record id).
func TestHTTPAcceptedSurvivesKill9(t *testing.T) {
	l := NewLes(t, `
sinks:
  - name: archive
    type: file
    file: { path: ./out.ndjson }
`)
	out := filepath.Join(l.Dir, "out.ndjson")
	l.Start()
	const posts, per = 40, 25
	for p := range posts {
		var b strings.Builder
		for i := range per {
			fmt.Fprintf(&b, "kill.test %d source=p%d\n", i, p)
		}
		status, body := postAPI(t, l, "/report?f=wavefront", []byte(b.String()), nil)
		if status != http.StatusAccepted {
			t.Fatalf("post %d: %d %s", p, status, body)
		}
	}
	l.Kill() // right after the last 2xx
	l.Start()
	Eventually(t, "all acknowledged points delivered", func() bool {
		return countLines(t, out, `"kill.test"`) >= posts*per
	})
	time.Sleep(500 * time.Millisecond) // let any duplicate re-delivery land
	if n := countLines(t, out, `"kill.test"`); n != posts*per {
		t.Fatalf("file has %d kill.test lines, want exactly %d", n, posts*per)
	}
	l.Stop()
}

// TestBearerToken: with a token configured, /report needs it.
func TestBearerToken(t *testing.T) {
	l := NewLes(t, "")
	l.Config = strings.Replace(l.Config, "  http: { listen:", "  http: { token: s3cret, listen:", 1)
	l.Start()
	status, _ := postAPI(t, l, "/report", []byte("a 1 source=s\n"), nil)
	if status != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", status)
	}
	status, _ = postAPI(t, l, "/report", []byte("a 1 source=s\n"), map[string]string{"Authorization": "Bearer wrong"})
	if status != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", status)
	}
	status, _ = postAPI(t, l, "/report", []byte("a 1 source=s\n"), map[string]string{"Authorization": "Bearer s3cret"})
	if status != http.StatusAccepted {
		t.Errorf("right token: %d, want 202", status)
	}
	if strings.Contains(l.Output(), "s3cret") {
		t.Errorf("the token appears in les' output")
	}
	l.Stop()
}

// TestConfigErrors: strict decoding with locations, and the example loads.
func TestConfigErrors(t *testing.T) {
	l := NewLes(t, "sinks:\n  - name: x\n    type: file\n    file: { pth: ./o }\n")
	if err := os.WriteFile(filepath.Join(l.Dir, "les.yaml"), []byte(l.Config), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := l.Run("", "up", "--config", "les.yaml")
	if err == nil || !strings.Contains(err.Error(), "les.yaml:") || !strings.Contains(err.Error(), "pth") {
		t.Fatalf("unknown key: %v", err)
	}
	ex, err := l.Run("", "config", "example")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "example.yaml"), []byte(ex), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Run("", "config", "check", "example.yaml"); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("example does not load: %v %s", err, out)
	}
}
