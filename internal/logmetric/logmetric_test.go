package logmetric

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/logmetric/pattern"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

func filter(t *testing.T, name, pat string, tr pattern.Transformation, kind model.Kind) Filter {
	t.Helper()
	mf, err := pattern.NewMetricFilter(pat, tr)
	if err != nil {
		t.Fatal(err)
	}
	return Filter{Name: name, Metric: mf, Kind: kind}
}

// run decodes lines with the log decoder (as the agent does), feeds them to
// p, scribbles over the input (the processor must own its copies) and
// returns what Advance emits, one "name source kind value tags" per point.
func run(t *testing.T, p *Processor, lines string) []string {
	t.Helper()
	in := []byte(lines)
	var b model.Batch
	logline.NewDecoder(logline.Options{DefaultSource: "fn"}).Decode(&b, in, 1_700_000_000e9)
	p.Add(&b, 0)
	for i := range in {
		in[i] = 'X'
	}
	b.Reset()
	var out model.Batch
	p.Advance(0, &out)
	var got []string
	for _, m := range out.Metrics {
		var tags []string
		for _, tg := range m.Tags {
			tags = append(tags, tg.Key+"="+tg.Value)
		}
		got = append(got, fmt.Sprintf("%s %s %s %g %s", m.Name, m.Source, m.Kind, m.Value, strings.Join(tags, ",")))
	}
	sort.Strings(got)
	return got
}

func eq(t *testing.T, got, want []string) {
	t.Helper()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestLambdaLines(t *testing.T) {
	p, err := New(Config{Lambda: true}, selfmetric.New())
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, p, "START RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95 Version: $LATEST\n"+
		"END RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\n"+
		"REPORT RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\tDuration: 12.50 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tInit Duration: 150.00 ms\n"+
		"2024-01-01T00:00:00.000Z 8f507cfc-xmpl-4697-b07a-ac58fc914c95 Task timed out after 3.00 seconds\n"+
		"just a log line\n")
	eq(t, got, []string{
		"aws.lambda.invocations fn counter 1 ",
		"aws.lambda.errors fn counter 0 ",
		"aws.lambda.timeouts fn counter 0 ",
		"aws.lambda.timeouts fn counter 1 ",
		"aws.lambda.cold_starts fn counter 1 ",
		"aws.lambda.duration fn sample 12.5 ",
		"aws.lambda.billed_duration fn sample 13 ",
		"aws.lambda.init_duration fn sample 150 ",
		"aws.lambda.max_memory_used fn sample 70 ",
		"aws.lambda.memory_size fn gauge 128 ",
	})
}

func TestEMFLine(t *testing.T) {
	p, _ := New(Config{EMF: true}, selfmetric.New())
	doc := `{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"shop","Dimensions":[["Service"]],"Metrics":[{"Name":"latency","Unit":"Milliseconds"}]}]},"Service":"cart","latency":[4,5]}`
	bad := `{"_aws":{"CloudWatchMetrics":[]},"x":1}`
	got := run(t, p, doc+"\n"+bad+"\n"+`{"msg":"not emf","level":"info"}`+"\n")
	eq(t, got, []string{
		"latency fn sample 4 Service=cart,namespace=shop,unit=Milliseconds",
		"latency fn sample 5 Service=cart,namespace=shop,unit=Milliseconds",
	})
	if v := p.emfRejected; v == nil {
		t.Fatal("no reason counters")
	}
	// EMF off: nothing.
	p2, _ := New(Config{}, selfmetric.New())
	if got := run(t, p2, doc+"\n"); len(got) != 0 {
		t.Errorf("EMF disabled emitted %v", got)
	}
}

func TestFilters(t *testing.T) {
	one := 0.0
	p, err := New(Config{Filters: []Filter{
		filter(t, "404s", `[ip, user, username, timestamp, request, status_code = 404, bytes]`,
			pattern.Transformation{MetricName: "http.404", MetricNamespace: "web", MetricValue: "1"}, model.Counter),
		filter(t, "bytes", `[ip, user, username, timestamp, request, status_code, bytes]`,
			pattern.Transformation{MetricName: "http.bytes", MetricNamespace: "web", MetricValue: "$bytes",
				Dimensions: map[string]string{"status": "$status_code"}, Unit: "Bytes"}, model.Sample),
		filter(t, "slow", `{ $.latency > 100 }`,
			pattern.Transformation{MetricName: "slow", MetricNamespace: "app", MetricValue: "$.latency"}, model.Sample),
		filter(t, "errors", `ERROR`,
			pattern.Transformation{MetricName: "errors", MetricNamespace: "app", MetricValue: "1", DefaultValue: &one}, model.Counter),
	}}, selfmetric.New())
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, p, strings.Join([]string{
		`127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /a.gif HTTP/1.0" 404 2326`,
		`127.0.0.1 - frank [10/Oct/2000:13:25:16 -0700] "GET /b.gif HTTP/1.0" 200 100`,
		`{"level":"ERROR","message":"slow request","latency":250,"function":"api"}`,
		`{"latency":50}`,
	}, "\n"))
	eq(t, got, []string{
		"http.404 fn counter 1 namespace=web",
		"http.bytes fn sample 2326 namespace=web,status=404,unit=Bytes",
		"http.bytes fn sample 100 namespace=web,status=200,unit=Bytes",
		// The JSON record's message is "slow request"; the pattern sees the
		// record's fields as a JSON object.
		"slow api sample 250 namespace=app",
		"errors fn counter 0 namespace=app",
		"errors fn counter 0 namespace=app",
		// Unstructured patterns see the message, not the level field.
		"errors api counter 0 namespace=app",
		"errors fn counter 0 namespace=app",
	})
	if v := p.filters[0].matched.Get(); v != 1 {
		t.Errorf("matched 404s = %d", v)
	}
	if v := p.filters[3].matched.Get(); v != 0 {
		t.Errorf("matched errors = %d (default-value points are not matches)", v)
	}
	if got := run(t, p, "ERROR: boom\n"); len(got) != 1 || got[0] != "errors fn counter 1 namespace=app" {
		t.Errorf("ERROR line: %v", got)
	}
}

