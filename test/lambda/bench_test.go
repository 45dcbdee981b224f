//go:build linux

package lambda_test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
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
// Each latency is split with the function's stamp into before, in and
// after its handler (stamp), and each process's CPU time per invocation
// is printed. The "MI" cases run the emulator as Lambda Managed
// Instances (AWS_LAMBDA_MAX_CONCURRENCY), "raw minimal ext" is minext
// without net/http's Transport (MINEXT_RAW), and the SCHED_BATCH and
// nice cases reschedule les' threads after init. LES_LAMBDA_BENCH_BLOCK=B
// runs the cases of one emulator mode and workload at once, in turns of B
// invocations (paired: the load's drift falls on all alike), and the
// summary adds each case's latency over the no-extension case of its
// round. LES_LAMBDA_BENCH_PERF=DIR records les with perf during the
// measured invocations. docs/performance.md quotes its output. Run:
//
//	LES_LAMBDA_BENCH=1000 LES_LAMBDA_BENCH_ROUNDS=3 go test -count=1 -run TestEmulatorMeasure -v ./test/lambda/
//
// for the TCP rows only (Kafka, Kinesis and no extension):
//
//	LES_LAMBDA_BENCH=1000 LES_LAMBDA_BENCH_ROUNDS=3 LES_LAMBDA_BENCH_CASES='TCP$' go test -count=1 -run TestEmulatorMeasure -v ./test/lambda/
//
// and paired, split, with Managed Instances:
//
//	LES_LAMBDA_BENCH=1000 LES_LAMBDA_BENCH_ROUNDS=3 LES_LAMBDA_BENCH_BLOCK=100 LES_LAMBDA_BENCH_CASES='^(MI |raw )?(no extension|minimal ext|les, healthy), (TCP|UDP|quiet|silent)$' go test -count=1 -run TestEmulatorMeasure -v ./test/lambda/
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
	// stamp: the function answers "ok <start> <end>" (its handler's
	// wall clock), splitting each latency into before, in and after the
	// handler (stamped).
	const tcp, udp, quiet, silent = `{"n":1,"stamp":true}`, `{"n":1,"udp":true,"stamp":true}`, `{"quiet":true,"stamp":true}`, `{"silent":true,"stamp":true}`
	// mi: with AWS_LAMBDA_MAX_CONCURRENCY the emulator runs Lambda Managed
	// Instances, where an extension registers for SHUTDOWN only and is not
	// in the invoke path. Concurrency 2: aws-lambda-go then keeps a second
	// worker in next, so a back-to-back invocation finds a ready runtime
	// (with 1 the emulator answers Runtime.Unavailable until the worker is
	// back; such answers are retried and counted, never timed).
	mi := map[string]string{"AWS_LAMBDA_MAX_CONCURRENCY": "2"}
	miHealthy := with(healthy, "AWS_LAMBDA_MAX_CONCURRENCY", "2")
	raw := map[string]string{"MINEXT_RAW": "1"}
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
		// Lambda Managed Instances (LES_LAMBDA_BENCH_CASES=^MI).
		{"MI no extension, TCP", extNone, mi, nil, tcp},
		{"MI les, healthy, TCP", extLes, miHealthy, fwd, tcp},
		{"MI no extension, UDP", extNone, mi, nil, udp},
		{"MI minimal ext, UDP", extMinimal, mi, nil, udp},
		{"MI les, healthy, UDP", extLes, miHealthy, fwd, udp},
		{"MI no extension, quiet", extNone, mi, nil, quiet},
		{"MI minimal ext, quiet", extMinimal, mi, nil, quiet},
		{"MI les, healthy, quiet", extLes, miHealthy, fwd, quiet},
		// Experiments (item 3 of the latency analysis): les' threads set,
		// from outside after its init, to SCHED_BATCH (a woken les thread
		// does not preempt the running function) or nice 10.
		{"les, healthy, UDP, SCHED_BATCH", extLes, healthy, fwd, udp},
		{"les, healthy, UDP, nice 10", extLes, healthy, fwd, udp},
		{"MI les, healthy, UDP, SCHED_BATCH", extLes, miHealthy, fwd, udp},
		// minext calling next over a connection of its own goroutine
		// (no net/http Transport goroutines): how much of the emulator's
		// hold is the extension's HTTP client.
		{"raw minimal ext, UDP", extMinimal, raw, nil, udp},
		{"raw minimal ext, quiet", extMinimal, raw, nil, quiet},
		{"raw minimal ext, silent", extMinimal, raw, nil, silent},
	}
	// sched names the scheduling experiment of a case: chrt/renice
	// arguments applied to every thread of les after the first invocation.
	sched := map[string][]string{
		"les, healthy, UDP, SCHED_BATCH":    {"chrt", "-b", "-p", "0"},
		"les, healthy, UDP, nice 10":        {"renice", "-n", "10", "-p"},
		"MI les, healthy, UDP, SCHED_BATCH": {"chrt", "-b", "-p", "0"},
	}
	if re := os.Getenv("LES_LAMBDA_BENCH_CASES"); re != "" { // e.g. 'silent|quiet'
		keep := regexp.MustCompile(re)
		cases = slices.DeleteFunc(cases, func(c benchCase) bool { return !keep.MatchString(c.name) })
	}
	// base is the index of the case without an extension for the same
	// emulator and workload (-1: none kept), for the added latency.
	base := make([]int, len(cases))
	for i, c := range cases {
		base[i] = slices.IndexFunc(cases, func(b benchCase) bool {
			return b.ext == extNone && b.ev == c.ev && (b.env["AWS_LAMBDA_MAX_CONCURRENCY"] == "") == (c.env["AWS_LAMBDA_MAX_CONCURRENCY"] == "")
		})
	}
	type result struct {
		p50, p99, post50, post99, before, in, after []string
		l50, l99                                    []time.Duration
	}
	results := make([]result, len(cases))
	// groups run together: by default each case alone, n invocations back
	// to back; with LES_LAMBDA_BENCH_BLOCK=B the cases of one emulator
	// mode and workload (e.g. MI, UDP: none, minimal, les) run at once, in
	// turns of B invocations each, so that the shared machine's load
	// drifts over all of them alike.
	block, _ := strconv.Atoi(os.Getenv("LES_LAMBDA_BENCH_BLOCK"))
	var groups [][]int
	if block <= 0 {
		block = n
		for i := range cases {
			groups = append(groups, []int{i})
		}
	} else {
		at := map[string]int{}
		for i, c := range cases {
			k := fmt.Sprint(c.ev, c.env["AWS_LAMBDA_MAX_CONCURRENCY"])
			if g, ok := at[k]; ok {
				groups[g] = append(groups[g], i)
				continue
			}
			at[k] = len(groups)
			groups = append(groups, []int{i})
		}
	}
	type run struct {
		e                      *emulator
		lat, before, in, after []time.Duration
		retries                int
		cpu                    map[string]int64
	}
	for round := range rounds {
		for _, g := range groups {
			runs := make([]*run, len(g))
			for j, i := range g {
				c := cases[i]
				e := startEmulatorExt(t, c.ext, c.env, c.fwd...)
				e.stamped(c.ev) // init happens at the first invoke
				if args, ok := sched[c.name]; ok {
					e.schedExtension(args)
				}
				runs[j] = &run{e: e, cpu: map[string]int64{}}
			}
			// LES_LAMBDA_BENCH_PERF=DIR: perf record (call graphs) of les
			// during the measured invocations, DIR/<round>-<case>.data
			// (symbols: perf report --symfs=ROOT with an unstripped build
			// of the same tree at ROOT/opt/extensions/les).
			var perfs []*exec.Cmd
			if dir := os.Getenv("LES_LAMBDA_BENCH_PERF"); dir != "" {
				for j, i := range g {
					if pid := runs[j].e.extensionPID(); cases[i].ext == extLes && pid > 0 {
						name := regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(cases[i].name, "_")
						pc := exec.Command("perf", "record", "-q", "-F", "2999", "-g", "-p", strconv.Itoa(pid),
							"-o", filepath.Join(dir, fmt.Sprintf("%d-%s.data", round+1, name)))
						if err := pc.Start(); err != nil {
							t.Fatal(err)
						}
						perfs = append(perfs, pc)
					}
				}
			}
			for done := 0; done < n; done += block {
				for j, i := range g {
					r, c := runs[j], cases[i]
					cpu0 := r.e.sandboxCPU()
					for range min(block, n-done) {
						s := r.e.stamped(c.ev)
						r.lat, r.before, r.in, r.after = append(r.lat, s.latency), append(r.before, s.before), append(r.in, s.in), append(r.after, s.after)
						r.retries += s.retries
					}
					for k, v := range r.e.sandboxCPU() {
						r.cpu[k] += v - cpu0[k]
					}
				}
			}
			for _, pc := range perfs {
				_ = pc.Process.Signal(os.Interrupt)
				_ = pc.Wait()
			}
			for j, i := range g {
				c, e, lat, before, in, after := cases[i], runs[j].e, runs[j].lat, runs[j].before, runs[j].in, runs[j].after
				cpu := cpuPerInvocation(map[string]int64{}, runs[j].cpu, n)
				out := e.out.String()
				post := postRuntime(out)
				r := &results[i]
				r.p50, r.p99 = append(r.p50, pct(lat, 50)), append(r.p99, pct(lat, 99))
				r.l50, r.l99 = append(r.l50, pctD(lat, 50)), append(r.l99, pctD(lat, 99))
				r.post50, r.post99 = append(r.post50, pct(post, 50)), append(r.post99, pct(post, 99))
				r.before, r.in, r.after = append(r.before, pct(before, 50)), append(r.in, pct(in, 50)), append(r.after, pct(after, 50))
				line := fmt.Sprintf("round %d %-31s latency p50 %s p99 %s | stamped p50 before %s in %s after %s, after p99 %s | post-runtime p50 %s p99 %s (%d samples) | retries %d | CPU µs/invocation %s | load %s",
					round+1, c.name, pct(lat, 50), pct(lat, 99), pct(before, 50), pct(in, 50), pct(after, 50), pct(after, 99),
					pct(post, 50), pct(post, 99), len(post), runs[j].retries, cpu, loadavg())
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
	}
	for i, c := range cases {
		r := results[i]
		added := ""
		if b := base[i]; b >= 0 && b != i {
			var a50, a99 []string
			for k := range r.l50 {
				a50 = append(a50, fmt.Sprintf("%+.2f", (r.l50[k]-results[b].l50[k]).Seconds()*1e3))
				a99 = append(a99, fmt.Sprintf("%+.2f", (r.l99[k]-results[b].l99[k]).Seconds()*1e3))
			}
			added = fmt.Sprintf(" | added ms p50 %s p99 %s", strings.Join(a50, " "), strings.Join(a99, " "))
		}
		t.Logf("%-31s latency p50 %s | p99 %s | stamped p50 before %s in %s after %s | post-runtime p50 %s | p99 %s%s", c.name,
			strings.Join(r.p50, " "), strings.Join(r.p99, " "), strings.Join(r.before, " "), strings.Join(r.in, " "), strings.Join(r.after, " "),
			strings.Join(r.post50, " "), strings.Join(r.post99, " "), added)
	}
}

// stamp is one invocation of a function answering "ok <start> <end>":
// latency is the caller's (request written → response read); before is
// request → handler start, in the handler's own time, after handler
// return → response read (the runtime posting the response, the emulator
// holding it until the extensions called next, and relaying it). All on
// one machine's wall clock.
type stamp struct {
	latency, before, in, after time.Duration
	retries                    int // Runtime.Unavailable answers retried first
}

func (e *emulator) stamped(payload string) stamp {
	e.t.Helper()
	var s stamp
	for {
		start := time.Now()
		ans, _ := e.call(payload)
		end := time.Now()
		if strings.Contains(ans, "Runtime.Unavailable") && s.retries < 10000 {
			s.retries++
			continue
		}
		var hs, he int64
		if _, err := fmt.Sscanf(strings.Trim(ans, `"`), "ok %d %d", &hs, &he); err != nil {
			e.t.Fatalf("invocation answered %s, want \"ok <start> <end>\"", ans)
		}
		s.latency = end.Sub(start)
		s.before = time.Duration(hs - start.UnixNano())
		s.in = time.Duration(he - hs)
		s.after = time.Duration(end.UnixNano() - he)
		return s
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
	return pctD(ds, p).Round(10 * time.Microsecond).String()
}

// pctD is the p-th percentile of ds (nearest rank; 0 when ds is empty).
func pctD(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return s[max(i, 0)]
}

// sandboxCPU is the CPU time (ns, the sum of the schedstat run time of
// every thread) of each process below this emulator, by the base name of
// its executable: aws-lambda-rie, bootstrap (the function), les, minext
// (netbridge, the test's socket bridge, too).
func (e *emulator) sandboxCPU() map[string]int64 {
	out := map[string]int64{}
	for pid, cl := range e.descendants() {
		if cl == "" {
			continue // gone since, or a kernel thread
		}
		name := filepath.Base(strings.SplitN(cl, "\x00", 2)[0])
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*/schedstat", pid))
		for _, ts := range tasks {
			b, err := os.ReadFile(ts)
			if err != nil {
				continue
			}
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				out[name] += ns
			}
		}
	}
	return out
}

// cpuPerInvocation formats the CPU time each process used between two
// sandboxCPU readings, per invocation (µs), sorted by name. A thread that
// ended in between is not counted (the sandbox's processes keep theirs).
func cpuPerInvocation(before, after map[string]int64, n int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if k == "sh" || k == "unshare" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", k, float64(after[k]-before[k])/float64(n)/1e3))
	}
	return strings.Join(parts, ", ")
}

// schedExtension runs args + TID (chrt, renice) for every thread of
// this emulator's /opt/extensions/les; threads it starts later inherit
// the setting from the thread that creates them.
func (e *emulator) schedExtension(args []string) {
	e.t.Helper()
	n := 0
	for _, pid := range e.sandboxProcs() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.HasPrefix(string(b), "/opt/extensions/les") {
			continue
		}
		tids, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*", pid))
		for _, tid := range tids {
			if out, err := exec.Command(args[0], append(args[1:], filepath.Base(tid))...).CombinedOutput(); err != nil {
				e.t.Fatalf("%v %s: %v\n%s", args, filepath.Base(tid), err, out)
			}
			n++
		}
	}
	if n == 0 {
		e.t.Fatal("no thread of /opt/extensions/les found")
	}
}

// extensionPID is the pid of this emulator's /opt/extensions/les (0:
// none).
func (e *emulator) extensionPID() int {
	for _, pid := range e.sandboxProcs() {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasPrefix(string(b), "/opt/extensions/les") {
			return pid
		}
	}
	return 0
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
