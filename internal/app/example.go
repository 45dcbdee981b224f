package app

import (
	_ "embed"
	"fmt"
	"reflect"
	"strings"
)

// exampleTemplate is example.yaml; its listeners are filled in from
// DefaultListeners, so the example always lists what les opens.
//
//go:embed example.yaml
var exampleTemplate string

// ExampleConfig is a commented les.yaml with every section and the
// defaults (printed by `les config example`; a test checks that loading it
// gives exactly the configuration of no file at all).
var ExampleConfig = strings.Replace(exampleTemplate, "{{listeners}}\n", exampleListeners(), 1)

// exampleListeners renders DefaultListeners as YAML list items, one flow
// mapping a line with its non-zero settings and what the format is.
func exampleListeners() string {
	var b strings.Builder
	prev := ""
	for _, l := range DefaultListeners() {
		v := reflect.ValueOf(l)
		var kv []string
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" || v.Field(i).IsZero() {
				continue
			}
			kv = append(kv, fmt.Sprintf("%s: %v", name, v.Field(i).Interface()))
		}
		line := "    - { " + strings.Join(kv, ", ") + " }"
		if about, _, _ := strings.Cut(formats[l.Format].about, " ("); about != "" && l.Format != prev {
			line = fmt.Sprintf("%-76s # %s", line, about)
		}
		prev = l.Format
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	return b.String()
}
