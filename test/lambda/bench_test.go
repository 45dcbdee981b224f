//go:build linux

package lambda_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestEmulatorMeasure prints (it asserts nothing about speed) what the
// extension costs under the classic emulator over LES_LAMBDA_BENCH
// invocations (e.g. 1000) per case: the latency the caller sees with no
// extension, with test/lambda/minext (an extension that only calls next:
// the emulator's share of any extension) and with les, for a function
// that emits over TCP, over UDP, only two StatsD datagrams (quiet) or
// nothing (silent); les also with a dead stream endpoint, and with
// LES_STREAM=kafka:// (kfake; healthy and dead endpoint). Post-runtime
// time is REPORT Duration − RTDONE duration in the emulator's log; les'
// rows add its init time and idle RSS. LES_LAMBDA_BENCH_ROUNDS=R (default
// 1) runs all cases R times, interleaved, and prints each p50 and p99 of
// every round (the machine is shared: the spread is the noise);
// LES_LAMBDA_BENCH_CASES=regexp keeps only the cases it matches.
// docs/performance.md quotes its output. Run:
//
//	LES_LAMBDA_BENCH=1000 LES_LAMBDA_BENCH_ROUNDS=3 go test -count=1 -run TestEmulatorMeasure -v ./test/lambda/
//
// and for the TCP rows only (Kafka, Kinesis and no extension):
//
//	LES_LAMBDA_BENCH=1000 LES_LAMBDA_BENCH_ROUNDS=3 LES_LAMBDA_BENCH_CASES='TCP$' go test -count=1 -run TestEmulatorMeasure -v ./test/lambda/
func TestEmulatorMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LES_LAMBDA_BENCH"))
	if n <= 0 {
		t.Skip("set LES_LAMBDA_BENCH=N to measure over N invocations")
	}
	rounds, _ := strconv.Atoi(os.Getenv("LES_LAMBDA_BENCH_ROUNDS"))
	rounds = max(rounds, 1)
	endpoint, name := kinesisStream(t)
	dead := fmt.Sprintf("http://%s", closedAddr(t))
	healthy := map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2", "AWS_ENDPOINT_URL_KINESIS": endpoint, "LES_LOG_LEVEL": "info"}
	fwd := []string{hostPort(endpoint)}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaAddr := kc.ListenAddrs()[0]
	kafkaHealthy := map[string]string{"LES_STREAM": "kafka://" + kafkaAddr + "/rie?partitions=2", "LES_LOG_LEVEL": "info"}
	kafkaDead := map[string]string{"LES_STREAM": "kafka://" + closedAddr(t) + "/rie?partitions=2", "LES_LOG_LEVEL": "info"}
	const tcp, udp, quiet, silent = `{"n":1}`, `{"n":1,"udp":true}`, `{"quiet":true}`, `{"silent":true}`
	type benchCase struct {
		name, ext string
		env       map[string]string
		fwd       []string
		ev        string
	}
	cases := []benchCase{
		{"no extension, TCP", extNone, nil, nil, tcp},
		{"les, healthy, TCP", extLes, healthy, fwd, tcp},
		{"les, dead endpoint, TCP", extLes, map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2", "AWS_ENDPOINT_URL_KINESIS": dead, "LES_LOG_LEVEL": "info"}, nil, tcp},
		// LES_STREAM=kafka:// (kafkalite), kfake forwarded into the
		// sandbox; dead: nothing listens at the address in the sandbox.
		{"les, kafka, TCP", extLes, kafkaHealthy, []string{kafkaAddr}, tcp},
		{"les, kafka, dead endpoint, TCP", extLes, kafkaDead, nil, tcp},
		// The same function emitting over UDP only: its emission costs the
		// same whether les listens or not.
		{"no extension, UDP", extNone, nil, nil, udp},
		{"minimal ext, UDP", extMinimal, nil, nil, udp},
		{"les, healthy, UDP", extLes, healthy, fwd, udp},
		// Two StatsD datagrams only.
		{"no extension, quiet", extNone, nil, nil, quiet},
		{"minimal ext, quiet", extMinimal, nil, nil, quiet},
		{"les, healthy, quiet", extLes, healthy, fwd, quiet},
		// Nothing emitted: what the emulator, and an extension woken for
		// every INVOKE, cost by themselves.
		{"no extension, silent", extNone, nil, nil, silent},
		{"minimal ext, silent", extMinimal, nil, nil, silent},
		{"les, healthy, silent", extLes, healthy, fwd, silent},
		// les' default is one P (LES_GOMAXPROCS); with two, its scheduler
		// wakes a second thread whenever it readies a goroutine.
		{"les, silent, 2 Ps", extLes, with(healthy, "LES_GOMAXPROCS", "2"), fwd, silent},
		{"les, healthy, UDP, 2 Ps", extLes, with(healthy, "LES_GOMAXPROCS", "2"), fwd, udp},
	}
	if re := os.Getenv("LES_LAMBDA_BENCH_CASES"); re != "" { // e.g. 'silent|quiet'
		keep := regexp.MustCompile(re)
		cases = slices.DeleteFunc(cases, func(c benchCase) bool { return !keep.MatchString(c.name) })
	}
	type result struct{ p50, p99, post50, post99 []string }
	results := make([]result, len(cases))
	for round := range rounds {
		for i, c := range cases {
			e := startEmulatorExt(t, c.ext, c.env, c.fwd...)
			e.call(c.ev) // init happens at the first invoke
			var lat []time.Duration
			for range n {
				_, d := e.call(c.ev)
				lat = append(lat, d)
			}
			out := e.out.String()
			post := postRuntime(out)
			r := &results[i]
			r.p50, r.p99 = append(r.p50, pct(lat, 50)), append(r.p99, pct(lat, 99))
			r.post50, r.post99 = append(r.post50, pct(post, 50)), append(r.post99, pct(post, 99))
			line := fmt.Sprintf("round %d %-31s latency p50 %s p99 %s | post-runtime p50 %s p99 %s (%d samples) | load %s",
				round+1, c.name, pct(lat, 50), pct(lat, 99), pct(post, 50), pct(post, 99), len(post), loadavg())
			if c.ext == extLes {
				if m := regexp.MustCompile(`les extension ready.*init_ms=([0-9.]+)`).FindStringSubmatch(out); m != nil {
					line += " | init " + m[1] + " ms"
				}
				line += " | RSS " + e.extensionRSS()
			}
			e.stop()
			if c.ext == extLes {
				// What the stream had not taken by the end of SHUTDOWN:
				// none when healthy; a dead endpoint's batches.
				spooled, _ := filepath.Glob(filepath.Join(e.tmp, "les", "spool", "*.rec"))
				line += fmt.Sprintf(" | spooled at exit %d", len(spooled))
			}
			t.Log(line)
		}
	}
	for i, c := range cases {
		r := results[i]
		t.Logf("%-31s latency p50 %s | p99 %s | post-runtime p50 %s | p99 %s", c.name,
			strings.Join(r.p50, " "), strings.Join(r.p99, " "), strings.Join(r.post50, " "), strings.Join(r.post99, " "))
	}
}

