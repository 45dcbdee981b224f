package selfmetric

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRejectLogBounds: each format keeps its last RejectsPerFormat inputs,
// newest first, each cut to RejectMaxBytes; totals count every rejection.
func TestRejectLogBounds(t *testing.T) {
	l := NewRejectLog()
	t0 := time.Unix(1_780_000_000, 0)
	n := 0
	l.now = func() time.Time { n++; return t0.Add(time.Duration(n) * time.Second) }
	for i := range 25 {
		l.Note("wavefront", "tcp", "bad_value", []byte(fmt.Sprintf("m %d", i)))
	}
	l.Note("statsd", "udp", "datagram_too_large", nil)
	long := strings.Repeat("a", 1000)
	l.Note("statsd", "udp", "bad_type", []byte(long))
	got, totals := l.Recent()
	if len(got) != RejectsPerFormat+2 || totals["wavefront"] != 25 || totals["statsd"] != 2 {
		t.Fatalf("%d kept, totals %v", len(got), totals)
	}
	if g := got[0]; g.Format != "statsd" || g.Reason != "bad_type" || len(g.Input) != RejectMaxBytes || !g.Truncated || g.Size != 1000 {
		t.Errorf("newest: %+v", g)
	}
	if g := got[1]; g.Input != "" || g.Size != 0 || g.Truncated {
		t.Errorf("a rejection without input: %+v", g)
	}
	var wf []string
	for _, g := range got[2:] {
		wf = append(wf, g.Input)
	}
	if want := "m 24,m 23,m 22,m 21,m 20,m 19,m 18,m 17,m 16,m 15"; strings.Join(wf, ",") != want {
		t.Errorf("wavefront kept %v, want %s", wf, want)
	}
}

// TestRejectLogEscapesAndRedacts: control characters, invalid UTF-8 and
// invisible reordering characters come out as escapes; the token is
// replaced even where the cut would have split it.
func TestRejectLogEscapesAndRedacts(t *testing.T) {
	l := NewRejectLog()
	l.Redact("s3cret-token")
	l.Redact("")
	for _, c := range []struct{ in, want string }{
		{"ok <b>x</b> \"q\" é\t", "ok <b>x</b> \"q\" é\t"},
		{"a\x00b\x1b[31mc\r\n", `a\x00b\x1b[31mc\x0d\x0a`},
		{"bad \xff\xfe utf8 \xe2\x82", `bad \xff\xfe utf8 \xe2\x82`},
		{`back\slash`, `back\\slash`},
		{"rtl \u202egnp.exe", `rtl \u202egnp.exe`},
		{"c1 \u0085", `c1 \xc2\x85`},
		{"m 1 source=x token=s3cret-token", "m 1 source=x token=[redacted]"},
		{strings.Repeat("x", 250) + "s3cret-token", strings.Repeat("x", 250) + "[redac"},
	} {
		l.Note("f", "tcp", "r", []byte(c.in))
		got, _ := l.Recent()
		if got[0].Input != c.want {
			t.Errorf("Note(%q) keeps %q, want %q", c.in, got[0].Input, c.want)
		}
	}
}

// TestRejectLogConcurrent: intakes note from many goroutines (run with
// -race).
func TestRejectLogConcurrent(t *testing.T) {
	l := NewRejectLog()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				l.Note(fmt.Sprint("f", g), "udp", "r", []byte("line"))
				if i%50 == 0 {
					l.Recent()
				}
			}
		})
	}
	wg.Wait()
	got, totals := l.Recent()
	if len(got) != 4*RejectsPerFormat || totals["f0"] != 200 {
		t.Errorf("%d kept, totals %v", len(got), totals)
	}
	var nilLog *RejectLog
	nilLog.Note("f", "tcp", "r", nil) // an intake without a registry log
}
