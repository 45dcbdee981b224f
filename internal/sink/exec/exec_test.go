package exec

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

// The test binary doubles as the user's program: with LES_EXEC_HELPER set
// it runs helper() instead of the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("LES_EXEC_HELPER"); mode != "" {
		os.Exit(helper(mode))
	}
	goleak.VerifyTestMain(m)
}

// helper modes:
//
//	append:      append stdin to $LES_OUT until EOF, exit 0
//	crash-after: the first time (no $LES_OUT.crashed yet): append $LES_LINES
//	             lines to $LES_OUT, print to stderr, exit 3; then as append
//	never-read:  never read stdin; wait for SIGKILL
//	ignore-eof:  read stdin to EOF, then never exit
func helper(mode string) int {
	switch mode {
	case "append", "crash-after":
		f, err := os.OpenFile(os.Getenv("LES_OUT"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if mode == "crash-after" {
			if _, err := os.Stat(os.Getenv("LES_OUT") + ".crashed"); err == nil {
				mode = "append"
			}
		}
		if mode == "append" {
			if _, err := io.Copy(f, os.Stdin); err != nil {
				return 1
			}
			return 0
		}
		n, _ := strconv.Atoi(os.Getenv("LES_LINES"))
		r := bufio.NewReader(os.Stdin)
		for range n {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return 1
			}
			f.Write(line)
		}
		os.WriteFile(os.Getenv("LES_OUT")+".crashed", nil, 0o644)
		fmt.Fprintln(os.Stderr, "panic: the helper crashes on purpose")
		return 3
	case "never-read":
		select {}
	case "ignore-eof":
		io.Copy(io.Discard, os.Stdin)
		select {}
	}
	return 2
}

func helperCmd(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "-test.run=^$"}
}

// logBuffer collects what the sink logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newSink(t *testing.T, cfg Config) (*Sink, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	s, err := New(cfg, sink.Deps{Name: "prog", Log: slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, lb
}

func TestConformance(t *testing.T) {
	var out string
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		out = filepath.Join(t.TempDir(), "out.ndjson")
		s, _ := newSink(t, Config{Command: helperCmd(t), Env: map[string]string{"LES_EXEC_HELPER": "append", "LES_OUT": out}})
		return s
	}, func(t *testing.T) []sinktest.Item {
		data, err := os.ReadFile(out)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return sinktest.FromNDJSON(t, data)
	}, sinktest.Options{})
}

func TestShellCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.ndjson")
	s, _ := newSink(t, Config{Command: []string{"sh", "-c", `cat >> "$OUT"`}, Env: map[string]string{"OUT": out}})
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{RecordID: "p-1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	if items := sinktest.FromNDJSON(t, data); len(items) != b.Len() {
		t.Fatalf("%d items, want %d", len(items), b.Len())
	}
	if !bytes.HasPrefix(data, []byte(`{"type":"metric","record":"p-1","item":0,"items":9,`)) {
		t.Errorf("first line %q", data[:min(len(data), 80)])
	}
}

