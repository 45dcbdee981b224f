// Package e2e builds the les binary and drives it over real sockets: the
// embedded stream, listeners, consumers and sinks all run for real.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream/embedded"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// lesBinary builds cmd/les once per test run.
func lesBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "les-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		// Not named "les": a `killall les` or `pkill -f "les up"` run by
		// hand on a shared machine must not stop the processes under test.
		binPath = filepath.Join(dir, "les-e2e")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/les").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a loopback port free for both TCP and UDP right now,
// never the same one twice in a test run. Ports come from 20000–31999,
// below Linux's ephemeral range (32768+), so sockets that other tests or
// programs bind to port 0 cannot take it between here and les binding it.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if portsUsed[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsUsed[port] = true
		return port
	}
	t.Fatal("no free port")
	return 0
}

// Les is one les process under test.
type Les struct {
	t       *testing.T
	Dir     string // working directory holding les.yaml and data
	Ports   map[string]int
	cmd     *exec.Cmd
	out     *syncBuffer
	Config  string
	done    chan struct{}
	exitErr error

	// Backend is the stream les runs on (streamBackend.Configure sets
	// it); nil is the embedded stream of NewLes' config.
	Backend *streamBackend
	// Args is the subcommand and its flags (default: up).
	Args []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	l.out = &syncBuffer{}
	args := l.Args
	if len(args) == 0 {
		args = []string{"up"}
	}
	l.cmd = exec.Command(lesBinary(t), append(slices.Clone(args), "--config", "les.yaml")...)
	l.cmd.Dir = l.Dir
	l.cmd.Stdout = l.out
	l.cmd.Stderr = l.out
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.done = make(chan struct{})
	go func() {
		l.exitErr = l.cmd.Wait()
		close(l.done)
	}()
	t.Cleanup(func() { l.Kill() })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.out.String(), "Press Ctrl-C to stop.") {
		select {
		case <-l.done:
			t.Fatalf("les exited during start: %v\n%s", l.exitErr, l.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("les did not start:\n%s", l.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Output is everything les printed so far.
func (l *Les) Output() string { return l.out.String() }

// Stop sends SIGINT and waits for a clean exit.
func (l *Les) Stop() {
	l.t.Helper()
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		l.t.Fatalf("les did not stop on SIGINT:\n%s", l.out.String())
	}
	if l.exitErr != nil {
		l.t.Fatalf("les exited with %v:\n%s", l.exitErr, l.out.String())
	}
	l.cmd = nil
}

// Kill sends SIGKILL (a crash) and waits.
func (l *Les) Kill() {
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	_ = l.cmd.Process.Kill()
	<-l.done
	l.cmd = nil
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
	resp, err := http.Get("http://" + l.Addr("http") + "/metrics")
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[len(series):]), 64)
			return v
		}
	}
	return 0
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
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-l.done:
	case <-time.After(d):
		_ = l.cmd.Process.Signal(syscall.SIGQUIT)
		<-l.done
		l.cmd = nil
		l.t.Fatalf("les did not stop within %v of SIGINT; goroutines at SIGQUIT:\n%s", d, l.out.String())
	}
	if l.exitErr != nil {
		l.t.Fatalf("les exited with %v:\n%s", l.exitErr, l.out.String())
	}
	l.cmd = nil
}
