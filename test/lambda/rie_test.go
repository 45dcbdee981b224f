//go:build linux

// Package lambda_test runs the les extension from its layer zip inside
// the real AWS Lambda Runtime Interface Emulator, with a Go function
// (test/lambda/function) that emits StatsD, Wavefront and EMF on
// loopback, kinesalite as the stream, and reads the stream back.
//
// The emulator reads extensions from /opt/extensions and the function
// from /var/task: each run is inside its own mount namespace (unshare -m,
// as root) with temporary directories bound over /opt, /var/task and
// /tmp, so nothing outside the test's directories is touched. Without
// root, unshare, node or kinesalite the tests skip; with CI set they fail.
// (The RIE build, missing and moduleRoot are shared with the consumer's
// tests in rie_consumer_test.go.)

package lambda_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/wire"
)

var buildOnce struct {
	sync.Once
	dir string
	err error
}

// artifacts builds, once per test binary: the emulator, the layer zip (by
// scripts/layer.sh for this machine's architecture) and the function.
func artifacts(t *testing.T) (rie, layerZip, function string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "les-rie-build-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.dir = dir
		root := moduleRoot(t)
		arch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
		steps := []*exec.Cmd{
			exec.Command("bash", filepath.Join(root, "scripts", "layer.sh")),
			exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "bootstrap"), "./test/lambda/function"),
		}
		steps[0].Env = append(os.Environ(), "LES_LAYER_ARCHS="+arch, "LES_LAYER_OUT="+dir)
		steps[1].Env = append(os.Environ(), "CGO_ENABLED=0")
		for _, c := range steps {
			c.Dir = root
			if out, err := c.CombinedOutput(); err != nil {
				buildOnce.err = fmt.Errorf("%v: %v\n%s", c.Args, err, out)
				return
			}
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
	return consumerRIE(t), filepath.Join(buildOnce.dir, "les-extension-"+arch+".zip"), filepath.Join(buildOnce.dir, "bootstrap")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.dir != "" {
		os.RemoveAll(buildOnce.dir)
	}
	for _, p := range []string{netbridgeOnce.path, minextOnce.path} {
		if p != "" {
			os.RemoveAll(filepath.Dir(p))
		}
	}
	os.Exit(code)
}

// unzip extracts a layer zip into dir, as Lambda extracts layers to /opt.
func unzip(t *testing.T, zipPath, dir string) {
	t.Helper()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		dst := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, f.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// emulator is one running RIE.
type emulator struct {
	t      *testing.T
	invoke string // invocation URL (over the bridge's unix socket)
	hc     *http.Client
	cmd    *exec.Cmd
	out    *lockedBuffer
	done   chan struct{}
	fwds   []*proxy
	tmp    string // the directory bound over the sandbox's /tmp
}

// lockedBuffer collects the emulator's output; waitFor waits on it.
type lockedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced at every Write
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits until ok holds for the output, or until timeout or done.
func (l *lockedBuffer) waitFor(timeout time.Duration, done <-chan struct{}, ok func(string) bool) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		if ok(l.b.String()) {
			l.mu.Unlock()
			return true
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return ok(l.String())
		case <-timer.C:
			return false
		}
	}
}

// netbridgeOnce builds test/lambda/netbridge.
var netbridgeOnce struct {
	sync.Once
	path string
	err  error
}

func netbridge(t *testing.T) string {
	t.Helper()
	netbridgeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "les-netbridge-")
		if err != nil {
			netbridgeOnce.err = err
			return
		}
		netbridgeOnce.path = filepath.Join(dir, "netbridge")
		c := exec.Command("go", "build", "-o", netbridgeOnce.path, "./test/lambda/netbridge")
		c.Dir = moduleRoot(t)
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err != nil {
			netbridgeOnce.err = fmt.Errorf("build netbridge: %v\n%s", err, out)
		}
	})
	if netbridgeOnce.err != nil {
		t.Fatal(netbridgeOnce.err)
	}
	return netbridgeOnce.path
}

// minextOnce builds test/lambda/minext.
var minextOnce struct {
	sync.Once
	path string
	err  error
}

