package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lmItem is one item printed by les tail (metric, distribution or log).
type lmItem struct {
	Type      string            `json:"type"`
	Name      string            `json:"name"`
	Value     float64           `json:"value"`
	Kind      string            `json:"kind"`
	Timestamp string            `json:"timestamp"`
	Source    string            `json:"source"`
	Tags      map[string]string `json:"tags"`
	Count     float64           `json:"count"`
	Sum       float64           `json:"sum"`
	Window    string            `json:"window"`
	RequestID string            `json:"request_id"`
	Level     string            `json:"level"`
	Message   string            `json:"message"`
	Attrs     map[string]string `json:"attrs"`
}

// newLogsLes is NewLes plus a logs listener (TCP and UDP, port "logs") and
// an EMF listener (TCP and UDP, port "emf").
func newLogsLes(t *testing.T, extra string) *Les {
	t.Helper()
	l := NewLes(t, extra)
	l.Ports["logs"] = freePort(t)
	l.Ports["emf"] = freePort(t)
	add := fmt.Sprintf(`    - { format: logs, transport: tcp, address: 127.0.0.1:%[1]d }
    - { format: logs, transport: udp, address: 127.0.0.1:%[1]d }
    - { format: emf, transport: tcp, address: 127.0.0.1:%[2]d }
    - { format: emf, transport: udp, address: 127.0.0.1:%[2]d }
  http:`, l.Ports["logs"], l.Ports["emf"])
	l.Config = strings.Replace(l.Config, "  http:", add, 1)
	return l
}

// lmTail reads the stream from the start with `les tail ARGS` for up to d
// and returns the items printed.
func lmTail(t *testing.T, l *Les, d time.Duration, args ...string) []lmItem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, lesBinary(t), append([]string{"tail", "--url", "nats://" + l.Addr("nats"), "--data-dir", filepath.Join(l.Dir, "data"), "--from-start"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	var tailErr bytes.Buffer
	cmd.Stderr = &tailErr
	_ = cmd.Run()
	select {
	case <-l.proc.Done():
		t.Fatalf("les exited (%v) while tailing; tail stderr:\n%s\nles output:\n%s", l.proc.Err(), tailErr.String(), lastN(l.Output(), 15))
	default:
	}
	var items []lmItem
	for _, line := range nonEmptyLines(out.String()) {
		var it lmItem
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatalf("tail printed %q: %v", line, err)
		}
		items = append(items, it)
	}
	return items
}

// lmWait tails until cond holds for the items (or 40 s pass).
func lmWait(t *testing.T, l *Les, what string, cond func([]lmItem) bool, args ...string) []lmItem {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		items := lmTail(t, l, 2*time.Second, args...)
		if cond(items) {
			return items
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, it := range items {
				fmt.Fprintf(&b, "  %+v\n", it)
			}
			t.Fatalf("timed out waiting for %s; last items:\n%s\nles output:\n%s", what, b.String(), lastN(l.Output(), 30))
		}
	}
}

