//go:build linux

package lambda_test

import (
	"strings"
	"testing"
)

// TestEmulatorConfigError: a malformed LES_STREAM under the classic
// emulator. By default the extension logs the error, idles, and the
// function runs (ADR 0005: telemetry must not take the function down);
// with LES_ON_CONFIG_ERROR=fail it reports init/error
// Extension.ConfigInvalid and the emulator fails the init, as Lambda
// does: the invocation fails and the function never runs.
func TestEmulatorConfigError(t *testing.T) {
	t.Run("default: the function runs", func(t *testing.T) {
		e := startEmulator(t, true, map[string]string{"LES_STREAM": "kinesis://"})
		for i := range 3 {
			if ans, _ := e.call(`{"n":1,"udp":true}`); ans != `"ok"` {
				t.Fatalf("invocation %d answered %s", i, ans)
			}
		}
		e.stop()
		out := e.out.String()
		if l := lines(out, "les is disabled"); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "kinesis://STREAM needs a stream name") {
			t.Errorf("no clear error in the extension's log:\n%s", out)
		}
		if strings.Count(out, "handled n=1") != 3 {
			t.Errorf("the function did not run 3 times:\n%s", out)
		}
	})
	t.Run("fail: the init fails", func(t *testing.T) {
		e := startEmulator(t, true, map[string]string{"LES_STREAM": "kinesis://", "LES_ON_CONFIG_ERROR": "fail"})
		ans, _ := e.call(`{"n":1}`)
		e.stop()
		out := e.out.String()
		// The emulator stores the init/error as the sandbox's first fatal
		// error and fails the init; the invocation fails (Sandbox.Failure).
		if ans == `"ok"` || !strings.Contains(out, "First fatal error stored in appctx: Extension.InitError") || !strings.Contains(out, "Init failed") {
			t.Errorf("invocation answered %s; emulator log:\n%s", ans, out)
		}
		if strings.Contains(out, "handled n=") {
			t.Errorf("the function ran:\n%s", out)
		}
	})
}
