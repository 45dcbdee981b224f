package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileSinkApp is the config of an in-process les whose every record goes
// to a file sink: data in a fresh directory, the embedded stream without
// a client port, HTTP intake on a kernel-chosen port, no listeners,
// rollup and logmetric off. It returns the config (to add listeners to,
// then start with runApp) and the sink file's path.
func fileSinkApp(t *testing.T) (*Config, string) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.ndjson")
	cfg := &Config{DataDir: dir}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.Listeners = []ListenerConfig{}
	cfg.Rollup.Disabled = true
	cfg.Logmetric.Disabled = true
	cfg.Sinks = []SinkConfig{{Name: "out", Type: "file", File: &fileSinkConfig{Path: out}}}
	return cfg, out
}

// readNDJSON decodes every line of the file sink at path into a T (a bad
// line fails the test) and returns them with the file's bytes.
func readNDJSON[T any](t *testing.T, path string) ([]T, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var items []T
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if line == "" {
			continue
		}
		var it T
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		items = append(items, it)
	}
	return items, raw
}