// TestNamespaceAs (issue 11, item 8): the classic Lambda example filter
// with namespace lambdametrics gives random_number{namespace=lambdametrics}
// by default, and lambdametrics.random_number (what CloudWatch → Wavefront
// shows) with namespace_as: prefix.
func TestNamespaceAs(t *testing.T) {
	line := "METRIC 2024-01-01T00:00:00.000Z 8f507cfc-xmpl-4697-b07a-ac58fc914c95 random_number 42\n"
	tr := pattern.Transformation{MetricName: "random_number", MetricNamespace: "lambdametrics", MetricValue: "$metric_value"}
	const pat = `[level=METRIC, timestamp, request_id, metric_name, metric_value]`
	for _, c := range []struct{ as, want string }{
		{"", "random_number fn sample 42 namespace=lambdametrics"},
		{NamespaceTag, "random_number fn sample 42 namespace=lambdametrics"},
		{NamespacePrefix, "lambdametrics.random_number fn sample 42 "},
	} {
		f := filter(t, "rn", pat, tr, model.Sample)
		f.NamespaceAs = c.as
		p, err := New(Config{Filters: []Filter{f}}, selfmetric.New())
		if err != nil {
			t.Fatal(err)
		}
		eq(t, run(t, p, line), []string{c.want})
	}
	f := filter(t, "rn", pat, tr, model.Sample)
	f.NamespaceAs = "suffix"
	if _, err := New(Config{Filters: []Filter{f}}, selfmetric.New()); err == nil {
		t.Error("namespace_as suffix accepted")
	}
}

func TestStateRoundTrip(t *testing.T) {
	p, _ := New(Config{Lambda: true}, selfmetric.New())
	var b model.Batch
	logline.NewDecoder(logline.Options{DefaultSource: "fn"}).Decode(&b,
		[]byte("REPORT RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\tDuration: 2 ms\n"), 1)
	p.Add(&b, 0)
	st, err := p.MarshalState()
	if err != nil || len(st) == 0 {
		t.Fatalf("state %d bytes, %v", len(st), err)
	}
	q, _ := New(Config{Lambda: true}, selfmetric.New())
	if err := q.UnmarshalState(st); err != nil {
		t.Fatal(err)
	}
	if q.Pending() != p.Pending() || q.Pending() == 0 {
		t.Fatalf("restored %d points, want %d", q.Pending(), p.Pending())
	}
	var out model.Batch
	p.Advance(0, &out)
	if st, _ := p.MarshalState(); st != nil {
		t.Errorf("state after Advance: %d bytes, want nil", len(st))
	}
}

func TestMaxPending(t *testing.T) {
	p, _ := New(Config{Lambda: true, MaxPending: 3}, selfmetric.New())
	got := run(t, p, "REPORT RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\tDuration: 2 ms\n")
	if len(got) != 3 || p.dropped.Get() == 0 {
		t.Errorf("got %d points, dropped %d", len(got), p.dropped.Get())
	}
}

func TestAppendLogJSON(t *testing.T) {
	for _, tc := range []struct {
		l    model.Log
		want string
	}{
		{model.Log{Message: []byte("hi")}, `{"message":"hi"}`},
		{model.Log{Level: "INFO", RequestID: "r", Source: "s", Message: []byte(`q"`),
			Attrs: model.Tags{{Key: "http.req.path", Value: "/a"}, {Key: "http.status", Value: "200"}, {Key: "http-x", Value: "1"}, {Key: "z", Value: "2"}}},
			`{"http":{"req":{"path":"/a"},"status":"200"},"http-x":"1","level":"INFO","message":"q\"","requestId":"r","source":"s","z":"2"}`},
		{model.Log{Message: []byte("m"), Attrs: model.Tags{{Key: "a", Value: "1"}, {Key: "a.b", Value: "2"}}},
			`{"a":"1","a.b":"2","message":"m"}`},
	} {
		got := string(appendLogJSON(nil, &tc.l))
		if got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON %s", got)
		}
	}
}

func TestNewRejects(t *testing.T) {
	f := filter(t, "a", `ERROR`, pattern.Transformation{MetricName: "a", MetricNamespace: "n", MetricValue: "1"}, model.Counter)
	if _, err := New(Config{Filters: []Filter{f, f}}, selfmetric.New()); err == nil {
		t.Error("duplicate filter names accepted")
	}
	f.Kind = model.Set
	if _, err := New(Config{Filters: []Filter{f}}, selfmetric.New()); err == nil {
		t.Error("kind set accepted")
	}
}