func minext(t *testing.T) string {
	t.Helper()
	minextOnce.Do(func() {
		dir, err := os.MkdirTemp("", "les-minext-")
		if err != nil {
			minextOnce.err = err
			return
		}
		minextOnce.path = filepath.Join(dir, "minext")
		c := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", minextOnce.path, "./test/lambda/minext")
		c.Dir = moduleRoot(t)
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err != nil {
			minextOnce.err = fmt.Errorf("build minext: %v\n%s", err, out)
		}
	})
	if minextOnce.err != nil {
		t.Fatal(minextOnce.err)
	}
	return minextOnce.path
}

// startEmulator runs the RIE with the layer in /opt and the function in
// /var/task, env added to its environment (which it passes on), in its
// own mount and network namespaces: the sandbox's loopback ports are its
// own, as in Lambda. Each of forward (host TCP addresses such as
// kinesalite's 127.0.0.1:PORT) is reachable at the same address inside,
// through a proxy (e.fwds, in order) the test may stop and start.
func startEmulator(t *testing.T, withExtension bool, env map[string]string, forward ...string) *emulator {
	t.Helper()
	ext := extNone
	if withExtension {
		ext = extLes
	}
	return startEmulatorExt(t, ext, env, forward...)
}

// What startEmulatorExt puts in /opt/extensions.
const (
	extNone = ""
	// extLes: the layer zip.
	extLes = "les"
	// extLesTimed: the layer's binary moved to /opt/les-bin/les, and
	// /opt/extensions/les a shell script that exports
	// LES_EXEC_UNIX_NS=$(date +%s%N) and execs it (same name, so the
	// emulator knows it as the external extension "les"): the extension's
	// ready line then counts its init from its exec, not from its main.
	extLesTimed = "les-timed"
	// extMinimal: test/lambda/minext, an extension that does nothing but
	// call next.
	extMinimal = "minimal"
)

// startEmulatorExt is startEmulator with the extension (or none) to run.
func startEmulatorExt(t *testing.T, ext string, env map[string]string, forward ...string) *emulator {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "the emulator tests need root (unshare -m -n and bind mounts)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		missing(t, "unshare not found")
	}
	rie, layer, fn := artifacts(t)
	bridge := netbridge(t)
	base, err := os.MkdirTemp("", "les-rie-") // short: unix socket paths live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	opt, task, tmp := filepath.Join(base, "opt"), filepath.Join(base, "task"), filepath.Join(base, "tmp")
	for _, d := range []string{opt, task, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(tmp, 0o1777); err != nil { // runtime and extensions may run unprivileged
		t.Fatal(err)
	}
	switch ext {
	case extLes:
		unzip(t, layer, opt)
	case extLesTimed:
		unzip(t, layer, opt)
		if err := os.MkdirAll(filepath.Join(opt, "les-bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(opt, "extensions", "les"), filepath.Join(opt, "les-bin", "les")); err != nil {
			t.Fatal(err)
		}
		wrapper := "#!/bin/sh\nexport LES_EXEC_UNIX_NS=$(date +%s%N)\nexec /opt/les-bin/les \"$@\"\n"
		if err := os.WriteFile(filepath.Join(opt, "extensions", "les"), []byte(wrapper), 0o755); err != nil {
			t.Fatal(err)
		}
	case extMinimal:
		copyFile(t, minext(t), filepath.Join(opt, "extensions", "minext"))
	}
	copyFile(t, fn, filepath.Join(task, "bootstrap"))
	// The emulator and the bridge must be reachable once /tmp is covered.
	copyFile(t, rie, filepath.Join(opt, ".rie", "aws-lambda-rie"))
	copyFile(t, bridge, filepath.Join(opt, ".rie", "netbridge"))
	e := &emulator{t: t, out: &lockedBuffer{}, done: make(chan struct{}), tmp: tmp}
	args := []string{}
	for i, addr := range forward {
		sock := filepath.Join(opt, ".rie", fmt.Sprintf("fwd%d.sock", i))
		p := newProxy(t, sock, addr)
		e.fwds = append(e.fwds, p)
		args = append(args, "-fwd", fmt.Sprintf("tcp:%s=unix:/opt/.rie/fwd%d.sock", addr, i))
	}
	invokeSock := filepath.Join(opt, ".rie", "invoke.sock")
	args = append(args, "-fwd", "unix:/opt/.rie/invoke.sock=tcp:127.0.0.1:9001")
	// /var/task may not exist on this machine: a tmpfs on /var, in the
	// namespace only, gives it a place.
	script := `set -e
[ -d /var/task ] || { mount -t tmpfs tmpfs /var; mkdir -p /var/task; }
mount --bind "$OPT" /opt
mount --bind "$TASK" /var/task
mount --bind "$TMPD" /tmp
cd /var/task
export PWD=/var/task
exec /opt/.rie/netbridge "$@" -- /opt/.rie/aws-lambda-rie --runtime-interface-emulator-address 127.0.0.1:9001 --runtime-api-address 127.0.0.1:9000 /var/task/bootstrap`
	cmd := exec.Command("unshare", append([]string{"-m", "-n", "--propagation", "private", "sh", "-c", script, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), "OPT="+opt, "TASK="+task, "TMPD="+tmp,
		"AWS_LAMBDA_FUNCTION_NAME=fn", "AWS_LAMBDA_FUNCTION_TIMEOUT=2", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	e.cmd = cmd
	e.invoke = "http://sandbox/2015-03-31/functions/function/invocations"
	e.hc = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", invokeSock)
	}}}
	cmd.Stdout, cmd.Stderr = e.out, e.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(e.done) }()
	t.Cleanup(e.stop)
	// The bridge announces the invoke socket once the emulator listens.
	if !e.out.waitFor(20*time.Second, e.done, func(s string) bool { return strings.Contains(s, "netbridge: ready") }) {
		select {
		case <-e.done:
			t.Fatalf("emulator exited:\n%s", e.out.String())
		default:
		}
		t.Fatalf("emulator not listening after 20s:\n%s", e.out.String())
	}
	return e
}

