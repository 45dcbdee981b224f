// Package lesproc runs les as a child process for tests: it builds the
// les binary once per test process, hands out loopback ports, captures a
// child's stdout and stderr in one buffer, waits for a line of its output,
// kills it when the test ends, and reads one series of its /metrics.
//
// It is shared by test/e2e, test/faults, cmd/les and internal/app tests;
// no non-test code imports it.
package lesproc

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The binary of Binary: built once per test process (the test binary of
// one package), as go test runs one process per package.
var (
	buildOnce sync.Once
	buildName string
	binPath   string
	buildErr  error
)

// Binary builds cmd/les once per test process into a fresh temporary
// directory, at name below it (a name, or a relative path such as
// "go-build-test/b001/exe/les" for the layout go run uses), passing flags
// to go build, and returns its path. Every later call returns that binary;
// a call with another name fails the test. Give it a name other than "les":
// a `killall les` or `pkill -f "les up"` run by hand on a shared machine
// must not stop the processes under test.
func Binary(t testing.TB, name string, flags ...string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildName = name
		dir, err := os.MkdirTemp("", "les-test-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(binPath), 0o755); err != nil {
			buildErr = err
			return
		}
		args := append(append([]string{"build"}, flags...), "-o", binPath, "github.com/les-streams/les/cmd/les")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if name != buildName {
		t.Fatalf("lesproc.Binary(%q): this test process already built %q", name, buildName)
	}
	return binPath
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a loopback port free for both TCP and UDP right now,
// never the same one twice in a test process. Ports come from
// 20000–31999, below Linux's ephemeral range (32768+), so sockets that
// other tests or programs bind to port 0 cannot take it between here and
// les binding it.
func FreePort(t testing.TB) int {
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

// Buffer is a bytes.Buffer safe for concurrent Write and String, which
// signals each write on Written.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	ch chan struct{}
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{}, 1)
	}
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Written receives after a Write (at most one pending signal: read String
// after each receive).
func (s *Buffer) Written() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{}, 1)
	}
	return s.ch
}

// Proc is one child process whose stdout and stderr both go to Out.
type Proc struct {
	Cmd  *exec.Cmd
	Out  *Buffer
	done chan struct{}
	err  error
}

// Start starts cmd with its stdout and stderr into one Buffer. onExit, when
// not nil, is called with Wait's error once the process has exited, before
// Done closes. The process is killed (SIGKILL) and waited for when the test
// ends.
func Start(t testing.TB, cmd *exec.Cmd, onExit func(error)) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, Out: &Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		if onExit != nil {
			onExit(p.err)
		}
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	return p
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is Wait's error; valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// WaitExit waits up to d for the process to exit and returns Wait's
// error; after d it fails the test with the output.
func (p *Proc) WaitExit(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("the process did not exit within %v:\n%s", d, p.Out.String())
		return nil
	}
}

// WaitOutput waits until the output contains s (true) or the process
// exits without it (false); after d it fails the test with the output.
func (p *Proc) WaitOutput(t testing.TB, s string, d time.Duration) bool {
	t.Helper()
	deadline := time.After(d)
	written := p.Out.Written()
	for !strings.Contains(p.Out.String(), s) {
		select {
		case <-written:
		case <-p.done:
			return strings.Contains(p.Out.String(), s)
		case <-deadline:
			t.Fatalf("no %q within %v in:\n%s", s, d, p.Out.String())
		}
	}
	return true
}

// Metric reads url (a /metrics page) and returns the value of the series
// given by its exact text up to the value, e.g.
// `les_ingest_received_total{format="wavefront",transport="udp"}`, or 0
// when it is absent.
func Metric(url, series string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, nil
		}
	}
	return 0, sc.Err()
}
