package app

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHTTPKindIsAgentOnly: les up and les consume (and les tail, through
// OpenClient) refuse stream.kind http with the file and line of the key;
// les agent accepts it.
func TestHTTPKindIsAgentOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "les.yaml")
	yaml := "data_dir: " + dir + "\nagent: { http: { listen: 127.0.0.1:0 }, listeners: [] }\nstream:\n  kind: http\n  http: { url: https://les.example.internal/ }\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := path + ":4: stream.kind: kind http only forwards records to a central les"
	for _, mode := range []Mode{ModeUp, ModeConsume} {
		o := testOptions()
		o.Mode = mode
		err := New(cfg, slog.New(slog.DiscardHandler), o).Run(context.Background(), nil)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("les %s with kind http: %v\nwant %s…", mode, err, want)
		}
	}
	if _, err := OpenClient(context.Background(), cfg, ClientBackends(), slog.New(slog.DiscardHandler)); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("les tail with kind http: %v", err)
	}

	// les agent runs with it (no network I/O until something is published).
	ctx, cancel := context.WithCancel(context.Background())
	var info Info
	err = New(cfg, slog.New(slog.DiscardHandler), Options{Mode: ModeAgent, Backends: ClientBackends()}).Run(ctx, func(i Info) {
		info = i
		cancel()
	})
	if err != nil || info.Stream != "http" || info.StreamURL != "https://les.example.internal/" {
		t.Errorf("les agent with kind http: %v, info %+v", err, info)
	}
}

// TestHTTPKindConfigErrors: a wrong stream.http block is refused at load,
// located.
func TestHTTPKindConfigErrors(t *testing.T) {
	for yaml, want := range map[string]string{
		"stream: { kind: http }": "les.yaml:1: stream.http: url is required",
		"stream: { kind: http, http: { url: 'http://les.example.internal/', token_env: T } }": "in the clear",
		"stream: { kind: http, http: { url: 'https://les.example.internal/', tokn: x } }":     `unknown key "tokn" in stream.http`,
	} {
		path := filepath.Join(t.TempDir(), "les.yaml")
		if err := os.WriteFile(path, []byte(yaml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", yaml, err, want)
		}
	}
}
