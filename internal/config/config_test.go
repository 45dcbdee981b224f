package config

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name  string        `yaml:"name"`
	Every time.Duration `yaml:"every"`
	Items []struct {
		Path string `yaml:"path"`
	} `yaml:"items"`
}

func TestStrictAndLocated(t *testing.T) {
	_, err := Decode([]byte("name: a\nitems:\n  - path: x\n    pth: y\n"), "les.yaml", &sample{})
	if err == nil || !strings.Contains(err.Error(), "les.yaml:4:") || !strings.Contains(err.Error(), "pth") {
		t.Fatalf("unknown key error lacks location: %v", err)
	}
	_, err = Decode([]byte("name: [1\n"), "f.yaml", &sample{})
	if err == nil || !strings.Contains(err.Error(), "f.yaml:") {
		t.Fatalf("syntax error lacks file: %v", err)
	}
	_, err = Decode([]byte("every: soon\n"), "f.yaml", &sample{})
	if err == nil || !strings.Contains(err.Error(), "f.yaml:1:") {
		t.Fatalf("bad duration error: %v", err)
	}
}

func TestEnvAndLocate(t *testing.T) {
	t.Setenv("LES_TEST_NAME", "from-env")
	var s sample
	doc, err := Decode([]byte("name: ${LES_TEST_NAME}\nevery: ${LES_UNSET_X:-2s}\nitems:\n  - path: '$.latency'\n  - path: b\n"), "f", &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "from-env" || s.Every != 2*time.Second || s.Items[0].Path != "$.latency" {
		t.Fatalf("decoded %+v", s)
	}
	if got := Locate(doc, "items", 1, "path"); got != 5 {
		t.Fatalf("Locate = %d, want 5", got)
	}
	if _, err := Decode([]byte("# ${LES_UNSET_Z} in a comment is left alone\nname: x # ${LES_UNSET_Z}\n"), "f", &s); err != nil {
		t.Fatalf("comment expanded: %v", err)
	}
	if _, err := Decode([]byte("name: ${LES_UNSET_Y}\n"), "f", &s); err == nil || !strings.Contains(err.Error(), "LES_UNSET_Y") {
		t.Fatalf("unset variable: %v", err)
	}
}