func lastN(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func named(items []lmItem, name, source string) []lmItem {
	var out []lmItem
	for _, it := range items {
		if it.Name == name && (source == "" || it.Source == source) {
			out = append(out, it)
		}
	}
	return out
}

func sumValues(items []lmItem) float64 {
	var s float64
	for _, it := range items {
		s += it.Value
	}
	return s
}

const reqID = "8f507cfc-xmpl-4697-b07a-ac58fc914c95"

func reportLine(ms float64) string {
	return fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %.0f ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB", reqID, ms, ms+1)
}

// TestLogsHTTP posts NDJSON, plain text and gzip to /logs and reads the log
// records back with les tail --logs.
func TestLogsHTTP(t *testing.T) {
	l := newLogsLes(t, "")
	l.Start()
	ndjson := `{"timestamp":"2024-05-01T10:00:00Z","level":"WARN","function":"fn-a","requestId":"` + reqID + `","message":"disk almost full","disk":"/tmp"}` + "\n"
	if code, body := postAPI(t, l, "/logs", []byte(ndjson), nil); code/100 != 2 || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("POST /logs NDJSON: %d %s", code, body)
	}
	plain := "2024-05-01T10:00:01.000Z\t" + reqID + "\tERROR\tboom\nplain text line\n"
	if code, body := postAPI(t, l, "/logs", gz(plain), map[string]string{"Content-Encoding": "gzip"}); code/100 != 2 || !strings.Contains(body, `"accepted":2`) {
		t.Fatalf("POST /logs gzip: %d %s", code, body)
	}
	if code, body := postAPI(t, l, "/logs", []byte{0x1f, 0x8b, 1, 2, 3}, nil); code != http.StatusBadRequest {
		t.Fatalf("POST /logs bad gzip: %d %s", code, body)
	}
	items := lmWait(t, l, "3 logs", func(it []lmItem) bool { return len(it) >= 3 }, "--logs")
	byMsg := map[string]lmItem{}
	for _, it := range items {
		if it.Type != "log" {
			t.Errorf("--logs printed a %s", it.Type)
		}
		byMsg[it.Message] = it
	}
	if it := byMsg["disk almost full"]; it.Level != "WARN" || it.Source != "fn-a" || it.RequestID != reqID || it.Attrs["disk"] != "/tmp" ||
		!strings.HasPrefix(it.Timestamp, "2024-05-01T10:00:00") {
		t.Errorf("NDJSON log: %+v", it)
	}
	if it := byMsg["boom"]; it.Level != "ERROR" || it.RequestID != reqID {
		t.Errorf("Lambda text log: %+v", it)
	}
	if _, ok := byMsg["plain text line"]; !ok {
		t.Errorf("plain line missing: %+v", items)
	}
	if v := l.Metric(`les_ingest_rejected_total{format="logs",reason="bad_gzip"}`); v != 1 {
		t.Errorf("bad_gzip rejections = %v, want 1", v)
	}
	if v := l.Metric(`les_ingest_received_total{format="logs",transport="http"}`); v != 3+1 {
		t.Errorf("received = %v, want 4", v)
	}
	l.Stop()
}

// TestLogsLambdaReportTCP sends START/END/REPORT lines through the logs TCP
// listener: the logmetric consumer derives aws.lambda.* points and the
// rollup turns durations into a distribution.
func TestLogsLambdaReportTCP(t *testing.T) {
	l := newLogsLes(t, "rollup: { grace: 1s }\n")
	l.Start()
	ts := time.Now().Add(-3 * time.Minute).UTC()
	line := func(msg string) string {
		b, _ := json.Marshal(map[string]string{"timestamp": ts.Format(time.RFC3339Nano), "function": "fn-report", "message": msg})
		return string(b) + "\n"
	}
	sendDatagrams(t, "tcp", l.Addr("logs"),
		line("START RequestId: "+reqID+" Version: $LATEST"),
		line("END RequestId: "+reqID),
		line(reportLine(12.5)),
		line(reportLine(30)),
	)
	// Derived points, published under origin "derived".
	derived := lmWait(t, l, "derived invocations", func(it []lmItem) bool {
		return len(named(it, "aws.lambda.invocations", "fn-report")) == 2
	}, "--origin", "derived,agg")
	if d := named(derived, "aws.lambda.duration", "fn-report"); len(d) != 2 || d[0].Kind != "sample" {
		t.Errorf("derived durations: %+v", d)
	}
	if inv := named(derived, "aws.lambda.invocations", "fn-report"); inv[0].Kind != "counter" || sumValues(inv) != 2 {
		t.Errorf("derived invocations: %+v", inv)
	}
	// Rolled up: a minute distribution of the two durations, and the
	// invocation count.
	rolled := lmWait(t, l, "rolled-up duration", func(it []lmItem) bool {
		return len(named(it, "aws.lambda.duration", "fn-report")) > 0 && len(named(it, "aws.lambda.invocations", "fn-report")) > 0
	}, "--origin", "rollup")
	d := named(rolled, "aws.lambda.duration", "fn-report")[0]
	if d.Type != "distribution" || d.Count != 2 || d.Sum != 42.5 || d.Window != "minute" {
		t.Errorf("duration distribution: %+v", d)
	}
	if inv := named(rolled, "aws.lambda.invocations", "fn-report"); sumValues(inv) != 2 && inv[0].Sum != 2 {
		t.Errorf("rolled invocations: %+v", inv)
	}
	if v := l.Metric(`les_logmetric_lambda_lines_total`); v != 4 {
		t.Errorf("lambda lines = %v, want 4", v)
	}
	if v := l.Metric(`les_logmetric_points_total`); v == 0 {
		t.Errorf("points_total = 0")
	}
	l.Stop()
}

