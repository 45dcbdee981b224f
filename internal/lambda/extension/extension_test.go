package extension_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/lambda/extension"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// TestMain checks for leaked goroutines. A net/http server goroutine
// that refused a request (the bad-input tests send oversized bodies)
// lingers up to 500 ms in closeWriteAndWait after its connection is
// closed, by design of net/http; a short run can end inside that wait.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// harness runs the extension against a fakeAPI, publishing to a mem
// store, with a StatsD listener on a free port.
type harness struct {
	t       *testing.T
	api     *fakeAPI
	store   *mem.Store
	reg     *selfmetric.Registry
	env     map[string]string
	info    extension.Info
	done    chan error
	log     *syncBuffer
	procs   int    // Options.GOMAXPROCS
	onReady func() // called in Options.Ready
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, env map[string]string) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "les.yaml")
	yaml := `
agent:
  listeners:
    - {format: statsd, transport: udp, address: "127.0.0.1:0"}
  spool: {dir: ` + filepath.Join(dir, "spool") + `}
stream:
  kind: kinesis
  partitions: 2
  kinesis: {stream: test}
sinks: []
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, api: newFakeAPI(t), store: mem.NewStore(), reg: selfmetric.New(), done: make(chan error, 1), log: &syncBuffer{}}
	h.env = map[string]string{
		"AWS_LAMBDA_RUNTIME_API":   h.api.hostport(),
		"AWS_LAMBDA_FUNCTION_NAME": "fn",
		"LES_CONFIG":               cfg,
		"LES_LOG_LEVEL":            "debug",
	}
	for k, v := range env {
		h.env[k] = v
	}
	return h
}

func (h *harness) spoolDir() string {
	return filepath.Join(filepath.Dir(h.env["LES_CONFIG"]), "spool")
}

// start runs the extension and waits until it is ready (or has failed).
func (h *harness) start() {
	h.t.Helper()
	ready := make(chan extension.Info, 1)
	go func() {
		h.done <- extension.Run(context.Background(), extension.Options{
			Getenv:   func(k string) string { return h.env[k] },
			Stderr:   h.log,
			Registry: h.reg,
			Ready: func(i extension.Info) {
				if h.onReady != nil {
					h.onReady()
				}
				ready <- i
			},
			GOMAXPROCS: h.procs,
			OpenStream: func(context.Context) (stream.Stream, error) {
				return mem.New(h.store, mem.Config{Partitions: 2}), nil
			},
		})
	}()
	select {
	case h.info = <-ready:
	case err := <-h.done:
		h.t.Fatalf("extension ended before it was ready: %v\n%s", err, h.log.String())
	}
}

func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatalf("extension did not return\n%s", h.log.String())
		return nil
	}
}

// statsd sends one datagram to the extension's StatsD listener and waits
// until the listener has counted it.
func (h *harness) statsd(line string) {
	h.t.Helper()
	addr := ""
	for _, l := range h.info.Listeners {
		if f := strings.Fields(l); f[0] == "statsd" {
			addr = f[2]
		}
	}
	before := h.metric(`les_ingest_received_total{format="statsd",transport="udp"}`)
	c, err := net.Dial("udp", addr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(line)); err != nil {
		h.t.Fatal(err)
	}
	eventually(h.t, func() bool { return h.metric(`les_ingest_received_total{format="statsd",transport="udp"}`) > before })
}

// metric reads one self-metric (0 when absent).
func (h *harness) metric(series string) float64 {
	var b bytes.Buffer
	h.reg.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// telemetry POSTs a batch to the extension's Telemetry listener, as
// Lambda does, and waits for the extension to have handled it.
func (h *harness) telemetry(body string) {
	h.t.Helper()
	if h.info.Telemetry == "" {
		h.t.Fatal("not subscribed to telemetry")
	}
	before := h.metric("les_lambda_telemetry_deliveries_total")
	res, err := http.Post("http://"+h.info.Telemetry+"/telemetry", "application/json", strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		h.t.Fatalf("telemetry answered %d", res.StatusCode)
	}
	eventually(h.t, func() bool { return h.metric("les_lambda_telemetry_deliveries_total") > before })
}

func (h *harness) rejected(format string) float64 {
	var b bytes.Buffer
	h.reg.WritePrometheus(&b)
	n := 0.0
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, `les_ingest_rejected_total{format="`+format+`"`) {
			var f float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &f)
			n += f
		}
	}
	return n
}

// eventually waits (up to 10s) for cond; it is not a timing assertion.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// decoded is what the store holds, decoded.
type decoded struct {
	metrics map[string]float64 // name → sum of values
	logs    []model.Log
}

func decodeStore(t *testing.T, s *mem.Store) decoded {
	t.Helper()
	d := decoded{metrics: map[string]float64{}}
	var dec wire.Decoder
	for _, r := range s.Records() {
		var b model.Batch
		if _, err := dec.Decode(&b, r.Data); err != nil {
			t.Fatalf("record %s: %v", r.ID, err)
		}
		for _, m := range b.Metrics {
			d.metrics[m.Name+"@"+m.Source] += m.Value
		}
		for _, l := range b.Logs {
			l.Message = slices.Clone(l.Message)
			l.Source, l.RequestID, l.Level = strings.Clone(l.Source), strings.Clone(l.RequestID), strings.Clone(l.Level)
			d.logs = append(d.logs, l)
		}
	}
	return d
}

func invokeEvent(id string, deadline time.Time) string {
	return fmt.Sprintf(`{"eventType":"INVOKE","deadlineMs":%d,"requestId":%q,"invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:fn","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Sampled=1"}}`, deadline.UnixMilli(), id)
}

func shutdownEvent(reason string, deadline time.Time) string {
	return fmt.Sprintf(`{"eventType":"SHUTDOWN","shutdownReason":%q,"deadlineMs":%d}`, reason, deadline.UnixMilli())
}

const ts = "2026-10-08T07:30:29.443Z"

// TestLifecycleEndFlush: registration and subscription as documented;
// the first invocation ends with a flush after platform.runtimeDone, so
// that what the function emitted is in the stream when the extension
// calls next; the report of the invocation (delivered later) and the
// function's log are published at SHUTDOWN, and Run returns.
func TestLifecycleEndFlush(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.api.waitNext()

	h.api.mu.Lock()
	if got := h.api.registerHdr.Get("Lambda-Extension-Name"); got != "les" {
		t.Errorf("Lambda-Extension-Name %q", got)
	}
	if got := h.api.registerBody["events"]; !slices.Equal(got, []string{"INVOKE", "SHUTDOWN"}) {
		t.Errorf("events %v", got)
	}
	sub := fmt.Sprint(h.api.subscription)
	h.api.mu.Unlock()
	for _, want := range []string{"schemaVersion:2025-01-29", "types:[platform function extension]", "maxBytes:262144", "maxItems:1000", "timeoutMs:25", "protocol:HTTP", "URI:http://sandbox.localdomain:"} {
		if !strings.Contains(sub, want) {
			t.Errorf("subscription %s lacks %s", sub, want)
		}
	}
	if len(h.store.Records()) != 0 {
		t.Fatal("published during init")
	}

	h.api.send(invokeEvent("8f507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
	h.telemetry(`[{"time":"` + ts + `","type":"platform.start","record":{"requestId":"8f507cfc-a8a6-4697-b07a-ac58fc914c95","version":"$LATEST"}}]`)
	h.statsd("orders:3|c|#shop:x")
	h.telemetry(`[{"time":"` + ts + `","type":"function","record":"2026-10-08T07:30:29.443Z\t8f507cfc-a8a6-4697-b07a-ac58fc914c95\tINFO\thello from the function\n"},
	 {"time":"` + ts + `","type":"platform.runtimeDone","record":{"requestId":"8f507cfc-a8a6-4697-b07a-ac58fc914c95","status":"success","metrics":{"durationMs":2.5,"producedBytes":12}}}]`)
	h.api.waitNext()
	got := decodeStore(t, h.store)
	if got.metrics["orders@fn"] != 3 || got.metrics["aws.lambda.produced_bytes@fn"] != 12 {
		t.Errorf("at next: metrics %v, want orders@fn=3 and produced_bytes=12", got.metrics)
	}
	if len(got.logs) != 1 || string(got.logs[0].Message) != "hello from the function" || got.logs[0].Level != "INFO" || got.logs[0].RequestID != "8f507cfc-a8a6-4697-b07a-ac58fc914c95" || got.logs[0].Source != "fn" {
		t.Errorf("at next: logs %+v", got.logs)
	}

	// The report of 8f507cfc-a8a6-4697-b07a-ac58fc914c95 arrives while the sandbox shuts down.
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	h.telemetry(`[{"time":"` + ts + `","type":"platform.report","record":{"requestId":"8f507cfc-a8a6-4697-b07a-ac58fc914c95","status":"success","metrics":{"durationMs":2.5,"billedDurationMs":3,"memorySizeMB":128,"maxMemoryUsedMB":40,"initDurationMs":80.5}}}]`)
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	got = decodeStore(t, h.store)
	for name, want := range map[string]float64{"aws.lambda.invocations@fn": 1, "aws.lambda.cold_starts@fn": 1, "aws.lambda.duration@fn": 2.5,
		"aws.lambda.billed_duration@fn": 3, "aws.lambda.init_duration@fn": 80.5, "aws.lambda.timeouts@fn": 0, "orders@fn": 3} {
		if got.metrics[name] != want {
			t.Errorf("%s = %v, want %v (all: %v)", name, got.metrics[name], want, got.metrics)
		}
	}
	if n := h.metric("les_lambda_synthesized_endings_total"); n != 0 {
		t.Errorf("synthesized %v endings for a spindown", n)
	}
}

// TestDeadStreamSpoolsAndReplays: with a stream that refuses every
// publish, the end-of-invocation flush spools (the record is on disk
// when the extension calls next); the next invocation re-publishes the
// spool once the stream is back, and nothing is lost or doubled.
func TestDeadStreamSpoolsAndReplays(t *testing.T) {
	h := newHarness(t, nil)
	var down sync.Mutex
	dead := true
	h.store.SetPublishFault(func(ctx context.Context, _ []stream.Record) error {
		down.Lock()
		defer down.Unlock()
		if dead {
			return errors.New("connection refused")
		}
		return nil
	})
	h.start()
	h.api.waitNext()
	h.api.send(invokeEvent("8f507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
	h.telemetry(`{"time":"` + ts + `","type":"platform.start","record":{"requestId":"8f507cfc-a8a6-4697-b07a-ac58fc914c95"}}`)
	h.statsd("hits:5|c")
	h.telemetry(`{"time":"` + ts + `","type":"platform.runtimeDone","record":{"requestId":"8f507cfc-a8a6-4697-b07a-ac58fc914c95","status":"success"}}`)
	h.api.waitNext()
	files, _ := filepath.Glob(filepath.Join(h.spoolDir(), "*.rec"))
	if len(files) == 0 {
		t.Fatalf("nothing spooled at next; log:\n%s", h.log.String())
	}
	if len(h.store.Records()) != 0 {
		t.Fatal("a dead stream stored records")
	}
	down.Lock()
	dead = false
	down.Unlock()
	h.api.send(invokeEvent("9f507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
	eventually(t, func() bool { return decodeStore(t, h.store).metrics["hits@fn"] == 5 })
	h.telemetry(`{"time":"` + ts + `","type":"platform.start","record":{"requestId":"9f507cfc-a8a6-4697-b07a-ac58fc914c95"}}`)
	h.telemetry(`{"time":"` + ts + `","type":"platform.runtimeDone","record":{"requestId":"9f507cfc-a8a6-4697-b07a-ac58fc914c95","status":"success"}}`)
	h.api.waitNext()
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if got := decodeStore(t, h.store).metrics["hits@fn"]; got != 5 {
		t.Errorf("hits = %v after replay, want 5", got)
	}
	if files, _ := filepath.Glob(filepath.Join(h.spoolDir(), "*.rec")); len(files) != 0 {
		t.Errorf("spool still holds %v", files)
	}
}

// TestTimeoutWithoutTelemetry: where the Telemetry API is not supported
// (the classic emulator answers Telemetry.NotSupported), the extension
// calls next at once on INVOKE (background flushing), and a SHUTDOWN with
// reason timeout becomes aws.lambda.timeouts and an error log naming the
// request. Those are the function's: they carry its name even where
// LES_SOURCE gives the function's own items another default source.
func TestTimeoutWithoutTelemetry(t *testing.T) {
	for _, src := range []string{"", "host-a"} {
		t.Run("LES_SOURCE="+src, func(t *testing.T) {
			h := newHarness(t, map[string]string{"LES_SOURCE": src})
			h.api.telemetryErr = "Telemetry.NotSupported"
			h.start()
			if h.info.Telemetry != "" {
				t.Fatal("subscribed though the API refused")
			}
			h.api.waitNext()
			h.api.send(invokeEvent("af507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
			h.api.waitNext() // at once: nothing tells the extension when the runtime is done
			h.statsd("work:1|c")
			h.api.send(shutdownEvent("Timeout", time.Now().Add(2*time.Second)))
			if err := h.wait(); err != nil {
				t.Fatal(err)
			}
			got := decodeStore(t, h.store)
			work := "work@fn"
			if src != "" {
				work = "work@" + src
			}
			if got.metrics["aws.lambda.timeouts@fn"] != 1 || got.metrics[work] != 1 {
				t.Errorf("metrics %v, want aws.lambda.timeouts@fn and %s", got.metrics, work)
			}
			if len(got.logs) != 1 || got.logs[0].RequestID != "af507cfc-a8a6-4697-b07a-ac58fc914c95" || got.logs[0].Level != "ERROR" ||
				!strings.Contains(string(got.logs[0].Message), "timeout") || got.logs[0].Source != "fn" {
				t.Errorf("logs %+v", got.logs)
			}
		})
	}
}

// TestManagedInstances: on Lambda Managed Instances the extension
// registers for SHUTDOWN only and publishes in the background; a timeout
// names the request of the last platform.start.
func TestManagedInstances(t *testing.T) {
	h := newHarness(t, map[string]string{"AWS_LAMBDA_INITIALIZATION_TYPE": "lambda-managed-instances"})
	h.start()
	h.api.waitNext()
	h.api.mu.Lock()
	events := h.api.registerBody["events"]
	h.api.mu.Unlock()
	if !slices.Equal(events, []string{"SHUTDOWN"}) {
		t.Fatalf("events %v, want SHUTDOWN only", events)
	}
	h.telemetry(`[{"time":"` + ts + `","type":"platform.start","record":{"requestId":"r-a","functionArn":"arn:x"}},
	 {"time":"` + ts + `","type":"function","record":{"timestamp":"` + ts + `","level":"WARN","requestId":"r-a","message":"json log"}},
	 {"time":"` + ts + `","type":"platform.report","record":{"requestId":"r-a","status":"success","metrics":{"durationMs":7}}}]`)
	h.statsd("lmi:2|c")
	eventually(t, func() bool { return decodeStore(t, h.store).metrics["lmi@fn"] == 2 }) // in the background
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	got := decodeStore(t, h.store)
	if got.metrics["aws.lambda.invocations@fn"] != 1 || got.metrics["aws.lambda.duration@fn"] != 7 {
		t.Errorf("metrics %v", got.metrics)
	}
	if len(got.logs) != 1 || got.logs[0].Level != "WARN" || string(got.logs[0].Message) != "json log" {
		t.Errorf("logs %+v", got.logs)
	}
}

// TestConfigErrorInitError: with LES_ON_CONFIG_ERROR=fail a malformed
// LES_STREAM is reported with init/error Extension.ConfigInvalid after
// registering, and Run returns ErrConfig; by default
// (LES_ON_CONFIG_ERROR=disable) the extension logs the error and idles
// instead, and the function's invocations go on.
func TestConfigErrorInitError(t *testing.T) {
	for _, c := range []struct{ name, stream string }{
		{"scheme", "ftp://x"},
		{"no stream name", "kinesis://"},
		{"partitions", "nats://127.0.0.1:4222?partitions=x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, map[string]string{"LES_STREAM": c.stream, "LES_CONFIG": "", "LES_ON_CONFIG_ERROR": "fail"})
			go func() {
				h.done <- extension.Run(context.Background(), extension.Options{Getenv: func(k string) string { return h.env[k] }, Stderr: h.log})
			}()
			err := h.wait()
			if !errors.Is(err, extension.ErrConfig) {
				t.Fatalf("Run: %v", err)
			}
			h.api.mu.Lock()
			defer h.api.mu.Unlock()
			if len(h.api.initErrors) != 1 || h.api.initErrors[0].Type != "Extension.ConfigInvalid" ||
				!strings.Contains(fmt.Sprint(h.api.initErrors[0].Body["errorMessage"]), "LES_STREAM") {
				t.Fatalf("init/error calls %+v", h.api.initErrors)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		h := newHarness(t, map[string]string{"LES_CONFIG": "", "LES_ON_CONFIG_ERROR": "fail"})
		go func() {
			h.done <- extension.Run(context.Background(), extension.Options{Getenv: func(k string) string { return h.env[k] }, Stderr: h.log})
		}()
		if err := h.wait(); !errors.Is(err, extension.ErrConfig) || !strings.Contains(err.Error(), "neither LES_STREAM") {
			t.Fatalf("Run: %v", err)
		}
	})
	t.Run("default disables", func(t *testing.T) {
		h := newHarness(t, map[string]string{"LES_STREAM": "ftp://x", "LES_CONFIG": ""})
		go func() {
			h.done <- extension.Run(context.Background(), extension.Options{Getenv: func(k string) string { return h.env[k] }, Stderr: h.log})
		}()
		h.api.waitNext()
		h.api.send(invokeEvent("8f507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
		h.api.waitNext()
		h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
		if err := h.wait(); err != nil {
			t.Fatal(err)
		}
		h.api.mu.Lock()
		defer h.api.mu.Unlock()
		if len(h.api.initErrors) != 0 || !strings.Contains(h.log.String(), "les is disabled") {
			t.Fatalf("init errors %v; log %s", h.api.initErrors, h.log.String())
		}
	})
}

// TestNextFailsExitError: a failing next is reported with exit/error, the
// extension flushes what it holds and Run returns the error.
func TestNextFailsExitError(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.api.waitNext()
	h.statsd("before:1|c")
	h.api.mu.Lock()
	h.api.nextFails = true
	h.api.mu.Unlock()
	h.api.send(invokeEvent("8f507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
	err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "next") {
		t.Fatalf("Run: %v", err)
	}
	h.api.mu.Lock()
	calls := h.api.exitErrors
	h.api.mu.Unlock()
	if len(calls) != 1 || calls[0].Type != "Extension.Fatal" {
		t.Fatalf("exit/error calls %+v", calls)
	}
	if got := decodeStore(t, h.store).metrics["before@fn"]; got != 1 {
		t.Errorf("before = %v, want 1 (flushed on the way out)", got)
	}
}

// TestRegisterRefused: a register the API refuses is returned (no
// init/error is possible without an identifier).
func TestRegisterRefused(t *testing.T) {
	h := newHarness(t, nil)
	err := extension.Run(context.Background(), extension.Options{Name: "", Getenv: func(k string) string {
		if k == "AWS_LAMBDA_RUNTIME_API" {
			return "127.0.0.1:1" // nothing listens
		}
		return h.env[k]
	}, Stderr: h.log})
	if err == nil || !strings.Contains(err.Error(), "register") {
		t.Fatalf("Run: %v", err)
	}
}
