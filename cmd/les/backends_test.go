package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/les-streams/les/internal/app"
)

// TestBackendTable: every stream backend folder is in the binary's table
// and has a README and an example.yaml that loads as a les.yaml and
// selects that backend; every table entry has a folder.
func TestBackendTable(t *testing.T) {
	root := filepath.Join("..", "..", "internal", "stream")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	table := map[string]app.Backend{}
	for _, b := range backends() {
		table[b.Dir] = b
	}
	var dirs []string
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "streamtest" || e.Name() == "mem" { // the suite and the test backend
			continue
		}
		dirs = append(dirs, e.Name())
		b, ok := table[e.Name()]
		if !ok {
			t.Errorf("internal/stream/%s is not in the backend table (cmd/les/backends.go, app.ClientBackends)", e.Name())
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
		cfg, err := app.Load(filepath.Join(dir, "example.yaml"))
		if err != nil {
			t.Errorf("%s/example.yaml does not load: %v", dir, err)
			continue
		}
		if cfg.Stream.Kind != b.Kind {
			t.Errorf("%s/example.yaml selects stream.kind %q, want %q", dir, cfg.Stream.Kind, b.Kind)
		}
	}
	for d := range table {
		if !slices.Contains(dirs, d) {
			t.Errorf("backend table names folder internal/stream/%s, which does not exist", d)
		}
	}
}