func TestCrashAndRestart(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.ndjson")
	const per = sinktest.NumMetrics + sinktest.NumDistributions + sinktest.NumLogs + sinktest.NumSpans
	// The first run of the program reads 4 lines, then crashes.
	s, logs := newSink(t, Config{Command: helperCmd(t), RestartBackoff: 10 * time.Millisecond, MaxRestartBackoff: 40 * time.Millisecond,
		Env: map[string]string{"LES_EXEC_HELPER": "crash-after", "LES_OUT": out, "LES_LINES": "4"}})
	rc := sink.RetryConfig{MaxAttempts: 20, InitialBackoff: time.Millisecond, MaxBackoff: time.Second, Timeout: 5 * time.Second}
	var retryErrs []error
	send := func(i int) {
		t.Helper()
		b, _ := sinktest.Batch()
		if err := sink.Deliver(context.Background(), s, b, sink.Meta{RecordID: fmt.Sprintf("r-%d", i)}, rc, func(err error) {
			retryErrs = append(retryErrs, err)
		}); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	send(0)
	s.mu.Lock()
	first := s.proc
	s.mu.Unlock()
	<-first.done // the crash
	for i := 1; i <= 3; i++ {
		send(i)
	}
	c := s.Counts()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c.Starts != 2 || c.Exits != 1 {
		t.Errorf("counts %+v: want one exit and one restart", c)
	}
	if len(retryErrs) == 0 {
		t.Fatal("no retry: the exit was not seen")
	}
	for _, err := range retryErrs {
		if _, ok := errors.AsType[*sink.RetryAfterError](err); !ok || !strings.Contains(err.Error(), `exec sink "prog": program exited (exit status 3)`) {
			t.Errorf("retried error %v, want a RetryAfterError naming the sink and the exit", err)
		}
	}
	if !strings.Contains(logs.String(), "crashes on purpose") || !strings.Contains(logs.String(), "exit status 3") {
		t.Errorf("exit not logged with the stderr tail:\n%s", logs)
	}
	data, _ := os.ReadFile(out)
	lines := map[string]int{}
	sinktest.FromNDJSON(t, data) // every line is a whole JSON object
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		i := strings.Index(l, `"record":"`)
		lines[l[i+10:i+13]]++
	}
	// r-0 was acknowledged once it was in the pipe; the program read 4 of
	// its lines and crashed, so the other 5 are lost (see README: what
	// counts as delivered). Everything after the restart arrived.
	want := map[string]int{"r-0": 4, "r-1": per, "r-2": per, "r-3": per}
	for k, n := range want {
		if lines[k] != n {
			t.Errorf("lines per record %v, want %v", lines, want)
			break
		}
	}
}

func TestProgramThatNeverReads(t *testing.T) {
	s, logs := newSink(t, Config{Command: helperCmd(t), StopTimeout: 50 * time.Millisecond, Env: map[string]string{"LES_EXEC_HELPER": "never-read"}})
	b := &model.Batch{}
	msg := bytes.Repeat([]byte("x"), 1000)
	for range 200 { // 200 KB: more than a pipe holds
		b.Logs = append(b.Logs, model.Log{Timestamp: 1e18, Source: "fn", Message: msg})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := s.Send(ctx, b, sink.Meta{})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), "does not read") {
		t.Fatalf("Send to a program that never reads: %v", err)
	}
	// Cancellation (no deadline) ends a blocked Send too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Send(ctx2, b, sink.Meta{}) }()
	cancel2()
	if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled Send: %v", err)
	}
	if err := s.Close(); err != nil { // kills it after stop_timeout
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "killed") {
		t.Errorf("kill not logged:\n%s", logs)
	}
}

func TestCloseKillsProgramThatIgnoresEOF(t *testing.T) {
	s, _ := newSink(t, Config{Command: helperCmd(t), StopTimeout: 50 * time.Millisecond, Env: map[string]string{"LES_EXEC_HELPER": "ignore-eof"}})
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), b, sink.Meta{}); err == nil {
		t.Error("Send after Close succeeded")
	}
}

func TestMissingProgram(t *testing.T) {
	s, _ := newSink(t, Config{Command: []string{"/nonexistent/les-test-program"}})
	b, _ := sinktest.Batch()
	err := s.Send(context.Background(), b, sink.Meta{})
	if err == nil || errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), `exec sink "prog": start`) {
		t.Fatalf("missing program: %v", err)
	}
	// During the backoff the error says when to retry.
	err = s.Send(context.Background(), b, sink.Meta{})
	if _, ok := errors.AsType[*sink.RetryAfterError](err); !ok {
		t.Errorf("second Send: %v, want a RetryAfterError", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "command: required"},
		{Config{Command: []string{""}}, "command: required"},
		{Config{Command: []string{"x"}, Env: map[string]string{"A=B": "c"}}, "env:"},
		{Config{Command: []string{"x"}, StopTimeout: -1}, "restart_backoff, max_restart_backoff, stop_timeout"},
		{Config{Command: []string{"x"}, RestartBackoff: time.Minute, MaxRestartBackoff: time.Second}, "max_restart_backoff:"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
