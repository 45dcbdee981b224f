package lambda

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
)

const id = "8f507cfc-xmpl-4697-b07a-ac58fc914c95"

var t0 = time.Date(2024, 3, 4, 17, 22, 38, 33e6, time.UTC).UnixNano()

// m renders metrics compactly: "name kind value [k=v,...]".
func m(b *model.Batch) []string {
	var out []string
	for _, x := range b.Metrics {
		s := fmt.Sprintf("%s %s %g", strings.TrimPrefix(x.Name, "aws.lambda."), x.Kind, x.Value)
		for _, t := range x.Tags {
			s += " " + t.Key + "=" + t.Value
		}
		out = append(out, s)
	}
	return out
}

func rejects(b *model.Batch) []string {
	var out []string
	for _, r := range b.Rejects {
		out = append(out, r.Reason)
	}
	return out
}

// base is what every plain REPORT/platform.report emits first.
func base(status string) []string {
	e, t := "0", "0"
	switch status {
	case "error":
		e = "1"
	case "timeout":
		t = "1"
	}
	return []string{"invocations counter 1", "errors counter " + e, "timeouts counter " + t}
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestFromLine(t *testing.T) {
	std := []string{"duration sample 102.25", "billed_duration sample 103", "memory_size gauge 128", "max_memory_used sample 70"}
	tests := []struct {
		name     string
		line     string
		platform bool
		want     []string
	}{
		{"start", "START RequestId: " + id + " Version: $LATEST", true, nil},
		{"start tab (LMI)", "START RequestId: " + id + "\tVersion: 3", true, nil},
		{"end", "END RequestId: " + id, true, nil},
		{"end newline", "END RequestId: " + id + "\n", true, nil},
		{"report tabs", "REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t\n", true,
			cat(base(""), std)},
		{"report cold", "REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tInit Duration: 150.11 ms\t", true,
			cat(base(""), []string{"cold_starts counter 1"}, std, []string{"init_duration sample 150.11"})},
		{"report spaces (rendered docs)", "REPORT RequestId: a0537bcb-712d-11e4-8c97-af075a3c0929 Duration: 718.65 ms Billed Duration: 800 ms Memory Size: 128 MB Max Memory Used: 14 MB", true,
			cat(base(""), []string{"duration sample 718.65", "billed_duration sample 800", "memory_size gauge 128", "max_memory_used sample 14"})},
		{"report xray second line", "REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tInit Duration: 394.01 ms\t\nXRAY TraceId: 1-621fa5b2-1d0fdf726117126372296a3b\tSegmentId: 19852da441410609\tSampled: true\t", true,
			cat(base(""), []string{"cold_starts counter 1"}, std, []string{"init_duration sample 394.01"})},
		{"report xray inline", "REPORT RequestId: " + id + " Duration: 102.25 ms Billed Duration: 103 ms Memory Size: 128 MB Max Memory Used: 70 MB XRAY TraceId: 1-5e1b4151-5ac6c58f5b6fc6b0c36ec3c6 SegmentId: 6d4a3ce1b5f2ad4f Sampled: true", true,
			cat(base(""), std)},
		{"report reordered", "REPORT RequestId: " + id + "\tMax Memory Used: 70 MB\tMemory Size: 128 MB\tBilled Duration: 103 ms\tDuration: 102.25 ms", true,
			cat(base(""), std)},
		{"report minimal", "REPORT RequestId: " + id + "\tDuration: 2.05 ms", true,
			cat(base(""), []string{"duration sample 2.05"})},
		{"report snapstart", "REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tRestore Duration: 474.16 ms\tBilled Restore Duration: 75 ms", true,
			cat(base(""), []string{"cold_starts counter 1"}, std, []string{"restore_duration sample 474.16", "billed_restore_duration sample 75"})},
		{"report status timeout", "REPORT RequestId: 527cxmpl-6d4c-4b37-9b1c-3b9a8f0d8e13\tDuration: 3016.78 ms\tBilled Duration: 3101 ms\tMemory Size: 128 MB\tMax Memory Used: 31 MB\tInit Duration: 84.00 ms\tStatus: timeout", true,
			cat(base("timeout"), []string{"cold_starts counter 1", "duration sample 3016.78", "billed_duration sample 3101", "memory_size gauge 128", "max_memory_used sample 31", "init_duration sample 84"})},
		{"report status error", "REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tStatus: error\tError Type: Runtime.ExitError", true,
			cat(base("error"), std)},
		{"report OOM", "REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 128 MB\tStatus: error\tError Type: Runtime.OutOfMemory", true,
			cat(base("error"), []string{"duration sample 102.25", "billed_duration sample 103", "memory_size gauge 128", "max_memory_used sample 128"})},
		{"report garbage values", "REPORT RequestId: " + id + "\tDuration: abc ms\tMemory Size: MB", true, base("")},
		{"init start", "INIT_START Runtime Version: python:3.12.mainlinev2.v7\tRuntime Version ARN: arn:aws:lambda:us-east-1::runtime:2b83", true, nil},
		{"init report timeout", "INIT_REPORT Init Duration: 10009.13 ms\tPhase: init\tStatus: timeout", true, []string{"init_errors counter 1 phase=init"}},
		{"init report error", "INIT_REPORT Init Duration: 8431.38 ms\tPhase: invoke\tStatus: error\tError Type: Runtime.ExitError", true,
			[]string{"init_errors counter 1 error_type=Runtime.ExitError phase=invoke"}},
		{"init report extension crash", "INIT_REPORT Init Duration: 1.2 ms\tPhase: init\tStatus: error\tError Type: Extension.Crash", true,
			[]string{"init_errors counter 1 error_type=Extension.Crash phase=init"}},
		{"init report success (snapstart)", "INIT_REPORT Init Duration: 512.3 ms", true, nil},
		{"restore start", "RESTORE_START Runtime Version: java:17.v15\tRuntime Version ARN: arn:aws:lambda:us-east-1::runtime:7a2f", true, nil},
		{"restore report timeout", "RESTORE_REPORT Restore Duration: 1236.04 ms\tStatus: timeout", true, []string{"restore_errors counter 1"}},
		{"restore report error", "RESTORE_REPORT Restore Duration: 1236.04 ms\tStatus: error\tError Type: Runtime.ExitError", true,
			[]string{"restore_errors counter 1 error_type=Runtime.ExitError"}},
		{"extension", "EXTENSION\tName: lambda-adapter\tState: Ready\tEvents: [INVOKE, SHUTDOWN]", true, nil},
		{"telemetry", "TELEMETRY\tName: datadog-agent\tState: Subscribed\tTypes: [Platform, Function, Extension]", true, nil},
		{"xray alone", "XRAY TraceId: 1-621fa5b2-1d0fdf726117126372296a3b\tSegmentId: 19852da441410609\tSampled: true", true, nil},
		{"old timeout", "2024-03-04T17:22:38.033Z b70435cc-xmpl-4c27-8f5e-3c9d1c1b2a6e Task timed out after 3.00 seconds", true, []string{"timeouts counter 1"}},
		{"old timeout tab", "2024-03-04T17:22:38.033Z\tb70435cc-xmpl-4c27-8f5e-3c9d1c1b2a6e\tTask timed out after 900.10 seconds\n", true, []string{"timeouts counter 1"}},
		{"old crash exit status", "RequestId: " + id + " Error: Runtime exited with error: exit status 1\nRuntime.ExitError", true, []string{"errors counter 1"}},
		{"old crash no reason", "RequestId: c3252230-xmpl-4ff3-9b7e-8a5d9e1b7c2f Error: Runtime exited without providing a reason\nRuntime.ExitError", true, []string{"errors counter 1"}},
		{"old crash killed", "RequestId: " + id + " Error: Runtime exited with error: signal: killed", true, []string{"errors counter 1"}},
		{"process exited", "RequestId: 16f8d3a2-26fc-11e8-bca6-73dbc61c39e7 Process exited before completing request", true, []string{"errors counter 1"}},
		{"app line", "2024-03-04T17:22:38.033Z\t" + id + "\tINFO\thello", false, nil},
		{"app line mentioning REPORT", "processing REPORT RequestId: x", false, nil},
		{"requestid without error", "RequestId: " + id + " something else", false, nil},
		{"empty", "", false, nil},
		{"json platform.report", `{"time":"2024-03-04T17:22:38.033Z","type":"platform.report","record":{"requestId":"` + id + `","metrics":{"durationMs":102.25,"billedDurationMs":103,"memorySizeMB":128,"maxMemoryUsedMB":70},"status":"success"}}`, true,
			cat(base(""), std)},
		{"json platform.start", `{"time":"2024-03-04T17:22:38.033Z","type":"platform.start","record":{"requestId":"` + id + `","version":"$LATEST"}}`, true, nil},
		{"json function line is not platform", `{"time":"2024-03-04T17:22:38.033Z","type":"function","record":{"message":"x"}}`, false, nil},
		{"json app line", `{"timestamp":"2026-10-08T07:30:29.443Z","level":"ERROR","message":"x"}`, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b model.Batch
			var e Extractor
			got := e.FromLine(&b, "fn", []byte(tt.line), t0)
			if got != tt.platform {
				t.Errorf("FromLine = %v, want %v", got, tt.platform)
			}
			if diff := cmp.Diff(tt.want, m(&b)); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			for _, x := range b.Metrics {
				if x.Source != "fn" {
					t.Errorf("source %q", x.Source)
				}
				if x.Timestamp != t0 && !strings.HasPrefix(tt.line, "{") {
					t.Errorf("timestamp %d", x.Timestamp)
				}
			}
		})
	}
}

