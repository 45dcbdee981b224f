// Package faults is the fault campaign: it builds the les binary, drives it
// over real sockets through crashes, outages, full disks, damaged files and
// hostile clients, and reports for each scenario what les accepted, what
// reached the file sink (the oracle), what was lost or duplicated, crashes
// and peak RSS. See README.md.
package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/lesproc"
)

// lesBinary builds cmd/les once per run (as test/e2e does), under a name
// that a `pkill les` run by hand does not match.
func lesBinary(t *testing.T) string { return lesproc.Binary(t, "les-faults") }

// freePort is lesproc.FreePort: a loopback port free for TCP and UDP now,
// below the ephemeral range, never twice in a run.
func freePort(t *testing.T) int { return lesproc.FreePort(t) }

// les is one les under test, restarted as often as a scenario needs; it
// counts unexpected exits (crashes) and keeps the highest VmHWM seen.
type les struct {
	t      *testing.T
	dir    string // working directory: les.yaml, data/, out.ndjson
	ports  map[string]int
	config string
	// tmpfs, when set (e.g. "64m"), runs les in a private mount namespace
	// with a tmpfs of that size on data/ (root and unshare needed).
	tmpfs string

	cmd      *exec.Cmd
	out      *lesproc.Buffer
	done     <-chan struct{}
	expected bool // the exit was asked for
	crashes  int
	peakKB   int64
	mu       sync.Mutex
}

// newLes prepares a les up with wavefront on TCP and UDP, statsd on UDP,
// HTTP, the embedded stream and a file sink at out.ndjson; extra is YAML
// appended (rollup, more sinks, …); listenerExtra is added to the TCP
// wavefront listener's flow mapping.
func newLes(t *testing.T, extra, listenerExtra string) *les {
	l := &les{t: t, dir: t.TempDir(), ports: map[string]int{}}
	for _, n := range []string{"tcp", "udp", "statsd", "http", "nats"} {
		l.ports[n] = freePort(t)
	}
	l.config = fmt.Sprintf(`data_dir: ./data
log: { level: info }
agent:
  listeners:
    - { format: wavefront, transport: tcp, address: 127.0.0.1:%d%s }
    - { format: wavefront, transport: udp, address: 127.0.0.1:%d }
    - { format: statsd, transport: udp, address: 127.0.0.1:%d }
  http: { listen: 127.0.0.1:%d }
  batch: { flush_interval: 50ms }
stream: { embedded: { listen: 127.0.0.1:%d } }
logmetric: { disabled: true }
`, l.ports["tcp"], listenerExtra, l.ports["udp"], l.ports["statsd"], l.ports["http"], l.ports["nats"]) + extra
	if !strings.Contains(extra, "sinks:") {
		l.config += "sinks:\n  - { name: out, type: file, file: { path: ./out.ndjson } }\n"
	}
	if !strings.Contains(extra, "rollup:") {
		l.config += "rollup: { disabled: true }\n"
	}
	return l
}

func (l *les) addr(name string) string { return fmt.Sprintf("127.0.0.1:%d", l.ports[name]) }
func (l *les) base() string            { return "http://" + l.addr("http") }

// start runs les and waits until it is ready (an unexpected exit during
// start is a crash and fails the scenario).
func (l *les) start() {
	t := l.t
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.dir, "les.yaml"), []byte(l.config), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := lesBinary(t)
	args := []string{bin, "up", "--config", "les.yaml"}
	if l.tmpfs != "" {
		data := filepath.Join(l.dir, "data")
		_ = os.MkdirAll(data, 0o750)
		// unshare execs sh, sh execs les: one pid, whose /proc/<pid>/root
		// shows its private mounts.
		args = append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"`, "sh", l.tmpfs, data}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = l.dir
	l.expected = false
	p := lesproc.Start(t, cmd, func(error) {
		l.mu.Lock()
		if !l.expected {
			l.crashes++
		}
		l.mu.Unlock()
	})
	l.cmd, l.out, l.done = p.Cmd, p.Out, p.Done()
	t.Cleanup(l.kill)
	if !p.WaitOutput(t, "Press Ctrl-C to stop.", 60*time.Second) {
		t.Fatalf("les exited during start:\n%s", l.out.String())
	}
}

// sampleRSS keeps the process's peak resident size (VmHWM).
func (l *les) sampleRSS() {
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", l.cmd.Process.Pid))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			l.peakKB = max(l.peakKB, kb)
		}
	}
}

func (l *les) alive() bool {
	if l.cmd == nil {
		return false
	}
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

func (l *les) signal(sig os.Signal, wait time.Duration) {
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	l.sampleRSS()
	l.mu.Lock()
	l.expected = true
	l.mu.Unlock()
	_ = l.cmd.Process.Signal(sig)
	select {
	case <-l.done:
	case <-time.After(wait):
		_ = l.cmd.Process.Kill()
		<-l.done
		l.t.Errorf("les did not stop within %v of %v", wait, sig)
	}
	l.cmd = nil
}

// kill is kill -9.
func (l *les) kill() { l.signal(syscall.SIGKILL, 10*time.Second) }

// stop is SIGINT and a clean exit (which drains intake and lets the sinks
// catch up).
func (l *les) stop() { l.signal(syscall.SIGINT, 60*time.Second) }

// metric is one series of /metrics (exact text up to the value), 0 when
// absent.
func (l *les) metric(series string) float64 {
	v, _ := lesproc.Metric(l.base()+"/metrics", series)
	return v
}

// settled reads series until two reads 200 ms apart agree (les may still
// be reading sockets the test wrote to), at most 10 s.
func (l *les) settled(series ...string) float64 {
	read := func() float64 {
		var v float64
		for _, s := range series {
			v += l.metric(s)
		}
		return v
	}
	v := read()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond) // polled: another process
		w := read()
		if w == v {
			break
		}
		v = w
	}
	return v
}

