package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/app"
	"github.com/les-streams/les/internal/lesproc"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/les-streams/les/internal/wire"
)

// lesBin builds cmd/les once, with its VCS stamp, into a directory laid
// out as `go run` lays it out (…/go-build…/b001/exe/les), so the binary
// also behaves as under go run.
func lesBin(t *testing.T) string {
	return lesproc.Binary(t, filepath.Join("go-build-test", "b001", "exe", "les"), "-buildvcs=true")
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

// TestHelpAndBadFlags: -h prints the usage on stdout and exits 0; a bad
// flag exits 2 with the usage on stderr.
func TestHelpAndBadFlags(t *testing.T) {
	for _, cmd := range []string{"tail", "up", "send", "bench"} {
		code, out, _ := runCmd(cmd, "-h")
		if code != 0 || !strings.Contains(out, "Usage") && !strings.Contains(out, "-") {
			t.Errorf("les %s -h: exit %d, stdout %q", cmd, code, out)
		}
		code, _, errOut := runCmd(cmd, "--no-such-flag")
		if code != 2 || !strings.Contains(errOut, "no-such-flag") {
			t.Errorf("les %s --no-such-flag: exit %d, stderr %q", cmd, code, errOut)
		}
	}
}

// TestTailRefusesUnknownOrigin: --origin bogus is refused at once with
// the list of origins.
func TestTailRefusesUnknownOrigin(t *testing.T) {
	code, _, errOut := runCmd("tail", "--origin", "bogus")
	if code != 2 || !strings.Contains(errOut, `origin "bogus" is not one of in, agg, rollup, derived, dlq`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestVersion: les version and les --version print the module version and
// the commit the binary was built from.
func TestVersion(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs on a git clone, but git rev-parse failed: %v", err)
		}
		t.Skipf("not in a git checkout: %v", err)
	}
	bin := lesBin(t)
	v1, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^les v\d+\.\d+\.\d+\S* \(commit ` + string(head[:12]) + `, `)
	if !want.Match(v1) || string(v1) != string(v2) {
		t.Fatalf("les version = %q, les --version = %q; want the module version and commit %s", v1, v2, head[:12])
	}
}

// TestTailUntilEnd: les tail --from-start --until-end prints what the
// stream holds and exits, also when the records at the end are of a
// signal it does not show.
func TestTailUntilEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := embedsrv.Open(ctx, embedded.Config{Listen: "127.0.0.1:-1", Token: "tok"}, t.TempDir(), 2, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var recs []stream.Record
	for i := range 5 {
		b := &model.Batch{Metrics: []model.Metric{{Name: "m" + strconv.Itoa(i), Value: 1, Timestamp: 1700000000000000000, Kind: model.Gauge}}}
		e := wire.NewEncoder(wire.SignalMetrics)
		e.AppendBatch(b)
		data, err := e.Finish(nil, 7, uint64(i+1), wire.CompressionZstd)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, Partition: i % 2, ID: fmt.Sprintf("7-%d", i+1), Data: data})
	}
	lb := &model.Batch{Logs: []model.Log{{Timestamp: 1700000000000000000, Message: []byte("last")}}}
	e := wire.NewEncoder(wire.SignalLogs)
	e.AppendBatch(lb)
	data, err := e.Finish(nil, 7, 99, wire.CompressionZstd)
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalLogs, ID: "7-99", Data: data})
	if err := s.Publish(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	url := s.ClientURL()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--from-start", "--until-end"}, 6},
		{[]string{"--from-start", "--until-end", "--signal", "metrics"}, 5}, // the last record is not shown
		{[]string{"--from-start", "--until-end", "--logs"}, 1},
		{[]string{"--until-end"}, 0}, // only new records: the end is now
	} {
		done := make(chan struct{})
		var code int
		var out, errOut string
		go func() {
			defer close(done)
			code, out, errOut = runCmd(append([]string{"tail", "--url", url, "--token", "tok"}, tc.args...)...)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("les tail %v did not stop at the end", tc.args)
		}
		if n := strings.Count(out, "\n"); code != 0 || n != tc.want {
			t.Errorf("les tail %v: exit %d, %d items, want %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, n, tc.want, out, errOut)
		}
	}
}

// writeConfig writes a les.yaml in a new directory and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "les.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runUp runs les up in this process until it fails or is ready; ready
// is then closed and the returned stop function ends it.
func runUpInProcess(t *testing.T, cfgPath string) (code int, stderr string, elapsed time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	start := time.Now()
	code = runApp(ctx, app.ModeUp, []string{"--config", cfgPath}, &o, &e)
	return code, e.String(), time.Since(start)
}

// TestBusyPortsFailFast: a port in use stops les up at once with one
// sentence naming the setting, for the embedded stream and a listener.
func TestBusyPortsFailFast(t *testing.T) {
	busyTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	stream := writeConfig(t, fmt.Sprintf("data_dir: %s\nagent:\n  listeners: []\n  http: { listen: %s }\nstream: { embedded: { listen: %s } }\n",
		t.TempDir(), free(), busyTCP.Addr()))
	code, errOut, took := runUpInProcess(t, stream)
	want := fmt.Sprintf("les: stream.embedded.listen %s is in use (by another les?)\n", busyTCP.Addr())
	if code != 1 || errOut != want || took > 10*time.Second {
		t.Errorf("busy stream port: exit %d after %v, stderr %q, want %q", code, took.Round(time.Millisecond), errOut, want)
	}

	l1, l2, l3 := free(), free(), free()
	listener := writeConfig(t, fmt.Sprintf(`data_dir: %s
log: { level: error }
agent:
  listeners:
    - { format: wavefront, transport: tcp, address: %s }
    - { format: wavefront, transport: udp, address: %s }
    - { format: logs, transport: tcp, address: %s }
    - { format: statsd, transport: udp, address: %s }
  http: { listen: %s }
stream: { embedded: { listen: "127.0.0.1:-1" } }
`, t.TempDir(), l1, l1, l2, busyUDP.LocalAddr(), l3))
	code, errOut, _ = runUpInProcess(t, listener)
	want = fmt.Sprintf("les: agent.listeners[3] %s/udp is in use (by another les?)\n", busyUDP.LocalAddr())
	if code != 1 || errOut != want {
		t.Errorf("busy listener: exit %d, stderr %q, want %q", code, errOut, want)
	}
}

// startUp runs cmd (les up, or a program that starts it) with its output
// captured; it is killed when the test ends.
func startUp(t *testing.T, cmd *exec.Cmd) *lesproc.Proc { return lesproc.Start(t, cmd, nil) }

// upConfig is a les.yaml with one TCP listener and every port chosen by
// the kernel (the embedded stream without a client port).
func upConfig(dataDir string) string {
	return "data_dir: " + dataDir + `
log: { level: warn }
agent:
  listeners: [{ format: wavefront, transport: tcp, address: "127.0.0.1:0" }]
  http: { listen: "127.0.0.1:0" }
stream: { embedded: { listen: "127.0.0.1:-1" } }
`
}

var httpLine = regexp.MustCompile(`http:\s+http://(127\.0\.0\.1:\d+)`)

// TestDataDirLockAndSignals: a second les up on the same data_dir fails at
// once naming the pid that holds it; SIGINT and SIGTERM stop les, which
// releases its ports and the lock; and les started by `go run` stops when
// go run dies.
func TestDataDirLockAndSignals(t *testing.T) {
	bin := lesBin(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "les.yaml"), []byte(upConfig("./data")), 0o644); err != nil {
		t.Fatal(err)
	}
	up := func() *exec.Cmd {
		c := exec.Command(bin, "up", "--config", "les.yaml")
		c.Dir = dir
		return c
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		first := startUp(t, up())
		if !first.WaitOutput(t, "Press Ctrl-C to stop.", 60*time.Second) {
			t.Fatalf("les up did not start:\n%s", first.Out.String())
		}
		second := startUp(t, up())
		_ = second.WaitExit(t, 20*time.Second)
		want := fmt.Sprintf("data_dir %s is in use by pid %d", filepath.Join(dir, "data"), first.Cmd.Process.Pid)
		if second.Err() == nil || !strings.Contains(second.Out.String(), want) {
			t.Fatalf("second les up: %v\n%s\nwant %q", second.Err(), second.Out.String(), want)
		}
		addr := httpLine.FindStringSubmatch(first.Out.String())[1]
		if err := first.Cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		_ = first.WaitExit(t, 30*time.Second)
		if first.Err() != nil {
			t.Fatalf("les up after %v: %v\n%s", sig, first.Err(), first.Out.String())
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("after %v, les' http port %s is still held: %v", sig, addr, err)
		}
		ln.Close()
	}

	// As under go run: a parent that dies of SIGTERM takes les with it.
	// les shares the parent's stdout pipe, so the parent's Wait returns
	// only once les has exited too.
	parent := exec.Command("bash", "-c", `"$0" up --config les.yaml & echo "child $!"; wait`, bin)
	parent.Dir = dir
	p := startUp(t, parent)
	p.WaitOutput(t, "Press Ctrl-C to stop.", 60*time.Second)
	m := regexp.MustCompile(`child (\d+)`).FindStringSubmatch(p.Out.String())
	child, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if err := parent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = p.WaitExit(t, 30*time.Second)
	if !strings.Contains(p.Out.String(), "received terminated; shutting down") {
		t.Errorf("les did not shut down on its parent's death:\n%s", p.Out.String())
	}
}

// TestBenchExplainsMissingSink: les bench against a les without a bench
// sink (the default config has none) says so and what to configure.
func TestBenchExplainsMissingSink(t *testing.T) {
	metrics := "les_sink_delivered_items_total{sink=\"archive\"} 3\nles_consumer_lag_records{consumer=\"rollup\"} 0\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, metrics) }))
	defer srv.Close()
	note := benchSinkNote(context.Background(), srv.URL+"/metrics", "bench")
	if !strings.Contains(note, `has no sink named "bench"`) || !strings.Contains(note, "{ name: bench, type: discard }") {
		t.Fatalf("note = %q", note)
	}
	// The YAML it suggests is a valid les.yaml.
	i := strings.Index(note, "sinks:")
	j := strings.Index(note, "\n\nor ")
	p := writeConfig(t, note[i:j]+"\n")
	if _, err := app.Load(p); err != nil {
		t.Fatalf("suggested config: %v", err)
	}
	if n := benchSinkNote(context.Background(), srv.URL+"/metrics", "archive"); n != "" {
		t.Fatalf("sink archive exists, note %q", n)
	}
	if n := benchSinkNote(context.Background(), "http://127.0.0.1:1/metrics", "bench"); n != "" {
		t.Fatalf("les unreachable, note %q", n)
	}
}
