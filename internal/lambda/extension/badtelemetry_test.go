package extension_test

import (
	"strings"
	"testing"
	"time"
)

// TestBadTelemetryBatches: deliveries with unknown event types, unknown
// fields, records as string or object, malformed events, non-JSON and
// oversized bodies are all answered 200 at once (Lambda would retry them
// otherwise, to no avail); what is bad is counted with its reason and the
// good events of the same batch still arrive.
func TestBadTelemetryBatches(t *testing.T) {
	h := newHarness(t, map[string]string{"LES_FLUSH": "periodic"})
	h.start()
	h.api.waitNext()
	h.telemetry(`[{"time":"` + ts + `","type":"platform.future","record":{"x":1}},
	 {"time":"` + ts + `","type":"function","record":"plain text line","newField":{"a":[1,2]}},
	 {"time":"` + ts + `","type":"extension","record":{"timestamp":"` + ts + `","level":"ERROR","message":"object record","extra":true}},
	 {"time":"` + ts + `","type":"function","record":42},
	 {"type":"function","record":"no time"},
	 "not an object",
	 {"time":"` + ts + `","type":"platform.report","record":"report as a string"}]`) // format/lambda ignores a platform record that is not an object, uncounted
	before := h.rejected("telemetry")
	h.telemetry(`this is not json`)
	if got := h.rejected("telemetry") - before; got != 1 {
		t.Errorf("non-JSON body: %v rejects, want 1", got)
	}
	before = h.rejected("telemetry")
	h.telemetry(`[` + strings.Repeat(`{"time":"`+ts+`","type":"function","record":"x"},`, 80000) + `{}]`) // > 4 MiB
	if got := h.rejected("telemetry") - before; got != 1 {
		t.Errorf("oversized body: %v rejects, want 1", got)
	}
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	got := decodeStore(t, h.store)
	var msgs []string
	for _, l := range got.logs {
		msgs = append(msgs, string(l.Message))
	}
	if strings.Join(msgs, "|") != "plain text line|object record" {
		t.Errorf("logs %q", msgs)
	}
	for _, want := range []string{`reason="unknown_event_type"} 1`, `reason="invalid_event"} 2`, `reason="invalid_time"} 1`, `reason="invalid_json"} 1`, `reason="body_too_large"} 1`} {
		var b strings.Builder
		h.reg.WritePrometheus(&b)
		if !strings.Contains(b.String(), `les_ingest_rejected_total{format="telemetry",`+want) {
			t.Errorf("self-metrics lack %s:\n%s", want, grepLines(b.String(), "rejected"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