// TestLogsMetricFilterApache runs the documented 404 metric filter over
// Apache access lines sent through the UDP and TCP logs listeners.
func TestLogsMetricFilterApache(t *testing.T) {
	l := newLogsLes(t, `
logmetric:
  filters:
    - name: 404s
      pattern: '[ip, user, username, timestamp, request, status_code = 404, bytes]'
      metric_name: http.404s
      metric_namespace: web
      metric_value: "1"
    - name: bytes
      pattern: '[ip, user, username, timestamp, request, status_code, bytes]'
      metric_name: http.bytes
      metric_namespace: web
      metric_value: $bytes
      dimensions: { status: $status_code }
      unit: Bytes
`)
	l.Start()
	apache := func(status, bytes int) string {
		return fmt.Sprintf(`127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" %d %d`+"\n", status, bytes)
	}
	sendDatagrams(t, "tcp", l.Addr("logs"), apache(404, 10), apache(200, 2326), apache(404, 20))
	sendDatagrams(t, "udp", l.Addr("logs"), apache(500, 5))
	items := lmWait(t, l, "404 counter", func(it []lmItem) bool {
		return len(named(it, "http.404s", "")) == 2 && len(named(it, "http.bytes", "")) == 4
	}, "--origin", "derived,agg")
	c := named(items, "http.404s", "")
	if c[0].Kind != "counter" || sumValues(c) != 2 || c[0].Tags["namespace"] != "web" {
		t.Errorf("404s: %+v", c)
	}
	var b404 float64
	for _, it := range named(items, "http.bytes", "") {
		if it.Kind != "sample" || it.Tags["unit"] != "Bytes" {
			t.Errorf("bytes point: %+v", it)
		}
		if it.Tags["status"] == "404" {
			b404 += it.Value
		}
	}
	if b404 != 30 {
		t.Errorf("bytes of 404s = %v, want 30", b404)
	}
	if v := l.Metric(`les_logmetric_matched_total{filter="404s"}`); v != 2 {
		t.Errorf("matched 404s = %v, want 2", v)
	}
	l.Stop()
}

func emfDoc(name, fn string, v float64) string {
	return fmt.Sprintf(`{"_aws":{"Timestamp":%d,"CloudWatchMetrics":[{"Namespace":"shop","Dimensions":[["FunctionName"]],"Metrics":[{"Name":%q,"Unit":"Milliseconds"}]}]},"FunctionName":%q,%q:%g}`,
		time.Now().UnixMilli(), name, fn, name, v)
}

// TestEMFUDPAndLogLine sends EMF documents to the agent's EMF port and
// embedded in log lines.
func TestEMFUDPAndLogLine(t *testing.T) {
	l := newLogsLes(t, "")
	l.Start()
	sendDatagrams(t, "udp", l.Addr("emf"), emfDoc("emf.udp", "fn-emf", 7))
	sendDatagrams(t, "udp", l.Addr("emf"), `{"_aws":{"CloudWatchMetrics":[]},"x":1}`)
	sendDatagrams(t, "tcp", l.Addr("emf"), emfDoc("emf.tcp", "fn-emf", 8)+"\n")
	// An EMF document printed by a function, arriving as a log line.
	if code, body := postAPI(t, l, "/logs", []byte(emfDoc("emf.log", "fn-emf", 9)+"\n"), nil); code/100 != 2 {
		t.Fatalf("POST /logs: %d %s", code, body)
	}
	in := lmWait(t, l, "EMF points from the agent", func(it []lmItem) bool {
		return len(named(it, "emf.udp", "fn-emf")) == 1 && len(named(it, "emf.tcp", "fn-emf")) == 1
	}, "--origin", "in,agg", "--signal", "metrics")
	if p := named(in, "emf.udp", "fn-emf")[0]; p.Value != 7 || p.Kind != "sample" || p.Tags["namespace"] != "shop" || p.Tags["unit"] != "Milliseconds" {
		t.Errorf("EMF UDP point: %+v", p)
	}
	derived := lmWait(t, l, "EMF point from a log line", func(it []lmItem) bool {
		return len(named(it, "emf.log", "fn-emf")) == 1
	}, "--origin", "derived,agg")
	if p := named(derived, "emf.log", "fn-emf")[0]; p.Value != 9 || p.Tags["FunctionName"] != "fn-emf" {
		t.Errorf("EMF log point: %+v", p)
	}
	if v := l.Metric(`les_ingest_rejected_total{format="emf",reason="missing_timestamp"}`); v != 1 {
		t.Errorf("EMF rejected missing_timestamp = %v, want 1", v)
	}
	l.Stop()
}

