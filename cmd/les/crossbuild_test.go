package main

import (
	"os"
	"os/exec"
	"testing"
)

// TestBuildsForOtherSystems: les builds for macOS and the agent for
// Windows (the Linux-only socket options live in internal/ingest's
// udp_linux.go). Skipped with -short: a first cross build compiles every
// dependency again.
func TestBuildsForOtherSystems(t *testing.T) {
	if testing.Short() {
		t.Skip("cross builds take a while the first time")
	}
	for _, tc := range []struct{ goos, pkg string }{
		{"darwin", "."},
		{"windows", "../les-agent"},
	} {
		cmd := exec.Command("go", "build", "-o", os.DevNull, tc.pkg)
		cmd.Env = append(os.Environ(), "GOOS="+tc.goos, "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=%s go build %s: %v\n%s", tc.goos, tc.pkg, err, out)
		}
	}
}
