package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// Config is what `les bench` is asked to do.
type Config struct {
	// Transport is udp (default) or tcp.
	Transport string
	// Addr is the les listener (default 127.0.0.1:2878 for wavefront,
	// 127.0.0.1:8125 for statsd).
	Addr string
	// Format is wavefront (default) or statsd.
	Format string
	// Rate in lines per second across all senders; 0 means as fast as
	// possible.
	Rate int
	// Duration of the send phase.
	Duration time.Duration
	// Series is the number of distinct series (default 5000).
	Series int
	// LinesPerDatagram (default 20); datagrams never exceed MaxDatagram.
	LinesPerDatagram int
	// MaxDatagram bytes (default 8192).
	MaxDatagram int
	// Senders is the number of sending goroutines (default 1).
	Senders int
	// MetricsURL is les' /metrics (default http://127.0.0.1:2880/metrics);
	// "none" makes the bench a generator only (for a peer that is not les,
	// docs/bench/compare-veneur.sh): it neither scrapes nor waits to drain,
	// and the result has the sent figures only.
	MetricsURL string
	// Sink is the sink whose deliveries are counted (default "bench").
	Sink string
	// DrainTimeout bounds the wait for the pipeline to drain (default 60s).
	DrainTimeout time.Duration
	// Seed makes the generated mix reproducible (default 1).
	Seed uint64
	// ProbeListen, when set, is the address of the probe server that les'
	// probe sink posts to (freshness.go); the bench then sends ProbeRate
	// probes per second (default 100) with the load and reports their
	// freshness.
	ProbeListen string
	ProbeRate   int
	// ProbeAddr and WindowAddr are where delivery and window probes go
	// (defaults: Addr for statsd; the trace listener 127.0.0.1:30000 and
	// the histogram_minute listener 127.0.0.1:40001 for wavefront).
	ProbeAddr  string
	WindowAddr string
	// WindowWait, when positive, makes the bench wait after the drain, up
	// to that long, for the minute window of the last probe to be emitted
	// (its end plus the rollup's grace: about 90 s with the defaults).
	WindowWait time.Duration
}

