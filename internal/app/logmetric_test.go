package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogmetricExampleLoads(t *testing.T) {
	c, err := Load("../logmetric/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.Logmetric.compiled); n != 4 {
		t.Fatalf("%d filters compiled, want 4", n)
	}
	kinds := map[string]string{}
	for _, f := range c.Logmetric.compiled {
		kinds[f.Name] = f.Kind.String()
	}
	want := map[string]string{"apache-404": "counter", "apache-bytes": "sample", "slow-requests": "sample", "errors": "counter"}
	for k, v := range want {
		if kinds[k] != v {
			t.Errorf("filter %s kind %s, want %s", k, kinds[k], v)
		}
	}
	if _, err := Load(""); err != nil {
		t.Fatal(err)
	}
}

func TestLogmetricConfigErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "les.yaml")
	src := `logmetric:
  filters:
    - name: a
      pattern: '[ip, status_code = ]'
      metric_name: x
      metric_namespace: n
    - name: a
      pattern: 'ERROR'
      metric_name: y
      metric_namespace: n
      kind: histogram
    - pattern: '{ $.a = 1 }'
      metric_name: z
      metric_namespace: n
      dimensions: { a: $.a, b: $.b, c: $.c, d: $.d }
    - pattern: 'ERROR'
      metric_name: w
      metric_namespace: n
      metric_value: '$.x y'
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("invalid filters accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		path + ":4: logmetric.filters[0].pattern: filter pattern: at position 19: ",
		path + ":7: logmetric.filters[1].name: duplicate filter name \"a\"",
		"logmetric.filters[1].kind: kind \"histogram\"",
		path + ":12: logmetric.filters[2]: ",
		"logmetric.filters[3].metric_value: ",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}
