package app

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSinkFoldersAreComplete: every folder under internal/sink is in the
// sink table, has a README, and an example.yaml that loads as a les config.
func TestSinkFoldersAreComplete(t *testing.T) {
	dirs, err := os.ReadDir("../sink")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == "sinktest" {
			continue
		}
		name := d.Name()
		if _, ok := sinkTypes[name]; !ok {
			t.Errorf("internal/sink/%s is not in the sinkTypes table", name)
		}
		dir := filepath.Join("../sink", name)
		if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
			t.Errorf("internal/sink/%s has no README.md", name)
		}
		ex := filepath.Join(dir, "example.yaml")
		if _, err := os.Stat(ex); err != nil {
			t.Errorf("internal/sink/%s has no example.yaml", name)
			continue
		}
		cfg, err := Load(ex)
		if err != nil {
			t.Errorf("internal/sink/%s/example.yaml does not load: %v", name, err)
			continue
		}
		if len(cfg.Sinks) == 0 || cfg.Sinks[0].Type != name {
			t.Errorf("internal/sink/%s/example.yaml does not configure a %s sink", name, name)
		}
	}
}

// TestFormatFoldersHaveReadmes: every format package documents itself.
func TestFormatFoldersHaveReadmes(t *testing.T) {
	dirs, _ := os.ReadDir("../format")
	for _, d := range dirs {
		if d.IsDir() {
			if _, err := os.Stat(filepath.Join("../format", d.Name(), "README.md")); err != nil {
				t.Errorf("internal/format/%s has no README.md", d.Name())
			}
		}
	}
}

// TestEveryPackageHasADocComment walks the module.
func TestEveryPackageHasADocComment(t *testing.T) {
	root := "../.."
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		pkgs, err := parser.ParseDir(token.NewFileSet(), path, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for name, p := range pkgs {
			documented := false
			for _, f := range p.Files {
				if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
					documented = true
				}
			}
			if !documented {
				t.Errorf("package %s in %s has no doc comment", name, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "les.yaml")
	if err := os.WriteFile(p, []byte(ExampleConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatalf("les config example does not load: %v", err)
	}
}

func TestListenerLimitsValidated(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "les.yaml")
	cfg := "agent:\n  listeners:\n    - { format: wavefront, transport: udp, address: 127.0.0.1:2878, readers: -1 }\n"
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "les.yaml:3") || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("negative readers: %v", err)
	}
}
