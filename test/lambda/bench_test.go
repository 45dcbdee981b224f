//go:build linux

package lambda_test

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEmulatorMeasure prints (it asserts nothing about speed) what the
// extension costs under the classic emulator over LES_LAMBDA_BENCH
// invocations (e.g. 1000): the latency the caller sees with and without
// the extension, the post-runtime time (REPORT Duration − RTDONE
// duration in the emulator's log), with a healthy stream and with a dead
// endpoint, plus the extension's init time and idle RSS. docs/performance.md
// quotes its output. Run:
//
//	LES_LAMBDA_BENCH=1000 go test -run TestEmulatorMeasure -v ./test/lambda/
func TestEmulatorMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LES_LAMBDA_BENCH"))
	if n <= 0 {
		t.Skip("set LES_LAMBDA_BENCH=N to measure over N invocations")
	}
	endpoint, name := kinesisStream(t)
	dead := fmt.Sprintf("http://%s", closedAddr(t))
	healthy := map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2", "AWS_ENDPOINT_URL_KINESIS": endpoint, "LES_LOG_LEVEL": "info"}
	cases := []struct {
		name string
		ext  bool
		env  map[string]string
		fwd  []string
		ev   string
	}{
		{"no extension", false, nil, nil, `{"n":1}`},
		{"les, healthy kinesis", true, healthy, []string{hostPort(endpoint)}, `{"n":1}`},
		{"les, dead endpoint", true, map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2", "AWS_ENDPOINT_URL_KINESIS": dead, "LES_LOG_LEVEL": "info"}, nil, `{"n":1}`},
		// The same function emitting over UDP only: its emission costs the
		// same whether les listens or not.
		{"no extension, UDP", false, nil, nil, `{"n":1,"udp":true}`},
		{"les, healthy, UDP", true, healthy, []string{hostPort(endpoint)}, `{"n":1,"udp":true}`},
		// Emitting nothing: what the emulator and an extension that is
		// woken for every INVOKE cost by themselves.
		{"no extension, quiet", false, nil, nil, `{"quiet":true}`},
		{"les, healthy, quiet", true, healthy, []string{hostPort(endpoint)}, `{"quiet":true}`},
	}
	for _, c := range cases {
		e := startEmulator(t, c.ext, c.env, c.fwd...)
		e.call(c.ev) // init happens at the first invoke
		var lat []time.Duration
		for range n {
			_, d := e.call(c.ev)
			lat = append(lat, d)
		}
		out := e.out.String()
		post := postRuntime(out)
		line := fmt.Sprintf("%-22s latency p50 %s p99 %s | post-runtime p50 %s p99 %s (%d samples)",
			c.name, pct(lat, 50), pct(lat, 99), pct(post, 50), pct(post, 99), len(post))
		if c.ext {
			if m := regexp.MustCompile(`les extension ready.*init_ms=([0-9.]+)`).FindStringSubmatch(out); m != nil {
				line += " | init " + m[1] + " ms"
			}
			line += " | RSS " + e.extensionRSS()
		}
		t.Log(line)
		e.stop()
	}
}

func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

var (
	rtdone = regexp.MustCompile(`RTDONE\(status: [a-z]+, produced bytes: \d+, duration: ([0-9.]+)ms\)`)
	report = regexp.MustCompile(`REPORT RequestId: \S+\s+Duration: ([0-9.]+) ms`)
)

// postRuntime pairs each RTDONE line of the emulator's log with the next
// REPORT line: REPORT's Duration includes the extensions' time after the
// runtime was done.
func postRuntime(log string) []time.Duration {
	var out []time.Duration
	rt := -1.0
	for _, l := range strings.Split(log, "\n") {
		if m := rtdone.FindStringSubmatch(l); m != nil {
			rt, _ = strconv.ParseFloat(m[1], 64)
			continue
		}
		if m := report.FindStringSubmatch(l); m != nil && rt >= 0 {
			d, _ := strconv.ParseFloat(m[1], 64)
			out = append(out, time.Duration((d-rt)*float64(time.Millisecond)))
			rt = -1
		}
	}
	return out
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return s[max(i, 0)].Round(10 * time.Microsecond).String()
}

// extensionRSS is VmRSS of this emulator's /opt/extensions/les.
func (e *emulator) extensionRSS() string {
	for _, pid := range e.sandboxProcs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.HasPrefix(string(b), "/opt/extensions/les") {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "?"
}

// TestEmulatorInit prints (it asserts nothing about speed) the
// extension's init over LES_LAMBDA_INIT_SAMPLES emulator starts (e.g.
// 20): p50 and p90 of each step the extension logs at debug level, in ms
// from its main to registered, spool opened, listening (17 sockets),
// subscribed (the classic emulator answers Telemetry.NotSupported) and
// ready. docs/performance.md quotes its output. Run:
//
//	LES_LAMBDA_INIT_SAMPLES=20 go test -count=1 -run TestEmulatorInit -v ./test/lambda/
func TestEmulatorInit(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LES_LAMBDA_INIT_SAMPLES"))
	if n <= 0 {
		t.Skip("set LES_LAMBDA_INIT_SAMPLES=N to measure over N starts")
	}
	endpoint, name := kinesisStream(t)
	steps := []string{"configured", "registered", "spool opened", "listening", "subscribed"}
	phaseRE := regexp.MustCompile(`msg="les extension init" phase="?([a-z ]+?)"? ms=([0-9.]+)`)
	readyRE := regexp.MustCompile(`les extension ready.*init_ms=([0-9.]+)`)
	got := map[string][]time.Duration{}
	ms := func(s string) time.Duration {
		f, _ := strconv.ParseFloat(s, 64)
		return time.Duration(f * float64(time.Millisecond))
	}
	for range n {
		e := startEmulator(t, true, map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2",
			"AWS_ENDPOINT_URL_KINESIS": endpoint, "LES_LOG_LEVEL": "debug"}, hostPort(endpoint))
		e.call(`{"n":1}`)
		e.stop()
		out := e.out.String()
		for _, m := range phaseRE.FindAllStringSubmatch(out, -1) {
			got[m[1]] = append(got[m[1]], ms(m[2]))
		}
		if m := readyRE.FindStringSubmatch(out); m != nil {
			got["ready"] = append(got["ready"], ms(m[1]))
		}
	}
	for _, s := range append(steps, "ready") {
		t.Logf("%-13s p50 %s p90 %s (%d samples)", s, pct(got[s], 50), pct(got[s], 90), len(got[s]))
	}
}
