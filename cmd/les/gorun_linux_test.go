package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartedByGoRun(t *testing.T) {
	hash := strings.Repeat("0123456789abcdef", 4)
	for exe, want := range map[string]bool{
		"/root/.cache/go-build/01/" + hash + "-d/les":      true, // Go ≥ 1.24: the build cache
		"/tmp/go-build1234567/b001/exe/les":                true, // Go < 1.24
		"/root/.cache/go-build/ab/" + hash + "-d/les":      false,
		"/root/.cache/go-build/01/" + hash[:63] + "-d/les": false,
		"/usr/local/bin/les":                               false,
		"/home/u/les/les":                                  false,
	} {
		if got := startedByGoRun(exe); got != want {
			t.Errorf("startedByGoRun(%q) = %v, want %v", exe, got, want)
		}
	}
}

// TestGoRunSIGTERM runs les with the real `go run` (whose binary layout
// changed in Go 1.24) and sends SIGTERM to the go run process, as a script
// or service manager does: go run dies without passing it on, and les must
// stop too instead of holding its ports. SIGINT to go run alone is ignored
// by go run and does not reach les (README: a terminal's Ctrl-C reaches
// both).
func TestGoRunSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds les with go run")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "les.yaml"), []byte(upConfig(filepath.Join(dir, "data"))), 0o644); err != nil {
		t.Fatal(err)
	}
	// les shares go run's stdout pipe, so p.Done closes once les exited too.
	p := startUp(t, exec.Command("go", "run", ".", "up", "--config", filepath.Join(dir, "les.yaml")))
	if !p.WaitOutput(t, "Press Ctrl-C to stop.", 60*time.Second) {
		t.Fatalf("go run . up did not start:\n%s", p.Out.String())
	}
	les := childOf(t, p.Cmd.Process.Pid)
	t.Cleanup(func() { _ = syscall.Kill(les, syscall.SIGKILL) })
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = p.WaitExit(t, 30*time.Second)
	if !strings.Contains(p.Out.String(), "received terminated; shutting down") {
		t.Errorf("les did not shut down when go run died of SIGTERM:\n%s", p.Out.String())
	}
}

// childOf returns the pid of the one child process of pid (each thread
// lists the children it forked).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	if err != nil {
		t.Fatal(err)
	}
	var f []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f = append(f, strings.Fields(string(b))...)
	}
	if len(f) != 1 {
		t.Fatalf("go run has children %q, want one", f)
	}
	c, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}
