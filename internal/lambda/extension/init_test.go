package extension_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/les-streams/les/internal/lambda/extension"
)

// TestInvokeWithEmptySpool: an INVOKE re-publishes the spool only when
// something is spooled (TestDeadStreamSpoolsAndReplays covers the other
// case): no goroutine reads the spool directory while the function runs.
func TestInvokeWithEmptySpool(t *testing.T) {
	h := newHarness(t, nil)
	h.api.telemetryErr = "Telemetry.NotSupported" // background flushes: next at once
	h.start()
	for _, id := range []string{"1f507cfc-a8a6-4697-b07a-ac58fc914c95", "2f507cfc-a8a6-4697-b07a-ac58fc914c95", "3f507cfc-a8a6-4697-b07a-ac58fc914c95"} {
		h.api.waitNext()
		h.api.send(invokeEvent(id, time.Now().Add(time.Minute)))
	}
	h.api.waitNext()
	replays := h.metric("les_lambda_spool_replays_total")
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if replays != 0 {
		t.Errorf("%v spool replays at 3 INVOKEs with an empty spool, want 0", replays)
	}
}

// TestGOMAXPROCS: one P unless LES_GOMAXPROCS names a positive number.
func TestGOMAXPROCS(t *testing.T) {
	for v, want := range map[string]int{"": 1, "2": 2, "0": 1, "-3": 1, "x": 1, "8": 8} {
		if got := extension.GOMAXPROCS(func(k string) string {
			if k == "LES_GOMAXPROCS" {
				return v
			}
			return ""
		}); got != want {
			t.Errorf("LES_GOMAXPROCS=%q: %d, want %d", v, got, want)
		}
	}
}

// TestGOMAXPROCSAfterInit: Options.GOMAXPROCS takes effect once the
// extension is ready, not during its init.
func TestGOMAXPROCSAfterInit(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	h := newHarness(t, nil)
	h.procs = before + 1
	atReady := 0
	h.onReady = func() { atReady = runtime.GOMAXPROCS(0) }
	h.start()
	h.api.waitNext()
	atNext := runtime.GOMAXPROCS(0)
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if atReady != before || atNext != before+1 {
		t.Errorf("GOMAXPROCS %d when ready, %d at next; want %d, then %d", atReady, atNext, before, before+1)
	}
}
