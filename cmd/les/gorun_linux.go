package main

import (
	"os"
	"strings"
	"syscall"
)

// stopWithGoRun makes les started by `go run` get SIGTERM when the `go
// run` process dies. `go run` ignores SIGINT (a terminal's Ctrl-C reaches
// the child itself) and dies of SIGTERM without passing it on, which left
// les running with every port held. The kernel's parent-death signal
// (PR_SET_PDEATHSIG) closes that gap; les then shuts down as on any
// SIGTERM. A binary run directly is left alone.
func stopWithGoRun() {
	exe, err := os.Executable()
	if err != nil || !startedByGoRun(exe) {
		return
	}
	ppid := os.Getppid()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
		return
	}
	if os.Getppid() != ppid { // the parent died before the call
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
}

// startedByGoRun reports whether exe is where `go run` puts the binary it
// builds: since Go 1.24 the build cache, <GOCACHE>/<xx>/<xx…64 hex>-d/<name>;
// before, <GOTMPDIR or TMPDIR>/go-build<N>/b001/exe/<name>.
func startedByGoRun(exe string) bool {
	parts := strings.Split(exe, string(os.PathSeparator))
	n := len(parts)
	if n >= 3 && cachedExeDir(parts[n-2]) && parts[n-3] == parts[n-2][:2] {
		return true
	}
	return n >= 4 && parts[n-2] == "exe" && strings.HasPrefix(parts[n-4], "go-build")
}

// cachedExeDir reports whether dir is the name of an executable's
// directory in the build cache: 64 hex digits and "-d".
func cachedExeDir(dir string) bool {
	h, ok := strings.CutSuffix(dir, "-d")
	if !ok || len(h) != 64 {
		return false
	}
	return strings.Trim(h, "0123456789abcdef") == ""
}