// loadavg is the 1-minute load average (the machine is shared).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
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
// from its exec (the layer's binary behind a wrapper that records the
// time, extLesTimed): main (the Go runtime and package initialisation
// before it), configured, registered, spool opened, listening (17
// sockets), "registered+listening" (the later of the two, per start:
// issue 8's init), subscribed (the classic
// emulator answers Telemetry.NotSupported) and ready (next follows).
// docs/performance.md quotes its output. Run:
//
//	LES_LAMBDA_INIT_SAMPLES=20 go test -count=1 -run TestEmulatorInit -v ./test/lambda/
func TestEmulatorInit(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LES_LAMBDA_INIT_SAMPLES"))
	if n <= 0 {
		t.Skip("set LES_LAMBDA_INIT_SAMPLES=N to measure over N starts")
	}
	endpoint, name := kinesisStream(t)
	steps := []string{"main", "configured", "registered", "spool opened", "listening", "registered+listening", "subscribed", "ready"}
	phaseRE := regexp.MustCompile(`msg="les extension init" phase="?([a-z ]+?)"? ms=([0-9.]+)`)
	readyRE := regexp.MustCompile(`les extension ready.*init_ms=([0-9.]+)`)
	got := map[string][]time.Duration{}
	ms := func(s string) time.Duration {
		f, _ := strconv.ParseFloat(s, 64)
		return time.Duration(f * float64(time.Millisecond))
	}
	var loads []string
	for range n {
		e := startEmulatorExt(t, extLesTimed, map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2",
			"AWS_ENDPOINT_URL_KINESIS": endpoint, "LES_LOG_LEVEL": "debug"}, hostPort(endpoint))
		loads = append(loads, loadavg())
		e.call(`{"n":1}`)
		e.stop()
		out := e.out.String()
		one := map[string]time.Duration{}
		for _, m := range phaseRE.FindAllStringSubmatch(out, -1) {
			one[m[1]] = ms(m[2])
		}
		if m := readyRE.FindStringSubmatch(out); m != nil {
			one["ready"] = ms(m[1])
		}
		if r, ok := one["registered"]; ok {
			if l, ok := one["listening"]; ok {
				one["registered+listening"] = max(r, l)
			}
		}
		for k, v := range one {
			got[k] = append(got[k], v)
		}
	}
	for _, s := range steps {
		t.Logf("%-20s p50 %s p90 %s (%d samples)", s, pct(got[s], 50), pct(got[s], 90), len(got[s]))
	}
	t.Logf("load averages at the starts: %s", strings.Join(loads, " "))
}

// with is m plus k=v.
func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}
