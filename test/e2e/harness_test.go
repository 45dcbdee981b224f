// Package e2e builds the les binary and drives it over real sockets: the
// embedded stream, listeners, consumers and sinks all run for real.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/lesproc"
	"github.com/les-streams/les/internal/stream/embedded"
)

// lesBinary builds cmd/les once per test run, as les-e2e.
func lesBinary(t *testing.T) string { return lesproc.Binary(t, "les-e2e") }

// freePort is lesproc.FreePort: a loopback port for TCP and UDP, below the
// ephemeral range, never twice in a run.
func freePort(t *testing.T) int { return lesproc.FreePort(t) }

// Les is one les process under test.
type Les struct {
	t      *testing.T
	Dir    string // working directory holding les.yaml and data
	Ports  map[string]int
	proc   *lesproc.Proc   // nil when not running
	out    *lesproc.Buffer // the last run's output, kept after it ends
	Config string

	// Backend is the stream les runs on (streamBackend.Configure sets
	// it); nil is the embedded stream of NewLes' config.
	Backend *streamBackend
	// Args is the subcommand and its flags (default: up).
	Args []string
}

// Addr returns "127.0.0.1:<port>" of a named port.
func (l *Les) Addr(name string) string { return fmt.Sprintf("127.0.0.1:%d", l.Ports[name]) }

// NewLes prepares a les in a fresh directory. extra is YAML appended to the
// generated config (sinks, rollup, …). Ports: wavefront, http, nats,
// hist_minute, dist, statsd, trace.
func NewLes(t *testing.T, extra string) *Les {
	t.Helper()
	l := &Les{t: t, Dir: t.TempDir(), Ports: map[string]int{}}
	for _, n := range []string{"wavefront", "http", "nats", "hist_minute", "dist", "statsd", "trace"} {
		l.Ports[n] = freePort(t)
	}
	l.Config = fmt.Sprintf(`data_dir: ./data
log: { level: debug }
agent:
  listeners:
    - { format: wavefront, transport: tcp, address: 127.0.0.1:%d }
    - { format: wavefront, transport: udp, address: 127.0.0.1:%d }
    - { format: histogram_minute, transport: tcp, address: 127.0.0.1:%d }
    - { format: histogram_minute, transport: udp, address: 127.0.0.1:%d }
    - { format: distribution, transport: tcp, address: 127.0.0.1:%d }
    - { format: statsd, transport: udp, address: 127.0.0.1:%d }
    - { format: trace, transport: tcp, address: 127.0.0.1:%d }
  http: { listen: 127.0.0.1:%d }
  batch: { flush_interval: 50ms }
stream: { embedded: { listen: 127.0.0.1:%d } }
`, l.Ports["wavefront"], l.Ports["wavefront"], l.Ports["hist_minute"], l.Ports["hist_minute"],
		l.Ports["dist"], l.Ports["statsd"], l.Ports["trace"], l.Ports["http"], l.Ports["nats"]) + extra
	return l
}

// StartLes runs `les <args> --config les.yaml` in dir with config and
// waits until it is ready; it is killed when the test ends. For les agent
// and les consume, whose ports the config names.
func StartLes(t *testing.T, dir, config string, args ...string) *Les {
	t.Helper()
	l := &Les{t: t, Dir: dir, Config: config, Args: args}
	l.Start()
	return l
}

// Start runs `les up` (or l.Args) and waits until it is ready.
func (l *Les) Start() {
	t := l.t
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.Dir, "les.yaml"), []byte(l.Config), 0o644); err != nil {
		t.Fatal(err)
	}
	args := l.Args
	if len(args) == 0 {
		args = []string{"up"}
	}
	cmd := exec.Command(lesBinary(t), append(slices.Clone(args), "--config", "les.yaml")...)
	cmd.Dir = l.Dir
	l.proc = lesproc.Start(t, cmd, nil) // killed when the test ends
	l.out = l.proc.Out
	if !l.proc.WaitOutput(t, "Press Ctrl-C to stop.", 30*time.Second) {
		t.Fatalf("les exited during start: %v\n%s", l.proc.Err(), l.Output())
	}
}

// Output is everything les printed so far.
func (l *Les) Output() string { return l.out.String() }

// Stop sends SIGINT and waits for a clean exit.
func (l *Les) Stop() {
	l.t.Helper()
	if l.proc == nil {
		return
	}
	p := l.proc
	_ = p.Cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		l.t.Fatalf("les did not stop on SIGINT:\n%s", p.Out.String())
	}
	if p.Err() != nil {
		l.t.Fatalf("les exited with %v:\n%s", p.Err(), p.Out.String())
	}
	l.proc = nil
}

// Kill sends SIGKILL (a crash) and waits.
func (l *Les) Kill() {
	if l.proc == nil {
		return
	}
	l.proc.Kill()
	l.proc = nil
}

// Run runs another les subcommand (tail, send, query …) and returns stdout.
// StreamToken is the token les up wrote to <data_dir>/stream.creds
// (required by its embedded stream).
func (l *Les) StreamToken() string {
	l.t.Helper()
	tok, err := embedded.ReadCreds(filepath.Join(l.Dir, "data"))
	if err != nil {
		l.t.Fatal(err)
	}
	return tok
}

func (l *Les) Run(stdin string, args ...string) (string, error) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lesBinary(l.t), args...)
	cmd.Dir = l.Dir
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("les %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Tail reads n items from the start of the stream with `les tail`.
func (l *Les) Tail(n int, extra ...string) []string {
	l.t.Helper()
	args := append([]string{"tail", "--url", "nats://" + l.Addr("nats"), "--data-dir", filepath.Join(l.Dir, "data"), "--from-start", "--limit", strconv.Itoa(n)}, extra...)
	out, err := l.Run("", args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return nonEmptyLines(out)
}

func nonEmptyLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			out = append(out, sc.Text())
		}
	}
	return out
}

// Metric returns the value of one self-metric series from /metrics
// (exact series text, e.g. `les_ingest_received_total{format="wavefront",transport="udp"}`),
// or 0 when absent.
func (l *Les) Metric(series string) float64 {
	l.t.Helper()
	v, err := lesproc.Metric("http://"+l.Addr("http")+"/metrics", series)
	if err != nil {
		l.t.Fatal(err)
	}
	return v
}

// Eventually polls cond until it holds or 30 s pass.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopOrDump is Stop for tests that look for shutdown hangs: it sends
// SIGINT and waits up to d; if les is still running then, it sends SIGQUIT
// (the Go runtime prints every goroutine's stack) and fails the test with
// les' output.
func (l *Les) StopOrDump(d time.Duration) {
	l.t.Helper()
	if l.proc == nil {
		return
	}
	p := l.proc
	_ = p.Cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.Done():
	case <-time.After(d):
		_ = p.Cmd.Process.Signal(syscall.SIGQUIT)
		<-p.Done()
		l.proc = nil
		l.t.Fatalf("les did not stop within %v of SIGINT; goroutines at SIGQUIT:\n%s", d, p.Out.String())
	}
	if p.Err() != nil {
		l.t.Fatalf("les exited with %v:\n%s", p.Err(), p.Out.String())
	}
	l.proc = nil
}
