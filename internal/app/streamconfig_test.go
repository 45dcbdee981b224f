package app

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStreamConfigErrors: a wrong stream block is refused at load with the
// file, line and key of the problem.
func TestStreamConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"stream: { kind: rabbitmq }", "les.yaml:1: stream.kind: kind \"rabbitmq\" is not one of embedded, nats, kafka, kinesis"},
		{"stream: { kind: kafka }", "stream.kafka: "},
		{"stream: { kind: kinesis }", "stream.kinesis: "},
		{"stream: { kind: nats }", "stream.nats: url or servers is required"},
		{"stream: { partitions: 0, kind: nats, nats: { url: nats://x:4222 }, embedded: { sync: never } }", ""},
		{"stream: { partitions: -2 }", "partitions -2 is not in 1…4096"},
		{"stream: { embedded: { sync: never } }", "stream.embedded: sync: \"never\" is not one of os, always"},
		{"stream: { url: nats://x:4222 }", `unknown key "url" in stream`},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "les.yaml")
		if err := os.WriteFile(path, []byte(c.yaml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v (only the chosen kind's block is validated)", c.yaml, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.yaml, err, c.want)
		}
	}
}

// TestStreamKindDefaults: partitions default to 1 on the embedded stream
// and 8 on the others.
func TestStreamKindDefaults(t *testing.T) {
	for kind, want := range map[string]int{"embedded": 1, "nats": 8} {
		cfg := &Config{}
		cfg.Stream.Kind = kind
		cfg.Stream.NATS.URL = "nats://127.0.0.1:1"
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.Stream.Partitions != want {
			t.Errorf("%s: %d partitions, want %d", kind, cfg.Stream.Partitions, want)
		}
	}
}

// TestHalvesRefuseEmbedded: les agent and les consume say why they do not
// run the embedded stream instead of starting one nobody else can read.
func TestHalvesRefuseEmbedded(t *testing.T) {
	for _, mode := range []Mode{ModeAgent, ModeConsume} {
		cfg := &Config{DataDir: t.TempDir()}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		o := testOptions()
		o.Mode = mode
		err := New(cfg, slog.New(slog.DiscardHandler), o).Run(context.Background(), nil)
		if err == nil || !strings.Contains(err.Error(), "stream.kind") {
			t.Errorf("les %s with the embedded stream: %v", mode, err)
		}
	}
}

// TestBinaryWithoutKind: a binary whose table lacks the configured kind
// (les-agent has no embedded stream) says so.
func TestBinaryWithoutKind(t *testing.T) {
	cfg := &Config{DataDir: t.TempDir()}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	err := New(cfg, slog.New(slog.DiscardHandler), Options{Backends: ClientBackends()}).Run(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "not offered by this binary") {
		t.Fatalf("embedded kind in a binary without it: %v", err)
	}
}