func (c *Config) defaults() error {
	if c.Transport == "" {
		c.Transport = "udp"
	}
	if c.Format == "" {
		c.Format = "wavefront"
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:2878"
		if c.Format == "statsd" {
			c.Addr = "127.0.0.1:8125"
		}
	}
	if c.Series == 0 {
		c.Series = 5000
	}
	if c.LinesPerDatagram == 0 {
		c.LinesPerDatagram = 20
	}
	if c.MaxDatagram == 0 {
		c.MaxDatagram = 8192
	}
	if c.Senders == 0 {
		c.Senders = 1
	}
	if c.MetricsURL == "" {
		c.MetricsURL = "http://127.0.0.1:2880/metrics"
	}
	if c.Sink == "" {
		c.Sink = "bench"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 60 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.ProbeListen != "" && c.ProbeRate == 0 {
		c.ProbeRate = 100
	}
	if c.ProbeAddr == "" {
		c.ProbeAddr = c.Addr
		if c.Format == "wavefront" {
			c.ProbeAddr = "127.0.0.1:30000"
		}
	}
	if c.WindowAddr == "" {
		c.WindowAddr = c.Addr
		if c.Format == "wavefront" {
			c.WindowAddr = "127.0.0.1:40001"
		}
	}
	switch {
	case c.Transport != "udp" && c.Transport != "tcp":
		return fmt.Errorf("bench: transport %q is not one of udp, tcp", c.Transport)
	case c.Format != "wavefront" && c.Format != "statsd":
		return fmt.Errorf("bench: format %q is not one of wavefront, statsd", c.Format)
	case c.Format == "statsd" && c.Transport == "tcp":
		return errors.New("bench: statsd is received over udp only")
	case c.Rate < 0 || c.Duration <= 0:
		return errors.New("bench: rate must not be negative and duration must be positive")
	case c.Series < 1 || c.Senders < 1 || c.LinesPerDatagram < 1:
		return errors.New("bench: series, senders and lines per datagram must be at least 1")
	case c.ProbeRate < 0 || c.ProbeRate > 100000:
		return errors.New("bench: probe rate must be within 0..100000 per second")
	case c.MaxDatagram < 256 || c.MaxDatagram > 65000:
		return errors.New("bench: max datagram must be within 256..65000 bytes")
	}
	return nil
}

// Result is what one run measured. Counts are deltas of les' counters
// over the run.
type Result struct {
	Format       string  `json:"format"`
	Transport    string  `json:"transport"`
	Series       int     `json:"series"`
	Senders      int     `json:"senders"`
	TargetRate   int     `json:"target_rate"`      // 0: max
	Duration     float64 `json:"duration_seconds"` // of the send phase
	DrainSeconds float64 `json:"drain_seconds"`

	Sent        uint64  `json:"lines_sent"`
	Datagrams   uint64  `json:"datagrams_sent"`
	SendErrors  uint64  `json:"send_errors"`
	SentRate    float64 `json:"sent_lines_per_second"`
	Received    uint64  `json:"received"`
	Rejected    uint64  `json:"rejected"`
	Accepted    uint64  `json:"accepted"`
	KernelDrops uint64  `json:"udp_kernel_drops"`
	Published   uint64  `json:"published_items"`
	Delivered   uint64  `json:"delivered_items"`
	DeliveredTo string  `json:"delivered_to"`
	// For the rollup: records consumed versus records published.
	RollupRecords    uint64  `json:"rollup_records,omitempty"`
	PublishedRecords uint64  `json:"published_records"`
	RollupEmitted    uint64  `json:"rollup_emitted_items,omitempty"`
	Lag              float64 `json:"final_lag_records"`

	LossPercent   float64 `json:"loss_percent"` // (sent − accepted) / sent
	AcceptedRate  float64 `json:"accepted_lines_per_second"`
	CPUSeconds    float64 `json:"les_cpu_seconds"`
	CPUPerMillion float64 `json:"les_cpu_seconds_per_million_lines"`
	PeakRSSBytes  float64 `json:"les_peak_rss_bytes"`
	RSSBytes      float64 `json:"les_rss_bytes"`

	// Freshness is set when probes were sent (Config.ProbeListen).
	Freshness *Freshness `json:"freshness,omitempty"`
}

// Run drives les as c says, waits for it to drain and returns the result.
// progress, when not nil, receives one line per second while sending.
func Run(ctx context.Context, c Config, progress io.Writer) (*Result, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	rng := rand.New(rand.NewPCG(c.Seed, 0x1e5))
	ss := makeSeries(c.Series, rng)

	// Enough distinct datagrams per sender to cover every series a few
	// times, so the mix is realistic and the generator only copies bytes.
	perSender := max(64, 3*c.Series/c.LinesPerDatagram/c.Senders+1)
	type gen struct {
		dgrams [][]byte
		lines  []int
	}
	gens := make([]gen, c.Senders)
	for i := range gens {
		r := rand.New(rand.NewPCG(c.Seed, uint64(i)+1))
		d, l, err := payloads(c.Format, ss, perSender, c.LinesPerDatagram, c.MaxDatagram, r)
		if err != nil {
			return nil, err
		}
		gens[i] = gen{d, l}
	}

	genOnly := c.MetricsURL == "none"
	var before snapshot
	if !genOnly {
		var err error
		if before, err = scrape(ctx, hc, c.MetricsURL); err != nil {
			return nil, err
		}
	}
	conns := make([]net.Conn, c.Senders)
	for i := range conns {
		conn, err := net.Dial(c.Transport, c.Addr)
		if err != nil {
			for _, cc := range conns[:i] {
				cc.Close()
			}
			return nil, fmt.Errorf("bench: %w", err)
		}
		if uc, ok := conn.(*net.UDPConn); ok {
			_ = uc.SetWriteBuffer(4 << 20)
		}
		conns[i] = conn
	}

	var obs *probeObs
	if c.ProbeListen != "" {
		obs = newProbeObs()
		ps, err := startProbeServer(c.ProbeListen, obs)
		if err != nil {
			for _, cc := range conns {
				cc.Close()
			}
			return nil, err
		}
		defer ps.close()
	}

	var sent, dgrams, errs atomic.Uint64
	sendCtx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var probeTimes []time.Time
	if obs != nil {
		pc, err := net.Dial(c.Transport, c.ProbeAddr)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		wc := pc
		if c.WindowAddr != c.ProbeAddr {
			if wc, err = net.Dial(c.Transport, c.WindowAddr); err != nil {
				pc.Close()
				return nil, fmt.Errorf("bench: %w", err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close()
			defer wc.Close()
			probeTimes = sendProbes(sendCtx, pc, wc, c, &sent, &dgrams, &errs)
		}()
	}
	for i := range c.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns[i].Close()
			rate := float64(c.Rate) / float64(c.Senders)
			s := sender{conn: conns[i], tcp: c.Transport == "tcp", dgrams: gens[i].dgrams, lines: gens[i].lines}
			s.run(sendCtx, rate, &sent, &dgrams, &errs)
		}()
	}
	if progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			var last uint64
			for {
				select {
				case <-sendCtx.Done():
					return
				case <-t.C:
					n := sent.Load()
					fmt.Fprintf(progress, "  sending: %d lines (%d lines/s)\n", n, n-last)
					last = n
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	// Drain: wait until what les counts stops moving and the lag is 0.
	drainStart := time.Now()
	var after snapshot
	if !genOnly {
		var err error
		if after, err = drain(ctx, hc, c); err != nil {
			return nil, err
		}
	}
	r := &Result{
		Format: c.Format, Transport: c.Transport, Series: c.Series, Senders: c.Senders,
		TargetRate: c.Rate, Duration: elapsed.Seconds(), DrainSeconds: time.Since(drainStart).Seconds(),
		Sent: sent.Load(), Datagrams: dgrams.Load(), SendErrors: errs.Load(),
	}
	r.SentRate = float64(r.Sent) / elapsed.Seconds()
	if genOnly {
		return r, nil
	}
	delta := func(name string, match ...string) uint64 {
		d := after.sum(name, match...) - before.sum(name, match...)
		if d < 0 {
			return 0
		}
		return uint64(d)
	}
	r.Received = delta("les_ingest_received_total", "format", c.Format, "transport", c.Transport)
	r.Rejected = delta("les_ingest_rejected_total", "format", c.Format)
	if r.Received >= r.Rejected {
		r.Accepted = r.Received - r.Rejected
	}
	r.KernelDrops = delta("les_ingest_udp_dropped_total", "format", c.Format)
	r.Published = delta("les_stream_published_items_total")
	r.PublishedRecords = delta("les_stream_published_records_total")
	r.Delivered = delta("les_sink_delivered_items_total", "sink", c.Sink)
	r.DeliveredTo = c.Sink
	r.Lag = after.sum("les_consumer_lag_records", "consumer", c.Sink)
	if c.Format == "statsd" || !after.has("les_sink_delivered_items_total") {
		r.DeliveredTo = "rollup"
		r.RollupRecords = delta("les_consumer_records_total", "consumer", "rollup")
		r.RollupEmitted = delta("les_processor_emitted_items_total", "consumer", "rollup")
		r.Lag = after.sum("les_consumer_lag_records", "consumer", "rollup")
	}
	if r.Sent > 0 && r.Sent > r.Accepted {
		r.LossPercent = 100 * float64(r.Sent-r.Accepted) / float64(r.Sent)
	}
	r.AcceptedRate = float64(r.Accepted) / elapsed.Seconds()
	r.CPUSeconds = after.sum("process_cpu_seconds_total") - before.sum("process_cpu_seconds_total")
	if r.Accepted > 0 {
		r.CPUPerMillion = r.CPUSeconds / (float64(r.Accepted) / 1e6)
	}
	r.PeakRSSBytes = after.sum("process_resident_memory_peak_bytes")
	r.RSSBytes = after.sum("process_resident_memory_bytes")
	if obs != nil {
		if c.WindowWait > 0 && len(probeTimes) > 0 {
			waitWindow(ctx, obs, probeTimes[len(probeTimes)-1], c.WindowWait)
		}
		f := obs.result(probeTimes, time.Minute)
		r.Freshness = &f
	}
	return r, nil
}

// drain polls les until the published and delivered counters and the
// consumers' lag have stopped changing (lag 0 for the counted consumer).
func drain(ctx context.Context, hc *http.Client, c Config) (snapshot, error) {
	deadline := time.Now().Add(c.DrainTimeout)
	var prev snapshot
	stable := 0
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		s, err := scrape(ctx, hc, c.MetricsURL)
		if err != nil {
			return nil, err
		}
		if prev != nil && quiet(prev, s, c.Sink) {
			stable++
		} else {
			stable = 0
		}
		// Lag is refreshed every ~2s by les, so ask for 3 s of quiet.
		if stable >= 6 || time.Now().After(deadline) {
			return s, nil
		}
		prev = s
	}
}

func quiet(a, b snapshot, sinkName string) bool {
	for _, n := range []string{"les_ingest_received_total", "les_stream_published_items_total",
		"les_sink_delivered_items_total", "les_consumer_records_total"} {
		if a.sum(n) != b.sum(n) {
			return false
		}
	}
	return b.sum("les_consumer_lag_records", "consumer", sinkName) <= 0 &&
		b.sum("les_ingest_queued_batches") == 0
}

// sender writes pre-generated datagrams (or, over TCP, newline-terminated
// blocks) at a fixed rate or as fast as it can.
type sender struct {
	conn   net.Conn
	tcp    bool
	dgrams [][]byte
	lines  []int
}

// burst is how many datagrams one sendmmsg call carries.
const burst = 32

func (s *sender) run(ctx context.Context, rate float64, sent, dgrams, errs *atomic.Uint64) {
	start := time.Now()
	var total uint64
	i := 0
	var pc *ipv4.PacketConn
	var msgs []ipv4.Message
	if uc, ok := s.conn.(*net.UDPConn); ok {
		pc = ipv4.NewPacketConn(uc)
		msgs = make([]ipv4.Message, burst)
	}
	var perMsg [burst]uint64
	var tcpBuf []byte
	for ctx.Err() == nil {
		if rate > 0 {
			due := uint64(rate * time.Since(start).Seconds())
			if total >= due {
				// Ahead of schedule: wait for about one burst's worth.
				wait := time.Duration(float64(burst*s.lines[0]) / rate * float64(time.Second))
				time.Sleep(min(max(wait, 100*time.Microsecond), 5*time.Millisecond))
				continue
			}
		}
		n := 0
		var lines uint64
		switch {
		case pc != nil:
			for n < burst {
				msgs[n].Buffers = [][]byte{s.dgrams[i]}
				perMsg[n] = uint64(s.lines[i])
				i = (i + 1) % len(s.dgrams)
				n++
			}
			for off := 0; off < n; {
				k, err := pc.WriteBatch(msgs[off:n], 0)
				if err != nil {
					// Datagrams not written were not sent.
					errs.Add(uint64(n - off))
					n = off
					break
				}
				off += k
			}
			for j := range n {
				lines += perMsg[j]
			}
		case s.tcp:
			tcpBuf = tcpBuf[:0]
			for n < burst {
				tcpBuf = append(tcpBuf, s.dgrams[i]...)
				tcpBuf = append(tcpBuf, '\n')
				lines += uint64(s.lines[i])
				i = (i + 1) % len(s.dgrams)
				n++
			}
			if _, err := s.conn.Write(tcpBuf); err != nil {
				errs.Add(1)
				return
			}
		default:
			if _, err := s.conn.Write(s.dgrams[i]); err != nil {
				errs.Add(1)
			} else {
				lines = uint64(s.lines[i])
				n = 1
			}
			i = (i + 1) % len(s.dgrams)
		}
		total += lines
		sent.Add(lines)
		dgrams.Add(uint64(n))
	}
}

// sendProbes sends c.ProbeRate probes per second until ctx ends: the
// delivery probe on pc, the window probe on wc (in the same datagram when
// they are the same socket). It returns the probes' send times. Probes sent
// to the load's own address count as sent lines (les counts them as
// received there); probes to other listeners do not.
func sendProbes(ctx context.Context, pc, wc net.Conn, c Config, sent, dgrams, errs *atomic.Uint64) []time.Time {
	t := time.NewTicker(time.Second / time.Duration(c.ProbeRate))
	defer t.Stop()
	var times []time.Time
	var buf []byte
	write := func(conn net.Conn, b []byte) bool {
		if c.Transport == "tcp" {
			b = append(b, '\n')
		}
		if _, err := conn.Write(b); err != nil {
			errs.Add(1)
			return false
		}
		return true
	}
	own := c.ProbeAddr == c.Addr
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return times
		case <-t.C:
		}
		now := time.Now()
		buf = appendDeliveryProbe(buf[:0], c.Format, seq, now.UnixMicro())
		if wc == pc {
			buf = append(buf, '\n')
			buf = appendWindowProbe(buf, c.Format)
			if write(pc, buf) {
				times = append(times, now)
				if own {
					sent.Add(2)
					dgrams.Add(1)
				}
			}
			continue
		}
		if write(pc, buf) {
			times = append(times, now)
			if own {
				sent.Add(1)
				dgrams.Add(1)
			}
		}
		write(wc, appendWindowProbe(buf[:0], c.Format))
	}
}