func ev(typ, record string) string {
	return `{"time":"2022-10-21T14:05:05.766Z","type":"` + typ + `","record":` + record + `}`
}

func TestFromTelemetry(t *testing.T) {
	const rid = "459921b5-681c-4a96-beb0-81e0aa586026"
	tests := []struct {
		name    string
		payload string
		want    []string
		rejects []string
	}{
		{"initStart 2022-12-13", ev("platform.initStart", `{"initializationType":"on-demand","phase":"init","runtimeVersion":"nodejs-14.v3","runtimeVersionArn":"arn","functionName":"my-fn","functionVersion":"$LATEST"}`), nil, nil},
		{"initStart 2025-01-29 instanceId", ev("platform.initStart", `{"initializationType":"on-demand","phase":"init","functionName":"my-fn","functionVersion":"$LATEST","instanceId":"2026/10/08/fn[$LATEST]22be","instanceMaxMemory":268435456}`), nil, nil},
		{"initRuntimeDone", ev("platform.initRuntimeDone", `{"initializationType":"on-demand","phase":"init","status":"success","spans":[{"name":"someTimeSpan","start":"2022-06-02T12:02:33.913Z","durationMs":70.5}]}`), nil, nil},
		{"initReport success", ev("platform.initReport", `{"initializationType":"on-demand","phase":"init","status":"success","metrics":{"durationMs":125.33}}`), nil, nil},
		{"initReport error", ev("platform.initReport", `{"initializationType":"on-demand","phase":"invoke","status":"error","errorType":"Runtime.ImportModuleError","metrics":{"durationMs":8431.38}}`),
			[]string{"init_errors counter 1 error_type=Runtime.ImportModuleError phase=invoke"}, nil},
		{"start", ev("platform.start", `{"requestId":"`+rid+`","version":"$LATEST","tracing":{"spanId":"54565fb41ac79632","type":"X-Amzn-Trace-Id","value":"Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}}`), nil, nil},
		{"runtimeDone", ev("platform.runtimeDone", `{"requestId":"`+rid+`","status":"success","tracing":{"spanId":"24cd7d670fa455f0","type":"X-Amzn-Trace-Id","value":"Root=1-6352a70e;Parent=35465b3a9e2f7c6a;Sampled=1"},"spans":[{"name":"responseLatency","start":"2022-10-21T14:05:03.165Z","durationMs":2598.0},{"name":"responseDuration","start":"2022-10-21T14:05:05.763Z","durationMs":0.0}],"metrics":{"durationMs":2599.0,"producedBytes":8}}`),
			[]string{"produced_bytes sample 8"}, nil},
		{"report rust capture", ev("platform.report", `{"requestId":"`+rid+`","metrics":{"durationMs":2599.4,"billedDurationMs":2600,"memorySizeMB":128,"maxMemoryUsedMB":94,"initDurationMs":549.04},"tracing":{"spanId":"24cd7d670fa455f0","type":"X-Amzn-Trace-Id","value":"Root=1-6352a70e"},"status":"success"}`),
			cat(base(""), []string{"cold_starts counter 1", "duration sample 2599.4", "billed_duration sample 2600", "memory_size gauge 128", "max_memory_used sample 94", "init_duration sample 549.04"}), nil},
		{"report timeout with extensionOverhead", ev("platform.report", `{"requestId":"`+rid+`","status":"timeout","metrics":{"durationMs":3000.1,"billedDurationMs":3000,"memorySizeMB":128,"maxMemoryUsedMB":40},"spans":[{"name":"extensionOverhead","start":"2022-10-21T14:05:05.766Z","durationMs":12.5}]}`),
			cat(base("timeout"), []string{"duration sample 3000.1", "billed_duration sample 3000", "memory_size gauge 128", "max_memory_used sample 40", "extension_overhead sample 12.5"}), nil},
		{"report failure", ev("platform.report", `{"requestId":"`+rid+`","status":"failure","errorType":"Runtime.ExitError","metrics":{"durationMs":1.5}}`),
			cat(base("error"), []string{"duration sample 1.5"}), nil},
		{"report error", ev("platform.report", `{"requestId":"`+rid+`","status":"error","errorType":"Runtime.OutOfMemory","metrics":{"durationMs":1.5}}`),
			cat(base("error"), []string{"duration sample 1.5"}), nil},
		{"report LMI duration only", ev("platform.report", `{"requestId":"`+rid+`","status":"success","metrics":{"durationMs":7.25},"spans":[{"name":"responseLatency","start":"2022-10-21T14:05:03.165Z","durationMs":1},{"name":"responseDuration","start":"2022-10-21T14:05:03.165Z","durationMs":0.5}]}`),
			cat(base(""), []string{"duration sample 7.25"}), nil},
		{"report snapstart restore", ev("platform.report", `{"requestId":"`+rid+`","status":"success","metrics":{"durationMs":10,"billedDurationMs":11,"memorySizeMB":512,"maxMemoryUsedMB":100,"restoreDurationMs":474.16,"billedRestoreDurationMs":75}}`),
			cat(base(""), []string{"cold_starts counter 1", "duration sample 10", "billed_duration sample 11", "memory_size gauge 512", "max_memory_used sample 100", "restore_duration sample 474.16", "billed_restore_duration sample 75"}), nil},
		{"report Logs API no status", ev("platform.report", `{"requestId":"`+rid+`","metrics":{"durationMs":1.0,"billedDurationMs":100,"memorySizeMB":128,"maxMemoryUsedMB":50}}`),
			cat(base(""), []string{"duration sample 1", "billed_duration sample 100", "memory_size gauge 128", "max_memory_used sample 50"}), nil},
		{"extension", ev("platform.extension", `{"name":"my-telemetry-extension","state":"Ready","events":["SHUTDOWN","INVOKE"]}`), nil, nil},
		{"telemetrySubscription", ev("platform.telemetrySubscription", `{"name":"my-telemetry-extension","state":"Subscribed","types":["platform","function"]}`), nil, nil},
		{"logsDropped", ev("platform.logsDropped", `{"reason":"Consumer seems to have fallen behind as it has not acknowledged receipt of logs.","droppedRecords":123,"droppedBytes":12345}`),
			[]string{"logs_dropped_records counter 123", "logs_dropped_bytes counter 12345"}, nil},
		{"restoreStart", ev("platform.restoreStart", `{"runtimeVersion":"java17.v15","runtimeVersionArn":"arn","functionName":"my-fn","functionVersion":"3","instanceId":"x","instanceMaxMemory":536870912}`), nil, nil},
		{"restoreRuntimeDone", ev("platform.restoreRuntimeDone", `{"status":"success","spans":[]}`), nil, nil},
		{"restoreReport success", ev("platform.restoreReport", `{"status":"success","metrics":{"durationMs":474.16}}`), nil, nil},
		{"restoreReport timeout", ev("platform.restoreReport", `{"status":"timeout","metrics":{"durationMs":1236.04}}`), []string{"restore_errors counter 1"}, nil},
		{"function string record", ev("function", `"2022-10-12T00:03:50.000Z\t79b4f56e-95b1-4643-9700-2807f4e68189\tINFO\tHello world\n"`), nil, nil},
		{"function object record", ev("function", `{"timestamp":"2022-10-12T00:03:50.000Z","level":"INFO","requestId":"79b4f56e-95b1-4643-9700-2807f4e68189","message":"Hello world"}`), nil, nil},
		{"extension record", ev("extension", `"[lambda-adapter] ready"`), nil, nil},
		{"logs api platform.end", ev("platform.end", `{"requestId":"`+rid+`"}`), nil, nil},
		{"logs api platform.fault", ev("platform.fault", `"RequestId: d783b35e-a91d-4251-af17-035953428a2c Process exited before completing request"`), []string{"errors counter 1"}, nil},
		{"unknown type", ev("platform.brandNew", `{}`), nil, []string{ReasonUnknownEventType}},
		{"missing type", `{"time":"2022-10-21T14:05:05.766Z","record":{}}`, nil, []string{ReasonInvalidEvent}},
		{"bad time", `{"time":"yesterday","type":"platform.start","record":{}}`, nil, []string{ReasonInvalidTime}},
		{"non-object element", `[1]`, nil, []string{ReasonInvalidEvent}},
		{"single event object", ev("platform.logsDropped", `{"droppedRecords":1,"droppedBytes":2}`), []string{"logs_dropped_records counter 1", "logs_dropped_bytes counter 2"}, nil},
		{"record object with string metrics ignored", ev("platform.report", `{"status":"success","metrics":"nope"}`), base(""), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b model.Batch
			var e Extractor
			payload := tt.payload
			if !strings.HasPrefix(payload, "[") && tt.name != "single event object" {
				payload = "[" + payload + "," + ev("platform.start", `{"requestId":"x"}`) + "]"
			}
			if err := e.FromTelemetry(&b, "fn", []byte(payload)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, m(&b)); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.rejects, rejects(&b)); diff != "" {
				t.Errorf("rejects (-want +got):\n%s", diff)
			}
			want := time.Date(2022, 10, 21, 14, 5, 5, 766e6, time.UTC).UnixNano()
			for _, x := range b.Metrics {
				if x.Timestamp != want || x.Source != "fn" {
					t.Errorf("ts %d source %q", x.Timestamp, x.Source)
				}
			}
		})
	}
}