func cwPayload(t *testing.T, msgType string, events ...string) []byte {
	t.Helper()
	type ev struct {
		ID        string `json:"id"`
		Timestamp int64  `json:"timestamp"`
		Message   string `json:"message"`
	}
	var evs []ev
	for i, m := range events {
		evs = append(evs, ev{fmt.Sprint(i), time.Now().UnixMilli(), m})
	}
	b, err := json.Marshal(map[string]any{
		"messageType": msgType, "owner": "123456789012", "logGroup": "/aws/lambda/fn-cw",
		"logStream": "2024/05/01/[$LATEST]abc", "subscriptionFilters": []string{"les"}, "logEvents": evs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return gz(string(b))
}

// TestCWLogsSubscription posts CloudWatch Logs subscription payloads to
// /cwlogs: raw gzip, the Lambda awslogs envelope, a control message and
// garbage.
func TestCWLogsSubscription(t *testing.T) {
	l := newLogsLes(t, "")
	l.Start()
	raw := cwPayload(t, "DATA_MESSAGE", "START RequestId: "+reqID+" Version: $LATEST\n", reportLine(40)+"\n")
	if code, body := postAPI(t, l, "/cwlogs", raw, nil); code != 200 || !strings.Contains(body, `"accepted":2`) {
		t.Fatalf("POST /cwlogs gzip: %d %s", code, body)
	}
	env, _ := json.Marshal(map[string]any{"awslogs": map[string]string{
		"data": base64.StdEncoding.EncodeToString(cwPayload(t, "DATA_MESSAGE", reportLine(60)))}})
	if code, body := postAPI(t, l, "/cwlogs", env, nil); code != 200 || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("POST /cwlogs envelope: %d %s", code, body)
	}
	if code, body := postAPI(t, l, "/cwlogs", cwPayload(t, "CONTROL_MESSAGE", "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."), nil); code != 200 || !strings.Contains(body, `"accepted":0`) {
		t.Fatalf("POST /cwlogs control: %d %s", code, body)
	}
	if code, body := postAPI(t, l, "/cwlogs", []byte("!!not base64!!"), nil); code != 400 || !strings.Contains(body, "bad_base64") {
		t.Fatalf("POST /cwlogs garbage: %d %s", code, body)
	}
	derived := lmWait(t, l, "metrics from the subscription", func(it []lmItem) bool {
		return len(named(it, "aws.lambda.duration", "fn-cw")) == 2
	}, "--origin", "derived,agg")
	if inv := named(derived, "aws.lambda.invocations", "fn-cw"); sumValues(inv) != 2 {
		t.Errorf("invocations: %+v", inv)
	}
	logs := lmTail(t, l, 2*time.Second, "--logs")
	if len(logs) != 3 || logs[0].Source != "fn-cw" || logs[0].Attrs["log_group"] != "/aws/lambda/fn-cw" {
		t.Errorf("logs: %+v", logs)
	}
	if v := l.Metric(`les_ingest_rejected_total{format="cwlogs",reason="bad_base64"}`); v != 1 {
		t.Errorf("bad_base64 = %v, want 1", v)
	}
	l.Stop()
}

// TestTelemetryPlatformReport posts a Lambda Telemetry API batch.
func TestTelemetryPlatformReport(t *testing.T) {
	l := newLogsLes(t, "")
	l.Start()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	batch := `[
 {"time":"` + now + `","type":"platform.start","record":{"requestId":"` + reqID + `","version":"$LATEST"}},
 {"time":"` + now + `","type":"function","record":"` + now + `\t` + reqID + `\tINFO\thello from the function\n"},
 {"time":"` + now + `","type":"platform.report","record":{"requestId":"` + reqID + `","status":"timeout",
   "metrics":{"durationMs":3000.5,"billedDurationMs":3001,"memorySizeMB":256,"maxMemoryUsedMB":90,"initDurationMs":120}}},
 {"time":"` + now + `","type":"platform.bogus","record":{}}
]`
	code, body := postAPI(t, l, "/telemetry?source=fn-tel", []byte(batch), map[string]string{"Content-Type": "application/json"})
	if code != 200 || !strings.Contains(body, `"unknown_event_type":1`) {
		t.Fatalf("POST /telemetry: %d %s", code, body)
	}
	if code, body := postAPI(t, l, "/telemetry", []byte("not json"), nil); code != 400 {
		t.Fatalf("POST /telemetry garbage: %d %s", code, body)
	}
	items := lmWait(t, l, "telemetry metrics", func(it []lmItem) bool {
		return len(named(it, "aws.lambda.duration", "fn-tel")) == 1 && len(named(it, "hello from the function", "")) == 0 &&
			len(named(it, "aws.lambda.timeouts", "fn-tel")) == 1
	}, "--origin", "in,agg", "--signal", "metrics")
	if d := named(items, "aws.lambda.duration", "fn-tel")[0]; d.Value != 3000.5 || d.Kind != "sample" {
		t.Errorf("duration: %+v", d)
	}
	if to := named(items, "aws.lambda.timeouts", "fn-tel")[0]; to.Value != 1 {
		t.Errorf("timeouts: %+v", to)
	}
	if cs := named(items, "aws.lambda.cold_starts", "fn-tel"); len(cs) != 1 {
		t.Errorf("cold starts: %+v", cs)
	}
	logs := lmWait(t, l, "function log", func(it []lmItem) bool { return len(it) == 1 }, "--logs")
	if logs[0].Message != "hello from the function" || logs[0].Source != "fn-tel" || logs[0].Attrs["type"] != "function" {
		t.Errorf("function log: %+v", logs[0])
	}
	l.Stop()
}

// TestLogsConfigInvalidPattern: an invalid filter pattern stops les up
// with the file, line, key, position and reason.
func TestLogsConfigInvalidPattern(t *testing.T) {
	l := NewLes(t, `
logmetric:
  filters:
    - name: broken
      pattern: '[ip, status_code = ]'
      metric_name: x
      metric_namespace: app
`)
	if err := os.WriteFile(filepath.Join(l.Dir, "les.yaml"), []byte(l.Config), 0o644); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(l.Config[:strings.Index(l.Config, "pattern:")], "\n") + 1
	_, err := l.Run("", "up", "--config", "les.yaml")
	if err == nil {
		t.Fatal("les up accepted an invalid pattern")
	}
	want := fmt.Sprintf("les.yaml:%d: logmetric.filters[0].pattern: filter pattern: at position 19: ", line)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

// TestFilterTestJSON runs les filter test --json.
func TestFilterTestJSON(t *testing.T) {
	l := NewLes(t, "")
	in := `{"latency": 734, "user": "ana"}` + "\n" + `{"latency": 12}` + "\n" + "not json\n"
	out, err := l.Run(in, "filter", "test", "{ $.latency > 100 }", "--value", "$.latency", "--dimension", "who=$.user", "--json")
	if err != nil {
		t.Fatal(err)
	}
	lines := nonEmptyLines(out)
	if len(lines) != 3 {
		t.Fatalf("output: %q", out)
	}
	type res struct {
		Line       string            `json:"line"`
		Match      bool              `json:"match"`
		Value      *float64          `json:"value"`
		Dimensions map[string]string `json:"dimensions"`
	}
	var got []res
	for _, ln := range lines {
		var r res
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatalf("%q: %v", ln, err)
		}
		got = append(got, r)
	}
	if !got[0].Match || got[0].Value == nil || *got[0].Value != 734 || got[0].Dimensions["who"] != "ana" {
		t.Errorf("line 1: %+v", got[0])
	}
	if got[1].Match || got[1].Value != nil || got[2].Match {
		t.Errorf("lines 2, 3: %+v %+v", got[1], got[2])
	}
	_, err = l.Run("", "filter", "test", "[a, b = ]")
	if err == nil || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(err.Error(), "at position 8") {
		t.Errorf("invalid pattern: %v", err)
	}
}