// waitWindow waits until the window holding last has arrived at the probe
// server, at most wait.
func waitWindow(ctx context.Context, obs *probeObs, last time.Time, wait time.Duration) {
	deadline := time.After(wait)
	for !obs.hasWindow(last, time.Minute) {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-obs.changed:
		}
	}
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteText writes r as a table.
func (r *Result) WriteText(w io.Writer) {
	rate := "max"
	if r.TargetRate > 0 {
		rate = fmt.Sprintf("%d lines/s", r.TargetRate)
	}
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "  %-26s "+format+"\n", append([]any{k}, a...)...) }
	fmt.Fprintf(w, "les bench: %s over %s, %d series, %d senders, rate %s\n", r.Format, r.Transport, r.Series, r.Senders, rate)
	row("send phase", "%.1f s (drain %.1f s)", r.Duration, r.DrainSeconds)
	row("lines sent", "%d (%d datagrams, %d send errors)", r.Sent, r.Datagrams, r.SendErrors)
	row("sent rate", "%.0f lines/s", r.SentRate)
	row("received by les", "%d", r.Received)
	row("rejected", "%d", r.Rejected)
	row("accepted", "%d", r.Accepted)
	row("udp kernel drops", "%d datagrams", r.KernelDrops)
	row("loss", "%.3f %%", r.LossPercent)
	row("accepted rate", "%.0f lines/s", r.AcceptedRate)
	row("published items", "%d (%d records)", r.Published, r.PublishedRecords)
	if r.DeliveredTo == "rollup" {
		row("rollup consumed", "%d records (%d emitted items)", r.RollupRecords, r.RollupEmitted)
	} else {
		row("delivered to "+r.DeliveredTo, "%d items", r.Delivered)
	}
	row("final lag", "%.0f records", r.Lag)
	row("les CPU", "%.2f s (%.2f s per million lines)", r.CPUSeconds, r.CPUPerMillion)
	row("les RSS", "%.1f MB now, %.1f MB peak", r.RSSBytes/1e6, r.PeakRSSBytes/1e6)
	if f := r.Freshness; f != nil {
		row("probes", "%d sent, %d delivered to the probe sink", f.ProbesSent, f.ProbesDelivered)
		row("send → sink", "p50 %.3f s, p99 %.3f s, max %.3f s", f.DeliveryP50, f.DeliveryP99, f.DeliveryMax)
		row("send → window emitted", "p50 %.1f s, p99 %.1f s, max %.1f s (%d probes in %d windows, counted %.0f)",
			f.WindowP50, f.WindowP99, f.WindowMax, f.WindowProbes, f.WindowsSeen, f.WindowCounted)
	}
}
