package wavefront

import (
	"errors"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// The lines below are what wavefront-sdk-go writes (internal/event/event.go
// Line and LineJSON, internal/spans/json.go SpanLogJSON with the span line
// of internal/spans/formatter.go SpanLine), for
//
//	sender.SendEvent("deploy", 1767225000000, 1767225060000, "fn-1",
//	    map[string]string{"env": "prod"}, event.Severity("warn"),
//	    event.Details("v42 out"), event.Type("release"))
//	sender.SendSpan("getUser", 1767225000123, 5, "fn-1", trace, span, nil, nil,
//	    nil, []SpanLog{{Timestamp: 1767225000123456, Fields: {"event": "error",
//	    "message": "boom", "error.kind": "timeout"}}})
const (
	sdkTrace = "7b3bf470-9456-11e8-9eb6-529269fb1459"
	sdkSpan  = "0313bafe-9457-11e8-9eb6-529269fb1459"

	sdkEventLine = `@Event 1767225000000 1767225060000 "deploy" severity="warn" details="v42 out" type="release" host="fn-1" tag="env: prod"` + "\n"
	sdkEventJSON = `{"annotations":{"details":"v42 out","severity":"warn","type":"release"},"endTime":1767225060000,"hosts":["fn-1"],"name":"deploy","startTime":1767225000000,"tags":["env: prod"]}`
	sdkSpanLogs  = `{"traceId":"` + sdkTrace + `","spanId":"` + sdkSpan + `","logs":[{"timestamp":1767225000123456,"fields":{"error.kind":"timeout","event":"error","message":"boom"}}],` +
		`"span":"getUser source=fn-1 traceId=` + sdkTrace + ` spanId=` + sdkSpan + ` \"_spanLogs\"=\"true\" 1767225000123 5\n"}` + "\n"
)

var sdkEvent = model.Log{
	Timestamp: 1767225000000e6, Source: "fn-1", Level: "WARN", Message: []byte("v42 out"),
	Attrs: model.Tags{{Key: "end_ms", Value: "1767225060000"}, {Key: "env", Value: "prod"}, {Key: "title", Value: "deploy"}, {Key: "type", Value: "release"}},
}

func TestSDKEventLine(t *testing.T) {
	for _, mode := range []Mode{ModeMetrics, ModeHistogram} {
		var b model.Batch
		NewDecoder(Options{Mode: mode, DefaultSource: "host-a"}).Decode(&b, []byte(sdkEventLine), now)
		if diff := cmp.Diff(model.Batch{Logs: []model.Log{sdkEvent}}, b, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(model.Batch{}, "Arena")); diff != "" {
			t.Errorf("mode %d (-want +got):\n%s", mode, diff)
		}
	}
}

func TestSDKEventJSON(t *testing.T) {
	var b model.Batch
	if err := NewDecoder(Options{}).DecodeEventJSON(&b, []byte(sdkEventJSON), now); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]model.Log{sdkEvent}, b.Logs, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{}`, `{"name":" "}`, `[`, `{"name":"x","startTime":-1}`} {
		var b model.Batch
		if err := NewDecoder(Options{}).DecodeEventJSON(&b, []byte(bad), now); !errors.Is(err, ErrInvalidEvent) || len(b.Logs) != 0 {
			t.Errorf("DecodeEventJSON(%s) = %v, %d logs; want ErrInvalidEvent", bad, err, len(b.Logs))
		}
	}
}

// TestDecodeEvent: the body of POST /api/v2/event is either the SDK's
// JSON event (direct mode) or its "@Event" line (proxy mode, leading
// blank lines allowed); both give the same log record. JSON that is no
// event is an error and appends nothing.
func TestDecodeEvent(t *testing.T) {
	for _, body := range []string{sdkEventJSON, sdkEventLine, "\n  " + sdkEventLine} {
		var b model.Batch
		if err := NewDecoder(Options{}).DecodeEvent(&b, []byte(body), now); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if diff := cmp.Diff([]model.Log{sdkEvent}, b.Logs, cmpopts.EquateEmpty()); diff != "" || len(b.Rejects) != 0 {
			t.Errorf("%q (-want +got):\n%s\nrejects %v", body, diff, b.Rejects)
		}
	}
	var b model.Batch
	if err := NewDecoder(Options{}).DecodeEvent(&b, []byte("{not json"), now); !errors.Is(err, ErrInvalidEvent) || len(b.Logs) != 0 {
		t.Errorf("DecodeEvent({not json) = %v, %d logs; want ErrInvalidEvent", err, len(b.Logs))
	}
}

func TestEventDefaults(t *testing.T) {
	// No end, no host, no severity: end is start+1ms, the default source,
	// INFO, the name as message; repeated hosts beyond the first are attrs.
	in := "@Event " + strconv.Itoa(baseSec) + " restart\n@Event " + strconv.Itoa(baseSec) + " x host=a host=b eventTag=solo\n"
	var b model.Batch
	NewDecoder(Options{DefaultSource: "host-a"}).Decode(&b, []byte(in), now)
	want := []model.Log{
		{Timestamp: base, Source: "host-a", Level: "INFO", Message: []byte("restart"),
			Attrs: model.Tags{{Key: "end_ms", Value: strconv.FormatInt(base/1e6+1, 10)}, {Key: "title", Value: "restart"}}},
		{Timestamp: base, Source: "a", Level: "INFO", Message: []byte("x"),
			Attrs: model.Tags{{Key: "end_ms", Value: strconv.FormatInt(base/1e6+1, 10)}, {Key: "host", Value: "b"}, {Key: "tag", Value: "solo"}, {Key: "title", Value: "x"}}},
	}
	if diff := cmp.Diff(want, b.Logs, cmpopts.EquateEmpty()); diff != "" || len(b.Rejects) != 0 {
		t.Errorf("(-want +got):\n%s\nrejects %v", diff, b.Rejects)
	}
}

func TestSDKSpanLogs(t *testing.T) {
	want := []model.Log{{
		Timestamp: 1767225000123456e3, Source: "fn-1", Level: "ERROR", Message: []byte("boom"),
		Attrs: model.Tags{{Key: "error.kind", Value: "timeout"}, {Key: "event", Value: "error"}, {Key: "span_id", Value: sdkSpan}, {Key: "trace_id", Value: sdkTrace}},
	}}
	// The SDK's proxy sender writes span logs to the tracing port; its
	// direct sender posts them with f=spanLogs; the proxy also takes them
	// on 2878.
	for _, mode := range []Mode{ModeTrace, ModeMetrics} {
		var b model.Batch
		NewDecoder(Options{Mode: mode, DefaultSource: "host-a"}).Decode(&b, []byte(sdkSpanLogs), now)
		if diff := cmp.Diff(want, b.Logs, cmpopts.EquateEmpty()); diff != "" || len(b.Rejects) != 0 {
			t.Errorf("mode %d (-want +got):\n%s\nrejects %v", mode, diff, b.Rejects)
		}
	}
	// Without the span line: the default source; fields without a
	// message become the message as JSON; level fields are upper-cased.
	in := `{"traceId":"t","spanId":"s","_spanSecondaryId":"server","logs":[{"timestamp":` + strconv.Itoa(baseSec) + `000000,"fields":{"k":"v","level":"warn"}},{"timestamp":0,"fields":{}}]}`
	var b model.Batch
	NewDecoder(Options{Mode: ModeTrace, DefaultSource: "host-a"}).Decode(&b, []byte(in), now)
	want = []model.Log{
		{Timestamp: base, Source: "host-a", Level: "WARN", Message: []byte(`{"k":"v","level":"warn"}`),
			Attrs: model.Tags{{Key: "k", Value: "v"}, {Key: "span_id", Value: "s"}, {Key: "span_secondary_id", Value: "server"}, {Key: "trace_id", Value: "t"}}},
		{Timestamp: now, Source: "host-a",
			Attrs: model.Tags{{Key: "span_id", Value: "s"}, {Key: "span_secondary_id", Value: "server"}, {Key: "trace_id", Value: "t"}}},
	}
	if diff := cmp.Diff(want, b.Logs, cmpopts.EquateEmpty()); diff != "" || len(b.Rejects) != 0 {
		t.Errorf("(-want +got):\n%s\nrejects %v", diff, b.Rejects)
	}
}
