// Package exec is a sink that runs the user's program and writes every
// item to its standard input as one NDJSON line (the lines `les tail`
// prints, internal/format/jsonl — the same lines the http sink posts).
// When the program exits it is started again, no sooner than a backoff
// that doubles while it keeps exiting; its exit is logged with the tail of
// its standard error.
//
// A batch counts as delivered once its bytes are written into the pipe:
// the program has not necessarily read, let alone processed, them.
package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	sinkhttp "github.com/les-streams/les/internal/sink/http"
)

// Config is what users write under `exec:`.
type Config struct {
	// Command is the program and its arguments (required); the program is
	// looked up in PATH unless it holds a '/'. No shell is involved.
	Command []string `yaml:"command"`
	// Env is added to the environment les runs with.
	Env map[string]string `yaml:"env"`
	// Dir is the working directory (default: les' own).
	Dir string `yaml:"dir"`
	// RestartBackoff is the wait before starting the program again after
	// it exited (default 1s); it doubles with each exit up to
	// MaxRestartBackoff (default 1m), and is back to RestartBackoff once
	// the program ran longer than MaxRestartBackoff.
	RestartBackoff    time.Duration `yaml:"restart_backoff"`
	MaxRestartBackoff time.Duration `yaml:"max_restart_backoff"`
	// StopTimeout is how long Close waits for the program to exit after
	// its standard input was closed before killing it (default 10s).
	StopTimeout time.Duration `yaml:"stop_timeout"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return errors.New("command: required (a list: [program, args...])")
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env: %q is not a variable name", k)
		}
	}
	if c.RestartBackoff < 0 || c.MaxRestartBackoff < 0 || c.StopTimeout < 0 {
		return errors.New("restart_backoff, max_restart_backoff, stop_timeout: must not be negative")
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = time.Second
	}
	if c.MaxRestartBackoff == 0 {
		c.MaxRestartBackoff = max(time.Minute, c.RestartBackoff)
	}
	if c.MaxRestartBackoff < c.RestartBackoff {
		return fmt.Errorf("max_restart_backoff: %v is less than restart_backoff %v", c.MaxRestartBackoff, c.RestartBackoff)
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	return nil
}

// Counts are totals since New.
type Counts struct {
	Starts  uint64 // times the program was started
	Exits   uint64 // times it exited while the sink was open
	Batches uint64 // Sends whose lines were all written
	Items   uint64 // lines written
}

// tailBytes is how much of the program's standard error is kept.
const tailBytes = 2048

// Sink runs one program. It is safe for concurrent use; Sends are
// serialised.
type Sink struct {
	cfg  Config
	name string
	log  *slog.Logger
	env  []string

	mu       sync.Mutex
	proc     *proc     // nil before the first start and after an exit was seen
	notUntil time.Time // no start before this (backoff after an exit)
	backoff  time.Duration
	lastExit string // the last exit, for errors during the backoff
	pending  []byte // the rest of a line a failed write cut, written first
	buf      []byte
	ends     []int
	closed   bool
	counts   Counts
}

var _ sink.Sink = (*Sink)(nil)

// proc is one run of the program.
type proc struct {
	cmd     *osexec.Cmd
	stdin   *os.File
	started time.Time
	tail    *tail
	done    chan struct{} // closed when the program exited and waitErr is set
	waitErr error
}

// New validates cfg and returns a sink. It starts nothing: the program is
// started by the first Send.
func New(cfg Config, d sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := d.Log
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	env := os.Environ()
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	return &Sink{cfg: cfg, name: d.Name, log: l, env: env, backoff: cfg.RestartBackoff}, nil
}

// Send writes one line per item of b (with the record id, item and items
// fields when m.RecordID is set) to the program's standard input, starting
// the program if it is not running. It returns nil once every byte is in
// the pipe. Errors are retryable:
//   - the program exited, or is waiting out its restart backoff: a
//     *sink.RetryAfterError until the next start is allowed, so
//     sink.Deliver retries then;
//   - ctx ended while the pipe was full (the program does not read fast
//     enough): the lines written so far stay written, a line cut in the
//     middle is completed before the next Send's lines, and a retry
//     writes the whole batch again (at-least-once: lines may repeat).
//
// It does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	if err := ctx.Err(); err != nil {
		return s.errorf("%w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.errorf("sink is closed")
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.ensure(); err != nil {
		return err
	}
	s.buf, s.ends = sinkhttp.EncodeNDJSON(s.buf[:0], s.ends[:0], b, m.RecordID)
	if len(s.pending) > 0 {
		n, err := s.write(ctx, s.pending)
		s.pending = s.pending[n:]
		if err != nil {
			return err
		}
	}
	n, err := s.write(ctx, s.buf)
	if err != nil {
		if s.proc != nil && n > 0 && s.buf[n-1] != '\n' {
			// Keep the rest of the cut line, so the program never sees
			// half a line followed by another.
			rest := s.buf[n:]
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				rest = rest[:i+1]
			}
			s.pending = append(s.pending[:0], rest...)
		}
		return err
	}
	s.counts.Batches++
	s.counts.Items += uint64(len(s.ends))
	if cap(s.buf) > 16<<20 {
		s.buf = nil // do not pin one huge batch's buffer
	}
	return nil
}

// write writes p to the running program, bounded by ctx. On failure it
// returns how much was written.
func (s *Sink) write(ctx context.Context, p []byte) (int, error) {
	pr := s.proc
	if d, ok := ctx.Deadline(); ok {
		_ = pr.stdin.SetWriteDeadline(d)
	} else {
		_ = pr.stdin.SetWriteDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = pr.stdin.SetWriteDeadline(time.Unix(1, 0)) })
	n, err := pr.stdin.Write(p)
	stop()
	if err == nil {
		return n, nil
	}
	select {
	case <-pr.done:
		s.exited()
		return n, s.restartError()
	default:
	}
	if cerr := ctx.Err(); cerr != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		return n, s.errorf("program does not read its input: %w", cerr)
	}
	// EPIPE: the program closed its input. It cannot take more, so it is
	// stopped and, after the backoff, started again.
	_ = pr.cmd.Process.Kill()
	<-pr.done
	s.exited()
	return n, s.restartError()
}

// ensure starts the program unless it runs, or returns the error that
// says when it may start again.
func (s *Sink) ensure() error {
	if s.proc != nil {
		select {
		case <-s.proc.done:
			s.exited()
		default:
			return nil
		}
	}
	if wait := time.Until(s.notUntil); wait > 0 {
		return s.restartError()
	}
	return s.start()
}

func (s *Sink) start() error {
	cmd := osexec.Command(s.cfg.Command[0], s.cfg.Command[1:]...)
	cmd.Env, cmd.Dir = s.env, s.cfg.Dir
	r, w, err := os.Pipe()
	if err != nil {
		return s.errorf("%w", err)
	}
	t := &tail{}
	cmd.Stdin, cmd.Stderr = r, t
	cmd.WaitDelay = time.Second // a grandchild holding stderr open does not block Wait
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		// Not found, not executable: a restart may not fix it, but the
		// file may yet appear; retry with the restart backoff.
		s.lastExit = err.Error()
		s.notUntil = time.Now().Add(s.nextBackoff(0))
		return s.errorf("start: %w", err)
	}
	r.Close() // the child has its copy
	pr := &proc{cmd: cmd, stdin: w, started: time.Now(), tail: t, done: make(chan struct{})}
	go func() {
		pr.waitErr = cmd.Wait()
		close(pr.done)
	}()
	s.proc = pr
	s.pending = s.pending[:0] // a new program starts with a clean input
	s.counts.Starts++
	return nil
}

// exited records the exit of s.proc (which is done) and logs it.
func (s *Sink) exited() {
	pr := s.proc
	s.proc = nil
	_ = pr.stdin.Close()
	ran := time.Since(pr.started)
	status := "exit status 0"
	if pr.waitErr != nil {
		status = pr.waitErr.Error()
	}
	s.lastExit = status
	s.counts.Exits++
	wait := s.nextBackoff(ran)
	s.notUntil = time.Now().Add(wait)
	s.log.Warn("exec: program exited; restarting after backoff", "sink", s.name, "command", s.cfg.Command[0],
		"status", status, "ran", ran.Round(time.Millisecond), "restart_in", wait, "stderr_tail", pr.tail.String())
}

// nextBackoff returns the wait before the next start and doubles it for
// the one after; a run longer than max_restart_backoff resets it.
func (s *Sink) nextBackoff(ran time.Duration) time.Duration {
	if ran > s.cfg.MaxRestartBackoff {
		s.backoff = s.cfg.RestartBackoff
	}
	w := s.backoff
	s.backoff = min(s.backoff*2, s.cfg.MaxRestartBackoff)
	return w
}

func (s *Sink) restartError() error {
	return &sink.RetryAfterError{
		Err:   s.errorf("program exited (%s); restarting", s.lastExit),
		After: max(time.Until(s.notUntil), 0),
	}
}

func (s *Sink) errorf(format string, args ...any) error {
	return fmt.Errorf("exec sink %q: "+format, append([]any{s.name}, args...)...)
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Close closes the program's standard input and waits up to stop_timeout
// for it to exit, then kills it; it returns once the program is gone.
// Later Sends fail. A second Close returns nil.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	pr := s.proc
	s.proc = nil
	if pr == nil {
		return nil
	}
	_ = pr.stdin.Close()
	timer := time.NewTimer(s.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-pr.done:
	case <-timer.C:
		_ = pr.cmd.Process.Kill()
		<-pr.done
		s.log.Warn("exec: program did not exit after its input closed; killed", "sink", s.name,
			"command", s.cfg.Command[0], "stop_timeout", s.cfg.StopTimeout, "stderr_tail", pr.tail.String())
		return nil
	}
	if pr.waitErr != nil {
		s.log.Warn("exec: program exited", "sink", s.name, "command", s.cfg.Command[0],
			"status", pr.waitErr.Error(), "stderr_tail", pr.tail.String())
	}
	return nil
}

// tail keeps the last tailBytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBytes:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(strings.ToValidUTF8(string(t.buf), "\uFFFD"))
}
