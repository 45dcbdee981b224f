//go:build linux

package lambda_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/wire"
)

// TestEmulatorFreezeThaw: nothing the function emitted is lost across
// freezes, thaws, an endpoint restarted while frozen, and SHUTDOWN.
//
// Under the classic emulator, each cycle invokes the function once
// (StatsD timer n, Wavefront n, EMF 2n for cycle n), waits for the
// invocation to end (the emulator's REPORT line: every extension called
// next), freezes the sandbox (SIGSTOP of the function's and the
// extension's processes, as Lambda's freezer stops everything in the
// sandbox), restarts the stream endpoint — the proxy in front of
// kinesalite closes its listener and every connection, so the extension
// finds its pooled connection dead after the thaw — and thaws it
// (SIGCONT). Every fifth cycle the endpoint stays down through the next
// invocation (so that invocation's batches are spooled) and comes back
// during the following freeze. After the last cycle the emulator is
// stopped: SHUTDOWN publishes what is left. Then every value emitted
// must be on the stream (0 lost; duplicates are reported: the stream is
// at-least-once and consumers drop repeated batch ids).
//
// The freezes are made to meet the extension's publishing, which runs in
// the background (the classic emulator has no Telemetry API) and would
// otherwise rarely be under way at a freeze. Before every freeze that
// follows an invocation with the endpoint up, the test waits for the
// PutRecords request that carries the invocation's items (the proxy
// relays HTTP request by request and shows each to putGate): in odd
// cycles the proxy holds that request until the sandbox is frozen and
// the proxy down, then the test delivers it to kinesalite itself, so it
// is stored but its answer is lost and the extension must re-send it
// after the thaw (a duplicate under the same batch id); in even cycles
// the request goes through and the freeze kills an idle pooled
// connection. After an invocation with the endpoint down, the freeze
// waits until the extension has spooled a record, which it must then
// publish from the spool.
//
// The proxy is what "endpoint restarted" means for a client: kinesalite
// itself keeps its data in memory, so restarting it would lose what it
// had acknowledged, which is no fault of the extension.
//
// 20 cycles by default; LES_LAMBDA_FREEZE_CYCLES=100 for the figure in
// docs/performance.md.
func TestEmulatorFreezeThaw(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the RIE is gone
	cycles := freezeCycles(t)
	endpoint, name := kinesisStream(t)
	e := startEmulator(t, true, map[string]string{"LES_STREAM": "kinesis://" + name + "?partitions=2",
		"AWS_ENDPOINT_URL_KINESIS": endpoint, "LES_LOG_LEVEL": "info"}, hostPort(endpoint))
	px := e.fwds[0]
	g := newPutGate()
	px.SetInspect(g.inspect) // before the first invocation: the extension connects at its first publish
	var heldReq []byte       // the held request of this cycle
	held, passed := 0, 0
	out := freezeThaw(t, e, px, cycles, freezeHooks{
		invoked: func(n int, up bool) {
			if !up {
				if !e.spooled(10 * time.Second) {
					t.Fatalf("cycle %d: nothing spooled in 10 s with the endpoint down\n%s", n, lines(e.out.String(), "level="))
				}
				return
			}
			raw, ok := g.await(n, n%2 == 1, 10*time.Second)
			switch {
			case !ok:
				t.Fatalf("cycle %d: no PutRecords request with the invocation's items in 10 s\n%s", n, lines(e.out.String(), "level="))
			case raw != nil:
				heldReq = raw
				held++
			default:
				passed++
			}
		},
		frozen: func(n int) {
			if heldReq != nil {
				if err := deliverHTTP(hostPort(endpoint), heldReq); err != nil {
					t.Fatalf("cycle %d: delivering the held PutRecords request: %v", n, err)
				}
				heldReq = nil
			}
		},
	})
	t.Logf("freezes with a PutRecords request held until the endpoint was down (stored, answer lost): %d; right after one went through: %d; PutRecords requests: %d", held, passed, g.requests())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := kinesis.Open(ctx, kinesis.Config{Stream: name, Endpoint: endpoint, PollInterval: kinesis.MinPollInterval}, 2, kinesis.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkFreezeThaw(t, readValues(t, st, stream.ConsumeOptions{FromStart: true}, cycles), cycles, out)
}

// cycleGate watches a stream endpoint's write requests for the items of
// one invocation (rie.latency = n) and can hold the request that carries
// them; T is what await hands back for a held request (nil-like: it went
// through).
type cycleGate[T any] struct {
	mu    sync.Mutex
	seen  map[int]bool // cycles whose items were in a request
	want  int          // the cycle awaited; 0: none
	hold  bool         // hold the awaited request
	found chan T       // the held request, or T's zero value: it went through
	n     int          // requests
}

func newCycleGate[T any]() *cycleGate[T] {
	return &cycleGate[T]{seen: map[int]bool{}, found: make(chan T, 1)}
}

// saw records a request carrying cycles; when it carries the awaited one
// and await asked to hold it, held (called with g.mu held) makes what
// await returns, and saw reports true.
func (g *cycleGate[T]) saw(cycles []int, held func() T) (hold bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	for _, n := range cycles {
		g.seen[n] = true
		if n == g.want {
			g.want = 0
			var r T
			if g.hold {
				r, hold = held(), true
			}
			g.found <- r
		}
	}
	return hold
}

// await waits up to timeout for a request with cycle n's items and
// returns (when hold) what held made of it; the zero value when the
// request went through (or did before await was called).
func (g *cycleGate[T]) await(n int, hold bool, timeout time.Duration) (r T, ok bool) {
	g.mu.Lock()
	if g.seen[n] {
		g.mu.Unlock()
		return r, true
	}
	g.want, g.hold = n, hold
	g.mu.Unlock()
	select {
	case r = <-g.found:
		return r, true
	case <-time.After(timeout):
		return r, false
	}
}

func (g *cycleGate[T]) requests() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// putGate watches the PutRecords requests the proxy relays (its inspect
// function); a held request is never forwarded, never answered, and
// await hands back its bytes.
type putGate struct{ *cycleGate[[]byte] }

func newPutGate() *putGate { return &putGate{newCycleGate[[]byte]()} }

// inspect is the proxy's inspect function (proxy.SetInspect).
func (g *putGate) inspect(raw, body []byte) (hold bool) {
	return g.saw(putCycles(body), func() []byte { return bytes.Clone(raw) })
}

// putCycles are the values of rie.latency (the cycle numbers) in the les
// records of a PutRecords request body; nil for other requests.
func putCycles(body []byte) []int {
	var req struct {
		Records []struct {
			Data []byte `json:"Data"`
		} `json:"Records"`
	}
	if json.Unmarshal(body, &req) != nil {
		return nil
	}
	var out []int
	var dec wire.Decoder
	for _, r := range req.Records {
		var b model.Batch
		if _, err := dec.Decode(&b, r.Data); err != nil {
			continue
		}
		for _, m := range b.Metrics {
			if m.Name == "rie.latency" {
				out = append(out, int(m.Value))
			}
		}
	}
	return out
}

// deliverHTTP sends one raw HTTP request to addr and requires a 2xx
// answer, which it drops.
func deliverHTTP(addr string, raw []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(raw); err != nil {
		return err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", res.StatusCode, b)
	}
	return nil
}

// freezeCycles is the number of freeze/thaw cycles: 20, or
// LES_LAMBDA_FREEZE_CYCLES.
func freezeCycles(t *testing.T) int {
	t.Helper()
	cycles := 20
	if v := os.Getenv("LES_LAMBDA_FREEZE_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("LES_LAMBDA_FREEZE_CYCLES=%q", v)
		}
		cycles = n
	}
	return cycles
}

