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
// builds: <GOTMPDIR or TMPDIR>/go-build<N>/b001/exe/<name>.
func startedByGoRun(exe string) bool {
	parts := strings.Split(exe, string(os.PathSeparator))
	n := len(parts)
	return n >= 4 && parts[n-2] == "exe" && strings.HasPrefix(parts[n-4], "go-build")
}
