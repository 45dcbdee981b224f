package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInputsConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "les.yaml")
	src := `inputs:
  kinesis:
    - name: ok
      stream: logs
    - name: ok
      stream: logs
      start_at: AT_TIMESTAMP
      poll_interval: 100ms
    - stream: ""
      format: json
    - name: "a b"
      stream: s
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("invalid inputs accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		path + `:5: inputs.kinesis[1].name: duplicate kinesis input name "ok"`,
		path + `:7: inputs.kinesis[1].start_at: start_at "AT_TIMESTAMP" is not one of TRIM_HORIZON, LATEST`,
		path + `:8: inputs.kinesis[1].poll_interval: poll_interval 100ms is below 200ms`,
		path + `:9: inputs.kinesis[2]: name is required`,
		path + `:9: inputs.kinesis[2].stream: stream is required`,
		path + `:10: inputs.kinesis[2].format: format "json" is not one of cwlogs`,
		`inputs.kinesis[3].name: name "a b" may only contain`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}

	if err := os.WriteFile(path, []byte("inputs:\n  kinesis:\n    - { name: cw, stream: logs }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Inputs.Kinesis[0]
	if k.StartAt != "TRIM_HORIZON" || k.PollInterval != time.Second || k.Format != "cwlogs" {
		t.Errorf("defaults not filled: %+v", k)
	}
}