// freezeHooks let a freeze/thaw test act at two points of every cycle
// n; nil ones do nothing.
type freezeHooks struct {
	// invoked runs when invocation n has ended (its REPORT line), before
	// the freeze; up: the endpoint was up during the invocation.
	invoked func(n int, up bool)
	// frozen runs while the sandbox is frozen, just after the endpoint
	// went down (listener and connections closed).
	frozen func(n int)
}

// freezeThaw runs the cycles of the freeze/thaw tests on e, whose stream
// endpoint is behind px (see TestEmulatorFreezeThaw), calling h's hooks,
// then stops the emulator (SHUTDOWN: the final flush) and returns its
// output.
func freezeThaw(t *testing.T, e *emulator, px *proxy, cycles int, h freezeHooks) string {
	t.Helper()
	downFor := 0 // invocations the endpoint has been down for
	for n := 1; n <= cycles; n++ {
		if ans, _ := e.call(fmt.Sprintf(`{"n":%d}`, n)); ans != `"ok"` {
			t.Fatalf("invocation %d answered %s", n, ans)
		}
		if !e.out.waitFor(10*time.Second, e.done, func(s string) bool { return strings.Count(s, "REPORT RequestId") >= n }) {
			t.Fatalf("invocation %d: no REPORT line", n)
		}
		if h.invoked != nil {
			h.invoked(n, downFor == 0)
		}
		procs := e.sandboxProcs()
		if len(procs) != 2 {
			t.Fatalf("cycle %d: sandbox processes %v, want the function and the extension", n, procs)
		}
		for _, p := range procs {
			if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range procs {
			waitState(t, p, 'T')
		}
		// Frozen: restart the endpoint, or take it down for the next
		// invocation, or bring it back.
		px.Stop()
		if h.frozen != nil {
			h.frozen(n)
		}
		switch {
		case downFor > 0:
			downFor = 0
			px.Start()
		case n%5 == 0 && n < cycles:
			downFor = 1
		default:
			px.Start()
		}
		for _, p := range procs {
			if err := syscall.Kill(p, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
	}
	px.Start()
	before := px.Accepted()
	e.stop() // SHUTDOWN: the final flush
	t.Logf("the extension connected to the endpoint %d times during the cycles, %d at SHUTDOWN", before, px.Accepted()-before)
	out := e.out.String()
	if !strings.Contains(out, "les extension ready") {
		t.Fatalf("the extension never got ready:\n%s", out)
	}
	return out
}

// checkFreezeThaw reports what the stream holds after cycles cycles (c)
// and fails the test for every item lost or duplicated under a new batch
// id; out is the emulator's output.
func checkFreezeThaw(t *testing.T, c *valueCounts, cycles int, out string) {
	t.Helper()
	lost, dups := c.check(cycles)
	t.Logf("%d cycles (%d with the endpoint down for an invocation): %d items emitted, %d lost; duplicates: %d items in %d re-published records (same batch id: consumers drop them), %d items under new batch ids",
		cycles, (cycles-1)/5, 4*cycles, len(lost), c.repeatedItems, c.repeatedRecords, dups)
	if len(lost) > 0 {
		t.Errorf("lost: %v", lost)
	}
	if dups > 0 { // a spool replay re-publishes the same record; anything else would double-count
		t.Errorf("%d items duplicated under new batch ids", dups)
	}
	if os.Getenv("LES_LAMBDA_FREEZE_DEBUG") != "" {
		for k, v := range c.seen {
			if v > 1 {
				t.Logf("%s seen %d times", k, v)
			}
		}
		t.Logf("extension log:\n%s", lines(out, "level="))
	}
}

// valueCounts are the function's items on the stream: how often each
// (metric, value) was seen in records of distinct batch ids, and the
// records (and their items) that repeated a batch id.
type valueCounts struct {
	seen            map[string]int
	count           float64 // sum of rie.count
	repeatedRecords int     // records whose batch id was seen before
	repeatedItems   int     // metrics in them
}

// check returns the items missing after cycles cycles and the number of
// extra copies.
func (c *valueCounts) check(cycles int) (lost []string, dups int) {
	for n := 1; n <= cycles; n++ {
		for _, k := range []string{fmt.Sprintf("rie.latency=%d", n), fmt.Sprintf("rie.wf=%d", n), fmt.Sprintf("RieEmf=%d", 2*n)} {
			switch got := c.seen[k]; {
			case got == 0:
				lost = append(lost, k)
			case got > 1:
				dups += got - 1
			}
		}
	}
	switch {
	case c.count < float64(cycles):
		lost = append(lost, fmt.Sprintf("rie.count %g of %d", c.count, cycles))
	case c.count > float64(cycles):
		dups += int(c.count) - cycles
	}
	return lost, dups
}

// readValues reads st with o until every item of cycles invocations is
// there (or 30 s pass).
func readValues(t *testing.T, st stream.Stream, o stream.ConsumeOptions, cycles int) *valueCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &valueCounts{seen: map[string]int{}}
	ids := map[string]bool{}
	var dec wire.Decoder
	err := st.Consume(ctx, o, func(_ context.Context, ds []stream.Delivery) error {
		for _, d := range ds {
			var b model.Batch
			h, err := dec.Decode(&b, d.Data)
			if err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			if ids[h.ID()] { // a re-published record: consumers drop it by its batch id
				c.repeatedRecords++
				c.repeatedItems += len(b.Metrics)
				continue
			}
			ids[h.ID()] = true
			for _, m := range b.Metrics {
				switch m.Name {
				case "rie.count":
					c.count += m.Value
				case "rie.latency", "rie.wf", "RieEmf":
					c.seen[m.Name+"="+strconv.FormatFloat(m.Value, 'f', -1, 64)]++
				}
			}
		}
		if lost, _ := c.check(cycles); len(lost) == 0 {
			cancel()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return c
}

// sandboxProcs are the pids of the function (/var/task/…) and the
// extensions (/opt/extensions/…) below this emulator.
func (e *emulator) sandboxProcs() []int {
	var out []int
	for pid, cl := range e.descendants() {
		if strings.HasPrefix(cl, "/var/task/") || strings.HasPrefix(cl, "/opt/extensions/") {
			out = append(out, pid)
		}
	}
	return out
}

// descendants are the processes below this emulator, with their command
// lines (NUL-separated, as /proc/PID/cmdline has them).
func (e *emulator) descendants() map[int]string {
	root := e.cmd.Process.Pid
	parent := map[int]int{}
	cmdline := map[int]string{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		// pid (comm) state ppid …: comm may hold spaces; cut after ")".
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
		cl, _ := os.ReadFile(filepath.Join(filepath.Dir(s), "cmdline"))
		cmdline[pid] = string(cl)
	}
	out := map[int]string{}
	for pid := range parent {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == root {
				out[pid] = cmdline[pid]
				break
			}
		}
	}
	return out
}

// waitState waits until process pid is in state (from /proc/PID/stat):
// a signalled stop takes effect asynchronously.
func waitState(t *testing.T, pid int, state byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == state {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("process %d not in state %c after 5s", pid, state)
}