func TestFromTelemetryBadPayload(t *testing.T) {
	var e Extractor
	for _, p := range []string{"", "nope", `"str"`, `[{"time":1}`, `[] x`} {
		var b model.Batch
		if err := e.FromTelemetry(&b, "fn", []byte(p)); err == nil {
			t.Errorf("%q: want error", p)
		}
	}
}

func TestLearnsFunctionName(t *testing.T) {
	var e Extractor
	var b model.Batch
	payload := "[" + ev("platform.initStart", `{"initializationType":"on-demand","phase":"init","functionName":"orders","functionVersion":"$LATEST"}`) + "," +
		ev("platform.report", `{"requestId":"x","status":"success","metrics":{"durationMs":1}}`) + "]"
	if err := e.FromTelemetry(&b, "", []byte(payload)); err != nil {
		t.Fatal(err)
	}
	if e.FunctionName() != "orders" || len(b.Metrics) == 0 || b.Metrics[0].Source != "orders" {
		t.Fatalf("name %q metrics %+v", e.FunctionName(), b.Metrics)
	}
	e.FromLine(&b, "", []byte("REPORT RequestId: x\tDuration: 1 ms"), 1)
	if last := b.Metrics[len(b.Metrics)-1]; last.Source != "orders" {
		t.Fatalf("line source %q", last.Source)
	}
}

