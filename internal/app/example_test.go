package app

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestExampleIsTheDefaults: `les config example` is the configuration of
// no file at all, value by value: every default listener, the rollup and
// logmetric sections, the stream. Copying it changes nothing.
func TestExampleIsTheDefaults(t *testing.T) {
	t.Setenv("LES_TOKEN", "")
	t.Setenv("LES_STREAM_TOKEN", "")
	p := filepath.Join(t.TempDir(), "les.yaml")
	if err := os.WriteFile(p, []byte(ExampleConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ex, err := Load(p)
	if err != nil {
		t.Fatalf("les config example does not load: %v", err)
	}
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(def, ex, cmpopts.IgnoreUnexported(Config{}, LogmetricConfig{}, ListenerConfig{}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("loading les config example differs from the defaults (-defaults +example):\n%s", diff)
	}
	if n := len(ex.Agent.Listeners); n != len(DefaultListeners()) || n < 17 {
		t.Errorf("example has %d listeners, the defaults %d", n, len(DefaultListeners()))
	}
	for _, section := range []string{"\nagent:", "\nstream:", "\nrollup:", "\nlogmetric:", "\nlog:", "\n#inputs:", "\n#sinks:"} {
		if !strings.Contains(ExampleConfig, section) {
			t.Errorf("example has no %s section", strings.TrimSpace(section))
		}
	}
}

// TestExampleNamesEveryKey: every key of les.yaml appears in the example,
// set or in a comment — except the settings of stream kinds other than
// embedded, sinks and inputs, which each have their own example.yaml.
func TestExampleNamesEveryKey(t *testing.T) {
	skip := map[string]bool{"stream.nats": true, "stream.kafka": true, "stream.kinesis": true, "stream.http": true,
		"sinks": true, "inputs": true}
	var missing []string
	var walk func(rt reflect.Type, path string)
	walk = func(rt reflect.Type, path string) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || rt == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range rt.NumField() {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			if !regexp.MustCompile(`(^|[\s{,#])` + regexp.QuoteMeta(name) + `:`).MatchString(ExampleConfig) {
				missing = append(missing, p)
			}
			if !skip[p] {
				walk(f.Type, p)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	if len(missing) > 0 {
		t.Errorf("les config example does not name %s (internal/app/example.yaml)", strings.Join(missing, ", "))
	}
}
