package config

import (
	"strings"
	"testing"
	"time"
)

type wordsHTTP struct {
	Listen      string        `yaml:"listen"`
	Token       string        `yaml:"token"`
	ReadTimeout time.Duration `yaml:"read_timeout"`
	MaxBody     int64         `yaml:"max_body"`
}

type wordsInline struct {
	Extra bool `yaml:"extra"`
}

type wordsFile struct {
	Agent struct {
		HTTP  wordsHTTP `yaml:"http"`
		Batch struct {
			FlushInterval time.Duration `yaml:"flush_interval"`
		} `yaml:"batch"`
		Listeners []struct {
			Format  string `yaml:"format"`
			Address string `yaml:"address"`
			Readers int    `yaml:"readers"`
		} `yaml:"listeners"`
	} `yaml:"agent"`
	Tags   map[string]string `yaml:"tags"`
	Inline wordsInline       `yaml:",inline"`
}

// TestErrorsInUserWords: decoding errors name the key path of the file and
// what the value should be, never a Go type.
func TestErrorsInUserWords(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"agent:\n  http:\n    listn_extra: x\n", `les.yaml:3: unknown key "listn_extra" in agent.http (did you mean "listen"?)`},
		{"agent:\n  http: { lisen: x }\n", `les.yaml:2: unknown key "lisen" in agent.http (did you mean "listen"?)`},
		{"agnt: {}\n", `les.yaml:1: unknown key "agnt" at the top level (did you mean "agent"?)`},
		{"agent:\n  batch:\n    flush_interval: fast\n", `les.yaml:3: agent.batch.flush_interval: "fast" is not a duration (e.g. 200ms, 1m)`},
		{"agent:\n  batch:\n    flush_interval: 200\n", `les.yaml:3: agent.batch.flush_interval: "200" is not a duration (e.g. 200ms, 1m)`},
		{"agent:\n  http: { max_body: 16MiB }\n", `les.yaml:2: agent.http.max_body: "16MiB" is not a whole number`},
		{"agent:\n  listeners:\n    - { format: statsd, readers: two }\n", `les.yaml:3: agent.listeners[0].readers: "two" is not a whole number`},
		{"agent:\n  listeners: { format: statsd }\n", `les.yaml:2: agent.listeners: a mapping (key: value) where a list belongs (- item, or [a, b])`},
		{"agent:\n  http: 127.0.0.1:2880\n", `les.yaml:2: agent.http: "127.0.0.1:2880" where settings (key: value) belong`},
		{"extra: maybe\n", `les.yaml:1: extra: "maybe" is not true or false`},
	} {
		_, err := Decode([]byte(tc.src), "les.yaml", &wordsFile{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.src, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "!!") || strings.Contains(err.Error(), "type ")) {
			t.Errorf("%q: Go words in %v", tc.src, err)
		}
	}
	// Every problem at once, each on its line.
	_, err := Decode([]byte("agnt: {}\nagent:\n  batch: { flush_interval: soon }\n"), "f", &wordsFile{})
	if err == nil || !strings.Contains(err.Error(), `f:1: unknown key "agnt"`) || !strings.Contains(err.Error(), `f:3: agent.batch.flush_interval: "soon"`) {
		t.Errorf("two problems: %v", err)
	}
	// What is right still decodes.
	var f wordsFile
	if _, err := Decode([]byte("extra: yes\ntags: { a: b }\nagent:\n  http: { listen: ':1', read_timeout: 1m, max_body: 1e6 }\n  listeners: [{ format: statsd, readers: 2 }]\n"), "f", &f); err != nil {
		t.Fatal(err)
	}
	if !f.Inline.Extra || f.Agent.HTTP.ReadTimeout != time.Minute || f.Agent.HTTP.MaxBody != 1e6 || f.Agent.Listeners[0].Readers != 2 {
		t.Fatalf("decoded %+v", f)
	}
}
