package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
)

// TestKinesisInput runs les with inputs.kinesis pointing at kinesalite: the
// CloudWatch Logs subscription payloads put on a 2-shard stream become log
// records, and their REPORT lines aws.lambda.* metrics; a control message
// produces nothing and a corrupt record is counted. Skipped without node or
// test/kinesalite/node_modules.
func TestKinesisInput(t *testing.T) {
	endpoint := kinesistest.Start(t)
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "x")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	client := kinesistest.Client(endpoint)
	const stream = "lambda-logs"
	kinesistest.CreateStream(t, client, stream, 2)

	ts := time.Now().UnixMilli()
	var recs [][]byte
	for i := range 3 {
		req := fmt.Sprintf("8f5e1a2b-0000-4000-8000-00000000000%d", i)
		recs = append(recs, kinesistest.DataMessage("/aws/lambda/fn-kin", "2024/05/01/[$LATEST]abc",
			kinesistest.Event{ID: fmt.Sprint(i, "-0"), Timestamp: ts, Message: "START RequestId: " + req + " Version: $LATEST\n"},
			kinesistest.Event{ID: fmt.Sprint(i, "-1"), Timestamp: ts + 1, Message: fmt.Sprintf(
				"REPORT RequestId: %s\tDuration: %d.50 ms\tBilled Duration: %d ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t\n", req, 10*(i+1), 10*(i+1)+1)},
		))
	}
	corrupt := recs[0][:len(recs[0])/2]
	kinesistest.Put(t, client, stream, append(recs, kinesistest.ControlMessage(), corrupt)...)

	l := NewLes(t, fmt.Sprintf(`inputs:
  kinesis:
    - { name: cw, stream: %s, region: %s, endpoint: %q, poll_interval: 200ms }
`, stream, kinesistest.Region, endpoint))
	l.Start()
	if !strings.Contains(l.Output(), "kinesis") {
		t.Errorf("the banner does not list the kinesis input:\n%s", l.Output())
	}

	derived := lmWait(t, l, "aws.lambda.duration from the Kinesis records", func(it []lmItem) bool {
		return len(named(it, "aws.lambda.duration", "fn-kin")) == 3
	}, "--origin", "derived,agg")
	if inv := named(derived, "aws.lambda.invocations", "fn-kin"); sumValues(inv) != 3 {
		t.Errorf("invocations: %+v", inv)
	}
	logs := lmTail(t, l, 2*time.Second, "--logs")
	if len(logs) != 6 || logs[0].Source != "fn-kin" || logs[0].Attrs["log_group"] != "/aws/lambda/fn-kin" {
		t.Errorf("logs (%d): %+v", len(logs), logs)
	}
	Eventually(t, "the corrupt record counted", func() bool {
		return l.Metric(`les_kinesis_rejected_total{stream="lambda-logs",reason="bad_gzip"}`) == 1
	})
	if v := l.Metric(`les_kinesis_records_total{stream="lambda-logs"}`); v != 5 {
		t.Errorf("les_kinesis_records_total = %v, want 5", v)
	}
	l.Stop()
	ckpt, err := os.ReadFile(filepath.Join(l.Dir, "data", "inputs", "kinesis-cw.json"))
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if !strings.Contains(string(ckpt), `"seq"`) {
		t.Errorf("checkpoint: %s", ckpt)
	}
}
