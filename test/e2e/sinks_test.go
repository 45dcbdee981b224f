package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/sink/sinktest/backendtest"
)

// TestSinkReplay is issue 9's "replay into a new backend", end to end:
//
//  1. `les up` (embedded stream) with only a file sink takes StatsD
//     counters, gauges and timer samples and Wavefront gauges and
//     histogram samples; the rollup emits the minute window, which the
//     file sink archives.
//  2. les is stopped, and a prometheus_remote_write sink to a real
//     VictoriaMetrics and an influxdb sink to a real influxd (both
//     start_at: oldest) are added, with an influxdb sink that starts at
//     newest and one whose backend is a closed port. Started again, les
//     back-fills both backends from the stream with exactly the values
//     sent — the producers are not involved.
//  3. Data sent after the restart reaches every live sink, the newest
//     sink gets only that, the dead sink holds none of them back (intake
//     keeps answering 2xx) and its lag shows in /metrics.
//
// The window is the previous minute, with a grace chosen so that it closes
// a few seconds after les starts: the test does not wait for a minute to
// end.
func TestSinkReplay(t *testing.T) {
	t.Parallel()
	vm := backendtest.VictoriaMetrics(t)
	influx := backendtest.InfluxDB(t)
	for _, db := range []string{"les", "late"} {
		influxQL(t, influx.URL, "", "CREATE DATABASE "+db)
	}
	lesBinary(t) // build before the clock starts

	const archive = `  - name: archive
    type: file
    file: { path: ./out.ndjson }
`
	// The window of the data is the previous minute; it closes closeAfter
	// from now (its end + grace), time enough to start les and send. If les
	// is slow to start (a loaded machine), it starts again in a fresh
	// directory with more time.
	var (
		l            *Les
		base, rollup string
		win, closeAt time.Time
		closeAfter   = 10 * time.Second
	)
	for {
		l = NewLes(t, "")
		base = l.Config
		now := time.Now()
		win = now.Truncate(time.Minute).Add(-time.Minute)
		closeAt = now.Add(closeAfter)
		grace := closeAt.Sub(win.Add(time.Minute)).Truncate(time.Millisecond) + time.Millisecond
		rollup = fmt.Sprintf("rollup: { grace: %s, tick: 200ms, percentiles: [0.5, 0.99] }\n", grace)
		l.Config = base + rollup + "sinks:\n" + archive
		l.Start()
		if left := time.Until(closeAt); left >= closeAfter/2 {
			break
		} else if closeAfter >= 40*time.Second {
			t.Fatalf("les took %v to start", closeAfter-left)
		}
		l.Kill()
		closeAfter *= 2
	}

	// Phase 1: the producers send, once.
	at := func(d time.Duration) int64 { return win.Add(d).Unix() }
	sendDatagrams(t, "udp", l.Addr("statsd"),
		fmt.Sprintf("sk.req:2|c|#source:fn-a,env:e2e|T%d\nsk.temp:10|g|#source:fn-a,env:e2e|T%d\nsk.lat:100:200|ms|#source:fn-a,env:e2e|T%d",
			at(5*time.Second), at(5*time.Second), at(5*time.Second)),
		fmt.Sprintf("sk.req:3|c|#source:fn-a,env:e2e|T%d\nsk.req:1|c|@0.25|#source:fn-a,env:e2e|T%d\nsk.temp:12|g|#source:fn-a,env:e2e|T%d\nsk.lat:300|ms|#source:fn-a,env:e2e|T%d\nsk.lat:400|ms|#source:fn-a,env:e2e|T%d",
			at(20*time.Second), at(30*time.Second), at(40*time.Second), at(20*time.Second), at(50*time.Second)))
	wfTS := at(15 * time.Second)
	sendTCP(t, l.Addr("wavefront"), fmt.Sprintf("sk.wf.temp 21.5 %d source=fn-w env=e2e\n", wfTS))
	sendTCP(t, l.Addr("hist_minute"), fmt.Sprintf("sk.wf.lat 7 %d source=fn-w\nsk.wf.lat 9 %d source=fn-w\n", at(10*time.Second), at(45*time.Second)))
	waitFor(t, 10*time.Second, "the agent to take the data", func() bool {
		return l.Metric(`les_ingest_received_total{format="statsd",transport="udp"}`) == 9 && // one per value: 100:200 is two
			l.Metric(`les_ingest_received_total{format="wavefront",transport="tcp"}`) == 1 &&
			l.Metric(`les_ingest_received_total{format="histogram_minute",transport="tcp"}`) == 2
	})

	// The rollup emits the window at closeAt; the file sink archives it.
	archived := func() map[string][]distLine {
		return fileItems(t, filepath.Join(l.Dir, "out.ndjson"))
	}
	var items map[string][]distLine
	waitFor(t, closeAfter+30*time.Second, "the minute window in the file sink", func() bool {
		items = archived()
		for _, n := range []string{"sk.req", "sk.temp", "sk.lat", "sk.wf.lat", "sk.wf.temp"} {
			if len(items[n]) == 0 {
				return false
			}
		}
		return true
	})
	if v := l.Metric(`les_rollup_late_samples_total`); v != 0 {
		t.Fatalf("%v late samples: the data reached the rollup after its window closed", v)
	}
	winTS := win.UTC().Format(time.RFC3339)
	one := func(name string) distLine {
		t.Helper()
		if len(items[name]) != 1 {
			t.Fatalf("%s: %d items in the file sink, want 1: %+v", name, len(items[name]), items[name])
		}
		return items[name][0]
	}
	// What was sent, as the rollup must have emitted it (sample rate 0.25
	// counts 4; the gauge is the last one by time).
	if d := one("sk.req"); d.Kind != "counter" || d.Value != 9 || d.Window != "minute" || d.Timestamp != winTS || d.Source != "fn-a" || d.Tags["env"] != "e2e" {
		t.Errorf("sk.req = %+v, want counter 2+3+1/0.25 = 9 at %s", d, winTS)
	}
	if d := one("sk.temp"); d.Kind != "gauge" || d.Value != 12 || d.Window != "minute" || d.Timestamp != winTS {
		t.Errorf("sk.temp = %+v, want gauge 12 at %s", d, winTS)
	}
	lat := one("sk.lat")
	if lat.Count != 4 || lat.Sum != 1000 || lat.Min != 100 || lat.Max != 400 || lat.Timestamp != winTS || lat.Correction != 0 {
		t.Errorf("sk.lat = %+v, want count 4, sum 1000, min 100, max 400 at %s", lat, winTS)
	}
	// The sketch's quantile q is the value of rank ⌊q·(n−1)⌋ (from 0),
	// within 1%: p50 of 100…400 is 200, p99 is 300.
	for q, v := range map[string]float64{"p50": 200, "p99": 300} {
		if p := lat.Percentiles[q]; math.Abs(p-v) > v/100 {
			t.Errorf("sk.lat %s = %v, want %v ± 1%%", q, p, v)
		}
	}
	wfLat := one("sk.wf.lat")
	if wfLat.Count != 2 || wfLat.Sum != 16 || wfLat.Min != 7 || wfLat.Max != 9 || wfLat.Source != "fn-w" || wfLat.Timestamp != winTS {
		t.Errorf("sk.wf.lat = %+v, want count 2, sum 16, min 7, max 9 at %s", wfLat, winTS)
	}
	if d := one("sk.wf.temp"); d.Kind != "gauge" || d.Value != 21.5 || d.Timestamp != time.Unix(wfTS, 0).UTC().Format(time.RFC3339) {
		t.Errorf("sk.wf.temp = %+v, want gauge 21.5 at %d", d, wfTS)
	}
	l.Stop()

	// Phase 2: add the backends to the config and start les again.
	dead := freePort(t) // nothing listens there
	l.Config = base + rollup + "sinks:\n" + archive + fmt.Sprintf(`  - name: vm
    type: prometheus_remote_write
    start_at: oldest
    prometheus_remote_write: { url: %[1]s/api/v1/write }
  - name: influx
    type: influxdb
    start_at: oldest
    influxdb: { url: %[2]s, database: les }
  - name: late
    type: influxdb
    start_at: newest
    influxdb: { url: %[2]s, database: late }
  - name: dead
    type: prometheus_remote_write
    retry: { initial_backoff: 50ms, max_backoff: 200ms, timeout: 1s }
    prometheus_remote_write: { url: http://127.0.0.1:%[3]d/api/v1/write }
`, vm.URL, influx.URL, dead)
	l.Start()

	winMs := win.UnixMilli()
	fnA := `{env="e2e",source="fn-a"}`
	fnW := `{source="fn-w"}`
	want := map[string][]sample{
		"sk_req" + fnA:       {{winMs, 9}},
		"sk_temp" + fnA:      {{winMs, 12}},
		"sk_lat_count" + fnA: {{winMs, 4}},
		"sk_lat_sum" + fnA:   {{winMs, 1000}},
		"sk_lat_min" + fnA:   {{winMs, 100}},
		"sk_lat_max" + fnA:   {{winMs, 400}},
		`sk_lat{env="e2e",quantile="0.5",source="fn-a"}`:  {{winMs, lat.Percentiles["p50"]}},
		`sk_lat{env="e2e",quantile="0.99",source="fn-a"}`: {{winMs, lat.Percentiles["p99"]}},
		"sk_wf_lat_count" + fnW:                           {{winMs, 2}},
		"sk_wf_lat_sum" + fnW:                             {{winMs, 16}},
		"sk_wf_lat_min" + fnW:                             {{winMs, 7}},
		"sk_wf_lat_max" + fnW:                             {{winMs, 9}},
		`sk_wf_lat{quantile="0.5",source="fn-w"}`:         {{winMs, wfLat.Percentiles["p50"]}},
		`sk_wf_lat{quantile="0.99",source="fn-w"}`:        {{winMs, wfLat.Percentiles["p99"]}},
		`sk_wf_temp{env="e2e",source="fn-w"}`:             {{wfTS * 1000, 21.5}},
	}
	var got map[string][]sample
	waitFor(t, 30*time.Second, "the back-fill in VictoriaMetrics", func() bool {
		got = vmExport(t, vm, `{__name__=~"sk_.*"}`)
		return len(got) >= len(want)
	})
	checkSeries(t, "VictoriaMetrics", got, want)

	ms := func(sec int64) int64 { return sec * 1000 }
	wantInflux := map[string][]influxRow{
		"sk.req":     {{winMs, map[string]any{"source": "fn-a", "env": "e2e", "window": "minute", "value": 9.0}}},
		"sk.temp":    {{winMs, map[string]any{"source": "fn-a", "env": "e2e", "window": "minute", "value": 12.0}}},
		"sk.wf.temp": {{ms(wfTS), map[string]any{"source": "fn-w", "env": "e2e", "value": 21.5}}},
		"sk.lat": {{winMs, map[string]any{"source": "fn-a", "env": "e2e", "window": "minute",
			"count": 4.0, "sum": 1000.0, "min": 100.0, "max": 400.0, "avg": 250.0, "p50": lat.Percentiles["p50"], "p99": lat.Percentiles["p99"]}}},
		"sk.wf.lat": {{winMs, map[string]any{"source": "fn-w", "window": "minute",
			"count": 2.0, "sum": 16.0, "min": 7.0, "max": 9.0, "avg": 8.0, "p50": wfLat.Percentiles["p50"], "p99": wfLat.Percentiles["p99"]}}},
	}
	var gotInflux map[string][]influxRow
	waitFor(t, 30*time.Second, "the back-fill in InfluxDB", func() bool {
		gotInflux = influxRows(t, influx.URL, "les")
		return len(gotInflux) >= len(wantInflux)
	})
	checkInflux(t, "influx", gotInflux, wantInflux)

	// Phase 3: the newest sink began where the stream ended when it was
	// added (its durable exists once its lag is known); only what is sent
	// from now on reaches it. Meanwhile the dead sink retries, and the
	// intake and the other sinks go on as if it were not there.
	waitFor(t, 30*time.Second, "the newest sink's cursor", func() bool {
		return l.Metric(`les_consumer_lag_records{consumer="late"}`) >= 0
	})
	afterTS := time.Now().Unix() - 10
	var afterVM []sample
	var afterInflux []influxRow
	var slowest time.Duration
	for i := range int64(5) {
		start := time.Now()
		status, body := postAPI(t, l, "/report?f=wavefront", fmt.Appendf(nil, "sk.after %d %d source=fn-h\n", i+1, afterTS+i), nil)
		slowest = max(slowest, time.Since(start))
		if status/100 != 2 || !strings.Contains(body, `"accepted":1`) {
			t.Fatalf("POST /report with a dead sink: %d %s", status, body)
		}
		afterVM = append(afterVM, sample{ms(afterTS + i), float64(i + 1)})
		afterInflux = append(afterInflux, influxRow{ms(afterTS + i), map[string]any{"source": "fn-h", "value": float64(i + 1)}})
	}
	t.Logf("intake with a dead sink: slowest of 5 POSTs took %v", slowest)
	want[`sk_after{source="fn-h"}`] = afterVM
	wantInflux["sk.after"] = afterInflux
	waitFor(t, 30*time.Second, "the new data in every live sink", func() bool {
		got = vmExport(t, vm, `{__name__=~"sk_.*"}`)
		gotInflux = influxRows(t, influx.URL, "les")
		late := influxRows(t, influx.URL, "late")
		return len(got[`sk_after{source="fn-h"}`]) == 5 && len(gotInflux["sk.after"]) == 5 && len(late["sk.after"]) == 5
	})
	checkSeries(t, "VictoriaMetrics", got, want)
	checkInflux(t, "influx", gotInflux, wantInflux)
	checkInflux(t, "late (start_at: newest)", influxRows(t, influx.URL, "late"), map[string][]influxRow{"sk.after": afterInflux})
	if n := len(archived()["sk.after"]); n != 5 {
		t.Errorf("file sink: %d sk.after items, want 5", n)
	}

	// The dead sink: nothing delivered, retrying, and its lag visible.
	waitFor(t, 10*time.Second, "the dead sink's lag in /metrics", func() bool {
		return l.Metric(`les_consumer_lag_records{consumer="dead"}`) > 0
	})
	if v := l.Metric(`les_sink_delivered_items_total{sink="dead"}`); v != 0 {
		t.Errorf("dead sink delivered %v items", v)
	}
	if v := l.Metric(`les_sink_retries_total{sink="dead"}`); v == 0 {
		t.Errorf("dead sink: no retries counted")
	}
	for _, c := range []string{"archive", "vm", "influx", "late"} {
		waitFor(t, 10*time.Second, c+"'s lag to reach 0", func() bool {
			return l.Metric(`les_consumer_lag_records{consumer="`+c+`"}`) == 0
		})
	}
	l.Stop()
}

