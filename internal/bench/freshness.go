package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Freshness probes: while the load runs, the bench sends ProbeRate probes
// per second. Each is two lines:
//
//   - a delivery probe that carries its send time (Unix µs) in a tag
//     probe_sent_us: an event (a log) over StatsD, a span over Wavefront
//     (to the trace listener: les' Wavefront metrics port takes no spans),
//     so that a sink reading only logs or spans gets the probes and none of
//     the load;
//   - a window probe, a sample of the series les.bench.probe.window (a
//     StatsD timer, or a Wavefront point to the histogram_minute listener).
//
// Over StatsD both lines are one datagram to the load's own socket.
//
// A sink of les (type http, docs/bench/freshness-*.yaml) posts the probes
// and the closed windows to the bench's probe server as NDJSON. Delivery
// latency is arrival at the server minus the probe's send time; window
// latency is the arrival of the window's distribution minus the send time
// of each probe in that window.
const (
	probeName       = "les.bench.probe"
	probeWindowName = "les.bench.probe.window"
	probeTag        = "probe_sent_us"
)

// Freshness is what the probes measured. Latencies are in seconds.
type Freshness struct {
	ProbesSent      int     `json:"probes_sent"`
	ProbesDelivered int     `json:"probes_delivered"`
	DeliveryP50     float64 `json:"delivery_p50_seconds"`
	DeliveryP99     float64 `json:"delivery_p99_seconds"`
	DeliveryMax     float64 `json:"delivery_max_seconds"`
	// WindowProbes is how many probes fell in windows whose distribution
	// arrived; WindowCounted is the sum of those distributions' counts
	// (equal when les counted every window probe).
	WindowProbes  int     `json:"window_probes"`
	WindowCounted float64 `json:"window_counted"`
	WindowsSeen   int     `json:"windows_seen"`
	WindowP50     float64 `json:"window_p50_seconds"`
	WindowP99     float64 `json:"window_p99_seconds"`
	WindowMax     float64 `json:"window_max_seconds"`
}

// appendDeliveryProbe appends the delivery probe line for format f, sent
// at sentUs (Unix µs); seq makes span ids unique.
func appendDeliveryProbe(dst []byte, f string, seq uint64, sentUs int64) []byte {
	us := strconv.FormatInt(sentUs, 10)
	if f == "statsd" {
		text := "probe " + strconv.FormatUint(seq, 10)
		return fmt.Appendf(dst, "_e{%d,%d}:%s|%s|#%s:%s", len(probeName), len(text), probeName, text, probeTag, us)
	}
	id := strconv.FormatUint(seq, 10)
	return fmt.Appendf(dst, "%s source=les-bench traceId=probe-%s spanId=probe-%s %s=%s %d 1",
		probeName, id, id, probeTag, us, sentUs/1000)
}

// appendWindowProbe appends the window probe line for format f.
func appendWindowProbe(dst []byte, f string) []byte {
	if f == "statsd" {
		return fmt.Appendf(dst, "%s:1|ms|#source:les-bench", probeWindowName)
	}
	return fmt.Appendf(dst, "%s 1 source=les-bench", probeWindowName)
}

// probeItem is the part of a JSON item (docs/wire-format.md, "JSON view")
// the probe server reads.
type probeItem struct {
	Type      string            `json:"type"`
	Name      string            `json:"name"`
	Timestamp time.Time         `json:"timestamp"`
	Window    string            `json:"window"`
	Count     float64           `json:"count"`
	Tags      map[string]string `json:"tags"`
	Attrs     map[string]string `json:"attrs"`
}

// windowSeen is one closed window of the probe series as it arrived.
type windowSeen struct {
	start   time.Time
	count   float64
	arrived time.Time
}

// probeObs collects what the probe server received.
type probeObs struct {
	mu       sync.Mutex
	delivery []float64            // seconds
	windows  map[int64]windowSeen // by window start, Unix ns; the first arrival
	changed  chan struct{}        // signalled (without blocking) on each window
}

func newProbeObs() *probeObs {
	return &probeObs{windows: map[int64]windowSeen{}, changed: make(chan struct{}, 1)}
}

// add reads an NDJSON body that arrived at arrived. Items other than
// probes and probe windows are ignored; a line that is not JSON is an
// error (the rest is still read).
func (o *probeObs) add(body io.Reader, arrived time.Time) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var bad error
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || !bytes.Contains(line, []byte(probeName)) {
			continue
		}
		var it probeItem
		if err := json.Unmarshal(line, &it); err != nil {
			bad = fmt.Errorf("bench: probe server: %w", err)
			continue
		}
		o.item(&it, arrived)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return bad
}

func (o *probeObs) item(it *probeItem, arrived time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case it.Type == "distribution" && it.Name == probeWindowName:
		k := it.Timestamp.UnixNano()
		w, ok := o.windows[k]
		if !ok {
			w = windowSeen{start: it.Timestamp, arrived: arrived}
		}
		w.count += it.Count // a correction window adds to the first
		o.windows[k] = w
		select {
		case o.changed <- struct{}{}:
		default:
		}
	case it.Type == "span" && it.Name == probeName, it.Type == "log" && it.Attrs["title"] == probeName:
		v := it.Tags[probeTag]
		if v == "" {
			v = it.Attrs[probeTag]
		}
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return
		}
		o.delivery = append(o.delivery, arrived.Sub(time.UnixMicro(us)).Seconds())
	}
}

// hasWindow reports whether the window holding t has arrived.
func (o *probeObs) hasWindow(t time.Time, window time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.windows[t.Truncate(window).UnixNano()]
	return ok
}

// result computes the freshness of the probes sent at sent (send times).
func (o *probeObs) result(sent []time.Time, window time.Duration) Freshness {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := Freshness{ProbesSent: len(sent), ProbesDelivered: len(o.delivery), WindowsSeen: len(o.windows)}
	f.DeliveryP50, f.DeliveryP99, f.DeliveryMax = percentiles(o.delivery)
	var lat []float64
	counted := map[int64]bool{}
	for _, s := range sent {
		k := s.Truncate(window).UnixNano()
		w, ok := o.windows[k]
		if !ok {
			continue
		}
		lat = append(lat, w.arrived.Sub(s).Seconds())
		if !counted[k] {
			counted[k] = true
			f.WindowCounted += w.count
		}
	}
	f.WindowProbes = len(lat)
	f.WindowP50, f.WindowP99, f.WindowMax = percentiles(lat)
	return f
}

// percentiles returns the p50, p99 and maximum of v (nearest rank; zeros
// when v is empty). v is sorted in place.
func percentiles(v []float64) (p50, p99, maxV float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(v)))) - 1
		return v[max(0, min(i, len(v)-1))]
	}
	return rank(0.50), rank(0.99), v[len(v)-1]
}

// probeServer serves the http sink's POSTs on addr until ctx ends.
type probeServer struct {
	obs  *probeObs
	srv  *http.Server
	ln   net.Listener
	errs chan error
}

func startProbeServer(addr string, obs *probeObs) (*probeServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: probe server: %w", err)
	}
	p := &probeServer{obs: obs, ln: ln, errs: make(chan error, 1)}
	p.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			defer zr.Close()
			body = zr
		}
		if err := obs.add(body, arrived); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() {
		if err := p.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			p.errs <- err
		}
		close(p.errs)
	}()
	return p, nil
}

func (p *probeServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	<-p.errs
}