func (e *emulator) stop() {
	if e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	if e.t.Failed() {
		e.t.Logf("emulator output:\n%s", e.out.String())
	}
	e.hc.CloseIdleConnections()
}

// call invokes the function and returns its answer and the time the
// caller waited.
func (e *emulator) call(payload string) (string, time.Duration) {
	e.t.Helper()
	start := time.Now()
	res, err := e.hc.Post(e.invoke, "application/json", strings.NewReader(payload))
	if err != nil {
		e.t.Fatalf("invoke: %v\n%s", err, e.out.String())
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return string(b), time.Since(start)
}

// readStream reads every record of a Kinesis stream until until says it
// has what it needs (or 30s pass), decoding each with internal/wire.
func readStream(t *testing.T, endpoint, name string, partitions int, until func(got map[string]float64, logs []model.Log) bool) (map[string]float64, []model.Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := kinesis.Open(ctx, kinesis.Config{Stream: name, Endpoint: endpoint, PollInterval: kinesis.MinPollInterval}, partitions, kinesis.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[string]float64{}
	var logs []model.Log
	var dec wire.Decoder
	err = st.Consume(ctx, stream.ConsumeOptions{FromStart: true}, func(_ context.Context, ds []stream.Delivery) error {
		for _, d := range ds {
			var b model.Batch
			if _, err := dec.Decode(&b, d.Data); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			for _, m := range b.Metrics {
				got[m.Name+"@"+m.Source] += m.Value
				got["#"+m.Name+"@"+m.Source]++
			}
			for _, l := range b.Logs {
				l.Message = bytes.Clone(l.Message)
				l.Source, l.RequestID, l.Level = strings.Clone(l.Source), strings.Clone(l.RequestID), strings.Clone(l.Level)
				logs = append(logs, l)
			}
		}
		if until(got, logs) {
			cancel()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return got, logs
}

// kinesisStream starts kinesalite with one stream for the test.
func kinesisStream(t *testing.T) (endpoint, name string) {
	endpoint = kinesistest.Start(t)
	kinesistest.AWSEnv(t)
	name = "les-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	kinesistest.CreateStream(t, kinesistest.Client(endpoint), name, 2)
	return endpoint, name
}

// invokeN invokes the test function n times (invocation i emits StatsD
// timer i, Wavefront i and EMF 2i) and returns the totals the stream must
// then hold and a check of them.
func invokeN(t *testing.T, e *emulator, n int) (want map[string]float64, has func(map[string]float64) bool) {
	t.Helper()
	sum := 0
	for i := 1; i <= n; i++ {
		if ans, _ := e.call(fmt.Sprintf(`{"n":%d}`, i)); ans != `"ok"` {
			t.Fatalf("invocation %d answered %s", i, ans)
		}
		sum += i
	}
	want = map[string]float64{
		"rie.count@fn": float64(n), "#rie.latency@fn": float64(n), "rie.latency@fn": float64(sum),
		"rie.wf@rie-fn": float64(sum), "RieEmf@fn": float64(2 * sum),
	}
	return want, func(got map[string]float64) bool {
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
}

// TestEmulatorClassic: the classic emulator (INVOKE and SHUTDOWN; the
// Telemetry API answers Telemetry.NotSupported). 20 invocations emit over
// StatsD, Wavefront and EMF; the stream holds exactly what they emitted.
// Then an invocation runs into the function timeout: the emulator sends
// SHUTDOWN with reason Timeout, and the extension's final flush publishes
// aws.lambda.timeouts = 1 and an error log with the request id.
func TestEmulatorClassic(t *testing.T) {
	endpoint, name := kinesisStream(t)
	e := startEmulator(t, true, map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2",
		"AWS_ENDPOINT_URL_KINESIS": endpoint, "LES_LOG_LEVEL": "info"}, hostPort(endpoint))
	want, has := invokeN(t, e, 20)
	got, _ := readStream(t, endpoint, name, 2, func(got map[string]float64, _ []model.Log) bool { return has(got) })
	if !has(got) {
		t.Fatalf("stream holds %v, want %v", got, want)
	}

	ans, _ := e.call(`{"n":0,"sleep_ms":3000}`)
	if !strings.Contains(ans, "Task timed out") {
		t.Fatalf("timeout invocation answered %s", ans)
	}
	var timeoutLog *model.Log
	got, logs := readStream(t, endpoint, name, 2, func(got map[string]float64, logs []model.Log) bool {
		return got["aws.lambda.timeouts@fn"] >= 1 && len(logs) > 0
	})
	for i := range logs {
		if logs[i].Level == "ERROR" && strings.Contains(string(logs[i].Message), "timeout") {
			timeoutLog = &logs[i]
		}
	}
	if got["aws.lambda.timeouts@fn"] != 1 || timeoutLog == nil || timeoutLog.RequestID == "" {
		t.Fatalf("after the timeout: metrics %v, logs %+v", got, logs)
	}
	if !has(got) { // nothing published twice
		t.Errorf("after the timeout the stream holds %v", got)
	}
	if out := e.out.String(); strings.Contains(out, "level=ERROR") {
		t.Errorf("the extension logged errors:\n%s", out)
	}
}

// TestEmulatorManagedInstances: with AWS_LAMBDA_MAX_CONCURRENCY set the
// emulator runs Lambda Managed Instances: the extension registers for
// SHUTDOWN only, the Telemetry API delivers platform and function
// records, and the stream gets the function's metrics, its log lines and
// aws.lambda.invocations from platform.report, exactly.
func TestEmulatorManagedInstances(t *testing.T) {
	endpoint, name := kinesisStream(t)
	e := startEmulator(t, true, map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2",
		"AWS_ENDPOINT_URL_KINESIS": endpoint, "LES_LOG_LEVEL": "info", "AWS_LAMBDA_MAX_CONCURRENCY": "1"}, hostPort(endpoint))
	const n = 10
	for i := 1; i <= n; i++ {
		// With concurrency 1 the emulator refuses an invocation until
		// the runtime is back at next (Runtime.Unavailable): retry.
		for try := 0; ; try++ {
			ans, _ := e.call(fmt.Sprintf(`{"n":%d}`, i))
			if ans == `"ok"` {
				break
			}
			if !strings.Contains(ans, "Runtime.Unavailable") || try == 200 {
				t.Fatalf("invocation %d answered %s", i, ans)
			}
			time.Sleep(5 * time.Millisecond) // pacing the retry, not timing
		}
	}
	handled := func(logs []model.Log) int {
		c := 0
		for _, l := range logs {
			if strings.HasPrefix(string(l.Message), "handled n=") {
				c++
			}
		}
		return c
	}
	got, logs := readStream(t, endpoint, name, 2, func(got map[string]float64, logs []model.Log) bool {
		return got["aws.lambda.invocations@fn"] == n && got["rie.count@fn"] == n && handled(logs) == n
	})
	if got["aws.lambda.invocations@fn"] != n || got["rie.count@fn"] != n || got["rie.wf@rie-fn"] != 55 || handled(logs) != n {
		t.Fatalf("stream holds %v and %d function logs, want %d invocations, counts and logs", got, handled(logs), n)
	}
}

// lines returns the lines of s containing sub (for failure messages).
func lines(s, sub string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}