func TestLogsFromTelemetry(t *testing.T) {
	payload := "[" + strings.Join([]string{
		ev("function", `"2022-10-12T00:03:50.000Z\t79b4f56e-95b1-4643-9700-2807f4e68189\tINFO\tHello world\n"`),
		ev("function", `{"timestamp":"2022-10-12T00:03:51.000Z","level":"ERROR","requestId":"79b4f56e-95b1-4643-9700-2807f4e68189","message":"boom","errorType":"TypeError"}`),
		ev("extension", `"plain extension line"`),
		ev("platform.start", `{"requestId":"x"}`),
		ev("platform.brandNew", `{}`),
		ev("function", `17`),
	}, ",") + "]"
	var e Extractor
	var b model.Batch
	if err := e.LogsFromTelemetry(&b, "fn", []byte(payload)); err != nil {
		t.Fatal(err)
	}
	type lg struct{ TS, Req, Level, Msg, Attrs string }
	var got []lg
	for _, l := range b.Logs {
		var a []string
		for _, t := range l.Attrs {
			a = append(a, t.Key+"="+t.Value)
		}
		if l.Source != "fn" {
			t.Errorf("source %q", l.Source)
		}
		got = append(got, lg{time.Unix(0, l.Timestamp).UTC().Format(time.RFC3339Nano), l.RequestID, l.Level, string(l.Message), strings.Join(a, ",")})
	}
	want := []lg{
		{"2022-10-12T00:03:50Z", "79b4f56e-95b1-4643-9700-2807f4e68189", "INFO", "Hello world", "type=function"},
		{"2022-10-12T00:03:51Z", "79b4f56e-95b1-4643-9700-2807f4e68189", "ERROR", "boom", "type=function,errorType=TypeError"},
		{"2022-10-21T14:05:05.766Z", "", "", "plain extension line", "type=extension"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{ReasonInvalidEvent}, rejects(&b)); diff != "" {
		t.Error(diff)
	}
}

func TestFromLineAllocs(t *testing.T) {
	line := []byte("REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tInit Duration: 150.11 ms\t")
	var b model.Batch
	var e Extractor
	e.FromLine(&b, "fn", line, 1)
	if n := testing.AllocsPerRun(100, func() { b.Reset(); e.FromLine(&b, "fn", line, 1) }); n > 0 {
		t.Errorf("allocs = %v", n)
	}
}

func BenchmarkReportLine(b *testing.B) {
	line := []byte("REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tInit Duration: 150.11 ms\t\nXRAY TraceId: 1-621fa5b2-1d0fdf726117126372296a3b\tSegmentId: 19852da441410609\tSampled: true\t")
	var batch model.Batch
	var e Extractor
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		batch.Reset()
		e.FromLine(&batch, "fn", line, 1)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkTelemetry(b *testing.B) {
	payload := []byte("[" + ev("platform.runtimeDone", `{"requestId":"459921b5-681c-4a96-beb0-81e0aa586026","status":"success","spans":[{"name":"responseLatency","start":"2022-10-21T14:05:03.165Z","durationMs":2598.0}],"metrics":{"durationMs":2599.0,"producedBytes":8}}`) + "," +
		ev("platform.report", `{"requestId":"459921b5-681c-4a96-beb0-81e0aa586026","metrics":{"durationMs":2599.4,"billedDurationMs":2600,"memorySizeMB":128,"maxMemoryUsedMB":94,"initDurationMs":549.04},"status":"success"}`) + "]")
	var batch model.Batch
	var e Extractor
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		batch.Reset()
		_ = e.FromTelemetry(&batch, "fn", payload)
	}
	b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func FuzzFromLine(f *testing.F) {
	f.Add([]byte("REPORT RequestId: " + id + "\tDuration: 102.25 ms\tBilled Duration: 103 ms\tStatus: error\tError Type: Runtime.ExitError"))
	f.Add([]byte("INIT_REPORT Init Duration: 8431.38 ms\tPhase: invoke\tStatus: error\tError Type: Runtime.ExitError"))
	f.Add([]byte("2024-03-04T17:22:38.033Z b70435cc Task timed out after 3.00 seconds"))
	f.Add([]byte(ev("platform.report", `{"status":"timeout","metrics":{"durationMs":1}}`)))
	f.Fuzz(func(t *testing.T, line []byte) {
		var b model.Batch
		var e Extractor
		e.FromLine(&b, "", line, 1)
		for _, x := range b.Metrics {
			if !model.IsFinite(x.Value) {
				t.Fatalf("non-finite %v", x)
			}
		}
	})
}

func FuzzFromTelemetry(f *testing.F) {
	f.Add([]byte("[" + ev("platform.report", `{"status":"success","metrics":{"durationMs":1,"initDurationMs":2},"spans":[{"name":"extensionOverhead","durationMs":3}]}`) + "]"))
	f.Add([]byte(ev("function", `{"message":"m","level":"INFO"}`)))
	f.Add([]byte("[" + ev("platform.initStart", `{"functionName":"f"}`) + "," + ev("function", `"x\n"`) + "]"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var b model.Batch
		var e Extractor
		_ = e.FromTelemetry(&b, "", payload)
		_ = e.LogsFromTelemetry(&b, "", payload)
	})
}
