package app

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCompressionAuto: agent.batch.compression defaults to auto, which is
// zstd on every stream kind (ADR 0010, amended); an explicit value is kept,
// and an unknown one is refused at load.
func TestCompressionAuto(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"", "zstd"},
		{"agent: { batch: { compression: auto } }", "zstd"},
		{"agent: { batch: { compression: s2 } }", "s2"},
		{"stream: { kind: nats, nats: { url: nats://127.0.0.1:1 } }", "zstd"},
		{"stream: { kind: nats, nats: { url: nats://127.0.0.1:1 } }\nagent: { batch: { compression: auto } }", "zstd"},
		{"stream: { kind: http, http: { url: http://127.0.0.1:1 } }", "zstd"},
		{"agent: { batch: { compression: zstd } }", "zstd"},
		{"stream: { kind: nats, nats: { url: nats://127.0.0.1:1 } }\nagent: { batch: { compression: s2 } }", "s2"},
		{"agent: { batch: { compression: none } }", "none"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "les.yaml")
		if err := os.WriteFile(path, []byte(c.yaml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if got := cfg.Agent.Batch.Compression; got != c.want {
			t.Errorf("%q: compression %q, want %q", c.yaml, got, c.want)
		}
	}
	path := filepath.Join(t.TempDir(), "les.yaml")
	if err := os.WriteFile(path, []byte("agent: { batch: { compression: lz4 } }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Error("compression lz4 was accepted")
	}
}
