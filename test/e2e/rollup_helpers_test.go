package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/natsjs"
	"github.com/les-streams/les/internal/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// distLine is one distribution as printed by les tail, /query and the
// file sink (internal/format/jsonl).
type distLine struct {
	Type        string             `json:"type"`
	Record      string             `json:"record"`
	Item        int                `json:"item"`
	Name        string             `json:"name"`
	Timestamp   string             `json:"timestamp"`
	Window      string             `json:"window"`
	Source      string             `json:"source"`
	Tags        map[string]string  `json:"tags"`
	Count       float64            `json:"count"`
	Sum         float64            `json:"sum"`
	Min         float64            `json:"min"`
	Max         float64            `json:"max"`
	Avg         float64            `json:"avg"`
	Percentiles map[string]float64 `json:"percentiles"`
	Centroids   [][2]float64       `json:"centroids"`
	Correction  int                `json:"correction"`
	// metric and log fields (les tail prints every signal)
	Value   float64           `json:"value"`
	Kind    string            `json:"kind"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs"`
}

func parseDistLines(t *testing.T, lines []string) []distLine {
	t.Helper()
	var out []distLine
	for _, l := range lines {
		var d distLine
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		out = append(out, d)
	}
	return out
}

// fileSinkDists reads a file sink's NDJSON output and returns its
// distributions, de-duplicated by (record id, item), and how many lines
// were repeats of one already seen.
func fileSinkDists(t *testing.T, path string) (dists []distLine, dupLines int) {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type key struct {
		rec  string
		item int
	}
	seen := map[key]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var d distLine
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			continue // a torn last line while les is writing
		}
		if d.Type != "distribution" {
			continue
		}
		k := key{d.Record, d.Item}
		if d.Record != "" && seen[k] {
			dupLines++
			continue
		}
		seen[k] = true
		dists = append(dists, d)
	}
	return dists, dupLines
}

// streamRecord is one record read back from the stream.
type streamRecord struct {
	Origin string
	Signal wire.Signal
	ID     string
	Seq    uint64      // the JetStream sequence (the embedded stream's position)
	Batch  model.Batch // owned copy of what the test needs (see readStream)
}

// readStream reads every record of origin and one of sigs from the start
// of the running les' stream, up to the stream's last sequence at the time
// of the call.
// Each record's batch keeps only counts and kinds (names are cloned).
func readStream(t *testing.T, l *Les, origin string, sigs ...wire.Signal) []streamRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := natsjs.Open(ctx, natsjs.Config{URL: "nats://" + l.Addr("nats")}, 1, natsjs.Deps{MustExist: true})
	if err != nil {
		t.Fatalf("%v\nles output:\n%s", err, lastLines(l.Output(), 40))
	}
	defer st.Close()
	last := lastSeq(t, ctx, "nats://"+l.Addr("nats"))
	var out []streamRecord
	if last == 0 {
		return nil
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var dec wire.Decoder
	var b model.Batch
	done := false
	h := func(_ context.Context, ds []stream.Delivery) error {
		for _, d := range ds {
			seq, _ := strconv.ParseUint(string(d.Pos), 10, 64)
			if seq > last {
				done = true
				break
			}
			if seq == last {
				done = true
			}
			if d.Origin != origin || !slices.Contains(sigs, d.Signal) {
				continue
			}
			b.Reset()
			hdr, err := dec.Decode(&b, d.Data)
			if err != nil {
				t.Errorf("record %d: %v", seq, err)
				continue
			}
			r := streamRecord{Origin: d.Origin, Signal: d.Signal, ID: hdr.ID(), Seq: seq}
			for _, m := range b.Metrics {
				r.Batch.Metrics = append(r.Batch.Metrics, model.Metric{Name: strings.Clone(m.Name), Kind: m.Kind, Value: m.Value, Timestamp: m.Timestamp})
			}
			for _, d := range b.Dists {
				r.Batch.Dists = append(r.Batch.Dists, model.Distribution{Name: strings.Clone(d.Name), Count: d.Count,
					Timestamp: d.Timestamp, Window: d.Window, Correction: d.Correction})
			}
			out = append(out, r)
		}
		if done {
			stop()
		}
		return nil
	}
	// Read everything (so the last sequence is always seen) and filter here.
	if err := st.Consume(cctx, stream.ConsumeOptions{FromStart: true, Batch: 256}, h); err != nil && cctx.Err() == nil {
		t.Fatal(err)
	}
	return out
}

// queryAPI GETs /query on les' HTTP API and parses its NDJSON.
func queryAPI(t *testing.T, l *Les, name, source, window string) []distLine {
	t.Helper()
	v := url.Values{"name": {name}}
	if source != "" {
		v.Set("source", source)
	}
	if window != "" {
		v.Set("window", window)
	}
	resp, err := http.Get("http://" + l.Addr("http") + "/query?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/query: %d %s", resp.StatusCode, body)
	}
	return parseDistLines(t, nonEmptyLines(string(body)))
}

// tailFor runs a les subcommand for d, then interrupts it, returning its
// output (for `les tail` without a known item count).
func tailFor(t *testing.T, l *Les, d time.Duration, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := execLes(ctx, l, args...)
	out, _ := cmd.Output()
	return nonEmptyLines(string(out))
}

// sendUDP sends each payload as one datagram to addr on network (udp or
// unixgram).
func sendDatagrams(t *testing.T, network, addr string, payloads ...string) {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range payloads {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatalf("send %s %s: %v", network, addr, err)
		}
	}
}

// execLes prepares a les subcommand that is interrupted (SIGINT, so it
// flushes its output) when ctx ends.
func execLes(ctx context.Context, l *Les, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, lesBinary(l.t), args...)
	cmd.Dir = l.Dir
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// lastSeq is the JetStream sequence of the newest record of the stream
// at url (asked of the server directly: positions are opaque to les).
func lastSeq(t *testing.T, ctx context.Context, url string) uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "LES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func lastLines(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// untilMinuteCloses is how long to wait for the window holding now to close
// with a 1 s grace, plus room for ticks and delivery.
func untilMinuteCloses() time.Duration {
	now := time.Now()
	return now.Truncate(time.Minute).Add(time.Minute+1*time.Second).Sub(now) + 15*time.Second
}

// rollupItems reads what the rollup emitted so far with les tail, by name
// (several items of one name — windows, corrections, tag sets — are all
// kept).
func rollupItems(t *testing.T, l *Les) map[string][]distLine {
	t.Helper()
	args := []string{"tail", "--url", "nats://" + l.Addr("nats"), "--from-start", "--origin", "rollup"}
	out := map[string][]distLine{}
	for _, d := range parseDistLines(t, tailFor(t, l, 2*time.Second, args...)) {
		out[d.Name] = append(out[d.Name], d)
	}
	return out
}