// metricSum adds every series of name whose labels contain each of sub.
func (l *les) metricSum(name string, sub ...string) float64 {
	resp, err := http.Get(l.base() + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, s := range sub {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		sum += f
	}
	return sum
}

// acceptedLines is what les counted as accepted for format over every
// transport: received minus rejected (both count rejections).
func (l *les) acceptedLines(format string) int {
	rec := l.metricSum("les_ingest_received_total", `format="`+format+`"`)
	rej := l.metricSum("les_ingest_rejected_total", `format="`+format+`"`)
	return int(rec - rej)
}

// ledger is the oracle side of a scenario: the values les acknowledged
// and, from the file sink, how often each was delivered.
type ledger struct {
	mu    sync.Mutex
	acked map[string]map[int]bool // metric name → acknowledged values
	sent  map[string]int          // metric name → values sent
	next  int
}

func newLedger() *ledger { return &ledger{acked: map[string]map[int]bool{}, sent: map[string]int{}} }

// values reserves n fresh item values of name.
func (g *ledger) values(name string, n int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := g.next
	g.next += n
	g.sent[name] += n
	return v
}

func (g *ledger) sentOf(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent[name]
}

func (g *ledger) ack(name string, from, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.acked[name] == nil {
		g.acked[name] = map[int]bool{}
	}
	for v := from; v < from+n; v++ {
		g.acked[name][v] = true
	}
}

func (g *ledger) count(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acked[name])
}

func lines(name string, from, n int) string {
	var sb strings.Builder
	for v := from; v < from+n; v++ {
		fmt.Fprintf(&sb, "%s %d source=faults\n", name, v)
	}
	return sb.String()
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// post sends n fresh items of name to /report and records them as
// acknowledged when les answers 2xx with all of them accepted.
func (l *les) post(g *ledger, name string, n int) (int, string) {
	from := g.values(name, n)
	resp, err := httpClient.Post(l.base()+"/report", "text/plain", strings.NewReader(lines(name, from, n)))
	if err != nil {
		return 0, err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 && strings.Contains(string(b), `"accepted":`+strconv.Itoa(n)+",") {
		g.ack(name, from, n)
	}
	return resp.StatusCode, string(b)
}

// sendTCP writes n fresh items of name on one connection (not
// acknowledged: scenarios count them as les' metrics say).
func (l *les) sendTCP(g *ledger, name string, n int) error {
	c, err := net.DialTimeout("tcp", l.addr("tcp"), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.WriteString(c, lines(name, g.values(name, n), n)) // counted as sent once connected
	return err
}

// sendUDP sends n fresh items of name, one datagram per 20 lines.
func (l *les) sendUDP(g *ledger, name string, n int) error {
	c, err := net.Dial("udp", l.addr("udp"))
	if err != nil {
		return err
	}
	defer c.Close()
	from := g.values(name, n)
	for i := 0; i < n; i += 20 {
		_, _ = io.WriteString(c, lines(name, from+i, min(20, n-i)))
	}
	return nil
}

// delivered reads the file sink: name → value → times delivered.
func (l *les) delivered() map[string]map[int]int {
	got := map[string]map[int]int{}
	f, err := os.Open(filepath.Join(l.dir, "out.ndjson"))
	if err != nil {
		return got
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m struct {
			Name  string
			Value float64
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if got[m.Name] == nil {
			got[m.Name] = map[int]int{}
		}
		got[m.Name][int(m.Value)]++
	}
	return got
}

// waitDelivered polls the file sink (another process writes it) until
// every acknowledged value of names is there, or d passes.
func (l *les) waitDelivered(g *ledger, d time.Duration, names ...string) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		got, ok := l.delivered(), true
		g.mu.Lock()
		for _, n := range names {
			for v := range g.acked[n] {
				if got[n][v] == 0 {
					ok = false
					break
				}
			}
		}
		g.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// result is one line of the campaign's table.
type result struct {
	scenario                  string
	accepted, delivered, lost int
	duplicated, crashes       int
	peakKB                    int64
	note                      string
	deliveredOnly             bool // lost is expected (damage destroys data) and reported, not a failure
}

// tally compares the acknowledged values of names with the file sink.
func (l *les) tally(g *ledger, r *result, names ...string) {
	got := l.delivered()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range names {
		for v := range g.acked[n] {
			r.accepted++
			if c := got[n][v]; c > 0 {
				r.delivered++
				r.duplicated += c - 1
			} else {
				r.lost++
			}
		}
	}
	r.crashes += l.crashes
	r.peakKB = max(r.peakKB, l.peakKB)
}

// deliveredCount is how many values of name reached the sink (distinct)
// and how many times beyond the first.
func deliveredCount(got map[string]map[int]int, name string) (distinct, dups int) {
	for _, c := range got[name] {
		distinct++
		dups += c - 1
	}
	return distinct, dups
}

// stopAndTally stops les (a clean exit) and tallies the acknowledged
// values of name against the file sink.
func (l *les) stopAndTally(g *ledger, name string) result {
	l.stop()
	var r result
	l.tally(g, &r, name)
	return r
}

// unackedDelivered is how many distinct values of k.tcp and k.udp (sent
// without acknowledgement) reached the file sink, and how many deliveries
// of them were repeats.
func (l *les) unackedDelivered() (tcp, udp, dups int) {
	got := l.delivered()
	tcp, d1 := deliveredCount(got, "k.tcp")
	udp, d2 := deliveredCount(got, "k.udp")
	return tcp, udp, d1 + d2
}
