package file

import (
	"bytes"
	"os"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestExampleConfig checks that example.yaml is a valid sinks: block for
// this sink: strict keys, settings under the type's key, Validate passes.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Sinks []map[string]yaml.Node `yaml:"sinks"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sinks) != 1 {
		t.Fatalf("want one sink, got %d", len(doc.Sinks))
	}
	var typ string
	if n, ok := doc.Sinks[0]["type"]; !ok || n.Decode(&typ) != nil || typ != "file" {
		t.Fatalf("type is %q, want file", typ)
	}
	node, ok := doc.Sinks[0][typ]
	if !ok {
		t.Fatalf("no %q settings block", typ)
	}
	block, err := yaml.Marshal(&node)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(block))
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decode %s block: %v", typ, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
