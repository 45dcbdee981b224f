package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
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
	// Partition and Pos are where the record is: the physical partition
	// (NATS subject token, Kafka "<origin>.<signal>/<n>", Kinesis shard id)
	// and the position in it.
	Partition string
	Pos       stream.Position
	Seq       uint64      // Pos as a number where it fits (the JetStream sequence of the embedded stream)
	Batch     model.Batch // owned copy of what the test needs (see readStream)
	// Logical is the logical partition of the record's first item (the
	// agent puts one partition's items in a record); Data a copy of the
	// record as stored.
	Logical int
	Data    []byte
}

// readStream reads every record of origin and one of sigs from the start
// of the stream les runs on (l.Backend; nil: the embedded stream of a
// running les) up to the end of the stream as it is at the time of the
// call, with a consumer of the backend package. Where the end is comes
// from the backend's servers (streamBackend.end): JetStream's last
// sequence, Kafka's high watermarks, Kinesis' shards read to
// MillisBehindLatest 0.
// Each record keeps a copy of its data; its batch only counts and kinds
// (names are cloned).
func readStream(t *testing.T, l *Les, origin string, sigs ...wire.Signal) []streamRecord {
	t.Helper()
	b := backendOf(l)
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	st, err := b.open(ctx, l)
	if err != nil {
		t.Fatalf("open the %s stream: %v\nles output:\n%s", b.Kind, err, lastLines(l.Output(), 40))
	}
	defer st.Close()
	end, err := b.end(ctx, l, origin, sigs)
	if err != nil {
		t.Fatalf("the end of the %s stream: %v", b.Kind, err)
	}
	if end.empty() {
		return nil
	}
	o := stream.ConsumeOptions{FromStart: true, Batch: 256}
	if b.filters {
		o.Origins, o.Signals = []string{origin}, sigs
	} // else read everything, so that the end is always seen, and filter here
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		out  []streamRecord
		dec  wire.Decoder
		bat  model.Batch
		seen = map[string]stream.Position{}
	)
	h := func(_ context.Context, ds []stream.Delivery) error {
		for i := range ds {
			d := &ds[i]
			if stream.ComparePositions(d.Pos, seen[d.Partition]) > 0 {
				seen[d.Partition] = d.Pos
			}
			if !end.includes(d) || d.Origin != origin || !slices.Contains(sigs, d.Signal) {
				continue
			}
			bat.Reset()
			hdr, err := dec.Decode(&bat, d.Data)
			if err != nil {
				t.Errorf("record %s@%s: %v", d.Partition, d.Pos, err)
				continue
			}
			seq, _ := strconv.ParseUint(string(d.Pos), 10, 64)
			r := streamRecord{Origin: d.Origin, Signal: d.Signal, ID: hdr.ID(), Partition: d.Partition, Pos: d.Pos, Seq: seq,
				Data: bytes.Clone(d.Data)}
			switch n := max(b.Partitions, 1); {
			case len(bat.Metrics) > 0:
				r.Logical = wire.MetricPartition(&bat.Metrics[0], n)
			case len(bat.Dists) > 0:
				r.Logical = wire.DistPartition(&bat.Dists[0], n)
			}
			for _, m := range bat.Metrics {
				r.Batch.Metrics = append(r.Batch.Metrics, model.Metric{Name: strings.Clone(m.Name), Kind: m.Kind, Value: m.Value, Timestamp: m.Timestamp})
			}
			for _, d := range bat.Dists {
				r.Batch.Dists = append(r.Batch.Dists, model.Distribution{Name: strings.Clone(d.Name), Count: d.Count,
					Timestamp: d.Timestamp, Window: d.Window, Correction: d.Correction})
			}
			out = append(out, r)
		}
		if end.reached(seen) {
			stop()
		}
		return nil
	}
	err = st.Consume(cctx, o, h)
	switch {
	case err != nil && cctx.Err() == nil:
		t.Fatalf("read the %s stream: %v", b.Kind, err)
	case !end.reached(seen):
		t.Fatalf("read the %s stream: stopped (%v) at %v before its end %v", b.Kind, ctx.Err(), seen, end)
	}
	return out
}

// republish publishes recs again, unchanged and under their ids, to the
// stream l runs on, from the test process: what an agent does when a
// publish timed out after the stream had stored it and it replays its
// spool.
func republish(t *testing.T, l *Les, recs []streamRecord) {
	t.Helper()
	b := backendOf(l)
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	st, err := b.open(ctx, l)
	if err != nil {
		t.Fatalf("open the %s stream: %v", b.Kind, err)
	}
	defer st.Close()
	out := make([]stream.Record, 0, len(recs))
	for _, r := range recs {
		out = append(out, stream.Record{Origin: r.Origin, Signal: r.Signal, Partition: r.Logical, ID: r.ID, Data: r.Data})
	}
	if err := st.Publish(ctx, out...); err != nil {
		t.Fatalf("re-publish %d records to the %s stream: %v", len(out), b.Kind, err)
	}
}

// streamDedups reports whether the stream l runs on drops re-published
// record ids itself (Capabilities().DedupWindow > 0).
func streamDedups(t *testing.T, l *Les) bool {
	t.Helper()
	b := backendOf(l)
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	st, err := b.open(ctx, l)
	if err != nil {
		t.Fatalf("open the %s stream: %v", b.Kind, err)
	}
	defer st.Close()
	return st.Capabilities().DedupWindow > 0
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
func lastSeq(ctx context.Context, url, token string) (uint64, error) {
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	s, err := js.Stream(ctx, "LES")
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
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
	args := []string{"tail", "--url", "nats://" + l.Addr("nats"), "--data-dir", filepath.Join(l.Dir, "data"), "--from-start", "--origin", "rollup"}
	out := map[string][]distLine{}
	for _, d := range parseDistLines(t, tailFor(t, l, 2*time.Second, args...)) {
		out[d.Name] = append(out[d.Name], d)
	}
	return out
}
