package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestExampleConfigBuildsAHandler(t *testing.T) {
	c, err := setup(env(map[string]string{"LES_CONFIG": "../../internal/lambda/consumer/example.yaml"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrorsAreClear(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "les.yaml")
	if err := os.WriteFile(bad, []byte("sinks:\n  - name: a\n    type: file\n    file: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noStream := filepath.Join(dir, "nostream.yaml")
	if err := os.WriteFile(noStream, []byte("sinks:\n  - { name: a, type: discard }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{bad, bad + ":4: sinks[0].file: file.path: required"},
		{filepath.Join(dir, "missing.yaml"), "no such file"},
		{noStream, "set stream.kind"},
	} {
		_, err := setup(env(map[string]string{"LES_CONFIG": tc.path}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.path, err, tc.want)
		}
	}
}
