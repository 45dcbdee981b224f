package pattern

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func f64(v float64) *float64 { return &v }

func TestTransformationValidate(t *testing.T) {
	ok := Transformation{MetricName: "BytesTransferred", MetricNamespace: "MyNamespace", MetricValue: "$size", DefaultValue: f64(0), Unit: "Bytes"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	bad := map[string]Transformation{
		"no name":        {MetricNamespace: "n", MetricValue: "1"},
		"colon in name":  {MetricName: "a:b", MetricNamespace: "n", MetricValue: "1"},
		"star in ns":     {MetricName: "a", MetricNamespace: "n*", MetricValue: "1"},
		"no value":       {MetricName: "a", MetricNamespace: "n"},
		"bad value":      {MetricName: "a", MetricNamespace: "n", MetricValue: "abc"},
		"four dims":      {MetricName: "a", MetricNamespace: "n", MetricValue: "1", Dimensions: map[string]string{"a": "$a", "b": "$b", "c": "$c", "d": "$d"}},
		"default+dims":   {MetricName: "a", MetricNamespace: "n", MetricValue: "1", DefaultValue: f64(0), Dimensions: map[string]string{"a": "$a"}},
		"literal dim":    {MetricName: "a", MetricNamespace: "n", MetricValue: "1", Dimensions: map[string]string{"a": "5"}},
		"unknown unit":   {MetricName: "a", MetricNamespace: "n", MetricValue: "1", Unit: "Furlongs"},
		"long value":     {MetricName: "a", MetricNamespace: "n", MetricValue: "$" + strings.Repeat("a", 100)},
		"long namespace": {MetricName: "a", MetricNamespace: strings.Repeat("n", 256), MetricValue: "1"},
	}
	for name, tr := range bad {
		if err := tr.Validate(); err == nil {
			t.Errorf("%s: Validate succeeded", name)
		}
	}
}

func TestMetricFilterApply(t *testing.T) {
	// CWL ExtractBytesExample: metricValue $size, defaultValue 0.
	f, err := NewMetricFilter("[ip, id, user, timestamp, request, status_code, size]",
		Transformation{MetricName: "BytesTransferred", MetricNamespace: "MyNamespace", MetricValue: "$size", DefaultValue: f64(0)})
	if err != nil {
		t.Fatal(err)
	}
	m := f.Pattern().NewMatcher()
	pt, ok := f.Apply(m, []byte(`127.0.0.1 - - [24/Sep/2013:11:49:52 -0700] "GET /index.html HTTP/1.1" 404 287`))
	if !ok || !cmp.Equal(pt, Point{Value: 287}) {
		t.Errorf("match: %+v, %v", pt, ok)
	}
	pt, ok = f.Apply(m, []byte(`not an access log line`))
	if !ok || !cmp.Equal(pt, Point{Value: 0, Default: true}) {
		t.Errorf("default: %+v, %v", pt, ok)
	}
	pt, ok = f.Apply(m, []byte(`127.0.0.1 - - [24/Sep/2013:11:49:52 -0700] "GET /index.html HTTP/1.1" 404 -`))
	if ok {
		t.Errorf("non-numeric value emitted %+v", pt)
	}

	// JSON with dimensions.
	f, err = NewMetricFilter(`{ $.eventType = "Update*" }`, Transformation{MetricName: "Events", MetricNamespace: "Trail",
		MetricValue: "$.latency", Dimensions: map[string]string{"EventType": "$.eventType", "Region": "$.region"}})
	if err != nil {
		t.Fatal(err)
	}
	m = f.Pattern().NewMatcher()
	pt, ok = f.Apply(m, []byte(`{"eventType":"UpdateTrail","latency":12.5,"region":"eu-west-1"}`))
	want := Point{Value: 12.5, Dimensions: map[string]string{"EventType": "UpdateTrail", "Region": "eu-west-1"}}
	if d := cmp.Diff(want, pt); !ok || d != "" {
		t.Errorf("json point (-want +got):\n%s", d)
	}
	if _, ok = f.Apply(m, []byte(`{"eventType":"UpdateTrail","latency":12.5}`)); ok {
		t.Error("missing dimension emitted a point")
	}
	if _, ok = f.Apply(m, []byte(`{"eventType":"PutTrail","latency":1}`)); ok {
		t.Error("non-match without default emitted a point")
	}

	if _, err := NewMetricFilter("ERROR", Transformation{MetricName: "a", MetricNamespace: "n", MetricValue: "1",
		Dimensions: map[string]string{"x": "$x"}}); err == nil {
		t.Error("dimensions with an unstructured pattern accepted")
	}
	var se *SyntaxError
	if _, err := NewMetricFilter("[a", Transformation{MetricName: "a", MetricNamespace: "n", MetricValue: "1"}); !errors.As(err, &se) {
		t.Errorf("bad pattern error = %v", err)
	}
}

func TestRunTestText(t *testing.T) {
	in := strings.Join([]string{
		`127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534`,
		`127.0.0.1 - frank [10/Oct/2000:13:35:22 -0700] "GET /apache_pb.gif HTTP/1.0" 500 5324`,
		`garbage`,
	}, "\r\n")
	var out bytes.Buffer
	n, err := RunTest(&out, strings.NewReader(in), "[ip, user, username, timestamp, request, status_code = 5*, bytes]", "$bytes", false)
	if err != nil || n != 1 {
		t.Fatalf("RunTest = %d, %v", n, err)
	}
	want := "line 1: no match\n" +
		`line 2: match value=5324 $ip="127.0.0.1" $user="-" $username="frank" $timestamp="10/Oct/2000:13:35:22 -0700" $request="GET /apache_pb.gif HTTP/1.0" $status_code="500" $bytes="5324"` + "\n" +
		"line 3: no match\n"
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}
}

func TestRunTestJSON(t *testing.T) {
	in := `{"eventType":"UpdateTrail","latency":734}` + "\n" + `{"eventType":"PutTrail"}` + "\n"
	var out bytes.Buffer
	n, err := RunTestWith(&out, strings.NewReader(in), TestOptions{Pattern: `{ $.latency > 500 }`, Value: "$.latency",
		Dimensions: map[string]string{"EventType": "$.eventType"}, JSON: true})
	if err != nil || n != 1 {
		t.Fatalf("RunTestWith = %d, %v", n, err)
	}
	want := `{"line":"{\"eventType\":\"UpdateTrail\",\"latency\":734}","match":true,"value":734,"fields":{},"dimensions":{"EventType":"UpdateTrail"}}` + "\n" +
		`{"line":"{\"eventType\":\"PutTrail\"}","match":false,"value":null,"fields":{},"dimensions":{}}` + "\n"
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}

	out.Reset()
	_, err = RunTest(&out, strings.NewReader("x"), `{ $.a = }`, "", true)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Pos != 8 {
		t.Errorf("invalid pattern error = %v", err)
	}
	if _, err = RunTest(&out, strings.NewReader("x"), `ERROR`, "nope", true); err == nil {
		t.Error("invalid value selector accepted")
	}
}