// sendTCP writes lines to addr over one TCP connection and closes it.
func sendTCP(t *testing.T, addr, lines string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, lines); err != nil {
		t.Fatalf("send to %s: %v", addr, err)
	}
}

// fileItems reads a file sink's NDJSON, by item name; re-deliveries of a
// record (same record id and item) count once.
func fileItems(t *testing.T, path string) map[string][]distLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	out := map[string][]distLine{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var d distLine
		if json.Unmarshal(sc.Bytes(), &d) != nil {
			continue // a torn last line while les writes
		}
		k := d.Record + "/" + strconv.Itoa(d.Item)
		if seen[k] {
			continue
		}
		seen[k] = true
		out[d.Name] = append(out[d.Name], d)
	}
	return out
}

// sample is one raw sample of a series: time in ms and value.
type sample struct {
	Ms int64
	V  float64
}

// vmExport reads every raw sample of the series matching selector from
// VictoriaMetrics' /api/v1/export, keyed name{label="value",…} with the
// labels sorted.
func vmExport(t *testing.T, vm *backendtest.Server, selector string) map[string][]sample {
	t.Helper()
	vm.Flush(t)
	resp, err := http.Get(vm.URL + "/api/v1/export?" + url.Values{"match[]": {selector}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d %s", resp.StatusCode, body)
	}
	out := map[string][]sample{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var line struct {
			Metric     map[string]string
			Values     []float64
			Timestamps []int64
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("export line %s: %v", sc.Bytes(), err)
		}
		var labels []string
		for k, v := range line.Metric {
			if k != "__name__" {
				labels = append(labels, fmt.Sprintf("%s=%q", k, v))
			}
		}
		slices.Sort(labels)
		key := line.Metric["__name__"] + "{" + strings.Join(labels, ",") + "}"
		for i, v := range line.Values {
			out[key] = append(out[key], sample{line.Timestamps[i], v})
		}
		slices.SortFunc(out[key], func(a, b sample) int { return int(a.Ms - b.Ms) })
	}
	return out
}

func checkSeries(t *testing.T, backend string, got, want map[string][]sample) {
	t.Helper()
	// VictoriaMetrics keeps 12 significant digits.
	eq := func(a, b sample) bool {
		return a.Ms == b.Ms && math.Abs(a.V-b.V) <= 1e-11*math.Max(math.Abs(a.V), math.Abs(b.V))
	}
	for k, w := range want {
		if !slices.EqualFunc(got[k], w, eq) {
			t.Errorf("%s: %s = %v, want %v", backend, k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected series %s = %v", backend, k, g)
		}
	}
}

// influxRow is one point read back from InfluxDB: time in ms, and its
// tags and fields by column name (numbers as float64).
type influxRow struct {
	Ms   int64
	Cols map[string]any
}

// influxQL runs one InfluxQL statement on db ("" for none).
func influxQL(t *testing.T, base, db, q string) []influxResultSeries {
	t.Helper()
	v := url.Values{"q": {q}, "epoch": {"ms"}}
	if db != "" {
		v.Set("db", db)
	}
	resp, err := http.PostForm(base+"/query", v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Error  string
			Series []influxResultSeries
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("influx %q: %v", q, err)
	}
	if len(out.Results) != 1 || out.Results[0].Error != "" {
		t.Fatalf("influx %q: %+v", q, out)
	}
	return out.Results[0].Series
}

type influxResultSeries struct {
	Name    string
	Columns []string
	Values  [][]any
}

// influxRows reads every point of every measurement of db, by
// measurement, oldest first.
func influxRows(t *testing.T, base, db string) map[string][]influxRow {
	t.Helper()
	out := map[string][]influxRow{}
	for _, se := range influxQL(t, base, db, "SELECT * FROM /.*/") {
		for _, vals := range se.Values {
			r := influxRow{Cols: map[string]any{}}
			for i, c := range se.Columns {
				switch {
				case c == "time":
					r.Ms = int64(vals[i].(float64))
				case vals[i] != nil:
					r.Cols[c] = vals[i]
				}
			}
			out[se.Name] = append(out[se.Name], r)
		}
	}
	return out
}

func checkInflux(t *testing.T, backend string, got, want map[string][]influxRow) {
	t.Helper()
	eq := func(a, b []influxRow) bool {
		return slices.EqualFunc(a, b, func(x, y influxRow) bool {
			return x.Ms == y.Ms && fmt.Sprint(x.Cols) == fmt.Sprint(y.Cols)
		})
	}
	for k, w := range want {
		if !eq(got[k], w) {
			t.Errorf("%s: %s = %v, want %v", backend, k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected measurement %s = %v", backend, k, g)
		}
	}
}
