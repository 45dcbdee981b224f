package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/sink"
)

// TestSinkConcurrencyConfig (issue 9): an exec sink writes to one
// program's stdin, so `concurrency` above 1 is refused with a message
// saying why rather than pretending; http and influxdb take several
// Sends at once and keep what the user asked for.
func TestSinkConcurrencyConfig(t *testing.T) {
	for _, c := range []struct {
		sink string
		want int    // the runner's Concurrency
		err  string // a part of the error, "" for none
	}{
		{"{ name: p, type: exec, exec: { command: [cat] } }", 1, ""},
		{"{ name: p, type: exec, concurrency: 1, exec: { command: [cat] } }", 1, ""},
		{"{ name: p, type: exec, concurrency: 4, exec: { command: [cat] } }", 0, "concurrency 4: sink type exec writes to one program's stdin"},
		{"{ name: h, type: http, concurrency: 4, http: { url: 'http://127.0.0.1:9/x' } }", 4, ""},
		{"{ name: i, type: influxdb, concurrency: 3, influxdb: { url: 'http://127.0.0.1:9', database: d } }", 3, ""},
		{"{ name: i, type: influxdb, influxdb: { url: 'http://127.0.0.1:9', database: d } }", 4, ""}, // the type's default
		{"{ name: h, type: http, http: { url: 'http://127.0.0.1:9/x' } }", 1, ""},                    // requests in order unless asked
	} {
		p := filepath.Join(t.TempDir(), "les.yaml")
		if err := os.WriteFile(p, []byte("sinks:\n  - "+c.sink+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(p)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.sink, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.sink, err)
			continue
		}
		if got := sinkRunnerConfig(&cfg.Sinks[0], sink.Deps{}).Concurrency; got != c.want {
			t.Errorf("%s: runner concurrency %d, want %d", c.sink, got, c.want)
		}
	}
}
