package extension

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/les-streams/les/internal/format/emf"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/ingest/wfhttp"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// ListenerConfig is one socket; the fields and their YAML keys are those
// of agent.listeners in les.yaml.
type ListenerConfig struct {
	Format         string `yaml:"format"`
	Transport      string `yaml:"transport"`
	Address        string `yaml:"address"`
	MaxLine        int    `yaml:"max_line"`
	MaxDatagram    int    `yaml:"max_datagram"`
	Readers        int    `yaml:"readers"`
	MaxConnections int    `yaml:"max_connections"`
	// Flavor (statsd): dogstatsd (default) or etsy, as in les up.
	Flavor string `yaml:"flavor"`
	// Source is the source of this listener's items that name none
	// (default: Config.Source), as in les up.
	Source string `yaml:"source"`
	// MaxBody is les up's bound on otlp request bodies; the extension
	// has no otlp listener, so a listener that sets it is refused.
	MaxBody int64 `yaml:"max_body"`

	// seriesBudget is set by bind for a tcp listener: the series caches
	// of its connections' decoders share it, as in les up.
	seriesBudget *wavefront.CacheBudget
}

// formatSpec is one listener format: its transports and a decoder
// factory given the default source (the function name).
type formatSpec struct {
	transports []string
	newDecoder func(l ListenerConfig, source string) ingest.Decoder
}

// Formats is the table of listener formats the extension offers. It
// mirrors the table in internal/app/listeners.go (the formats of les up
// and les agent; a test in internal/app checks that they agree) without
// linking internal/app, whose consumers, sinks and query half the
// extension must not carry (ADR 0005). The only difference: every
// decoder's default source is the function name.
func formats() map[string]formatSpec {
	wf := func(mode wavefront.Mode, w model.Window) func(ListenerConfig, string) ingest.Decoder {
		return func(l ListenerConfig, src string) ingest.Decoder {
			return wavefront.NewDecoder(wavefront.Options{Mode: mode, Window: w, MaxLineLen: l.MaxLine, DefaultSource: src,
				SeriesCache: wavefront.DefaultSeriesCache, SeriesCacheBudget: l.seriesBudget}) // one per reading goroutine
		}
	}
	both := []string{"tcp", "udp"}
	return map[string]formatSpec{
		"wavefront":        {both, wf(wavefront.ModeMetrics, model.WindowNone)},
		"histogram_minute": {both, wf(wavefront.ModeSample, model.WindowMinute)},
		"histogram_hour":   {both, wf(wavefront.ModeSample, model.WindowHour)},
		"histogram_day":    {both, wf(wavefront.ModeSample, model.WindowDay)},
		"distribution":     {both, wf(wavefront.ModeDistOnly, model.WindowNone)},
		"trace":            {both, wf(wavefront.ModeTrace, model.WindowNone)},
		"logs": {both, func(l ListenerConfig, src string) ingest.Decoder {
			return logline.NewDecoder(logline.Options{MaxLineLen: l.MaxLine, DefaultSource: src})
		}},
		"emf": {both, func(_ ListenerConfig, src string) ingest.Decoder {
			return &emfLineDecoder{d: emf.Decoder{DefaultSource: src}}
		}},
		"statsd": {[]string{"udp", "unixgram"}, func(l ListenerConfig, src string) ingest.Decoder {
			flavor, _ := statsd.ParseFlavor(l.Flavor) // validateListener checked it
			return statsdGauges{statsd.NewDecoder(statsd.Options{Flavor: flavor, MaxLineLen: l.MaxLine, DefaultSource: src,
				SeriesCache: statsd.DefaultSeriesCache})} // one per reading goroutine
		}},
	}
}

// FormatTransports lists each format with its transports (for the test
// that compares the table with internal/app's).
func FormatTransports() map[string][]string {
	out := map[string][]string{}
	for k, v := range formats() {
		out[k] = slices.Clone(v.transports)
	}
	return out
}

// DefaultListeners are the sockets of les up, all on loopback:
// Wavefront 2878, distributions 40000, histogram ports 40001–40003,
// traces 30000, StatsD 8125, logs 5170 and EMF 25888.
func DefaultListeners() []ListenerConfig {
	var ls []ListenerConfig
	both := func(format, addr string) {
		ls = append(ls, ListenerConfig{Format: format, Transport: "tcp", Address: addr},
			ListenerConfig{Format: format, Transport: "udp", Address: addr})
	}
	both("wavefront", "127.0.0.1:2878")
	both("distribution", "127.0.0.1:40000")
	both("histogram_minute", "127.0.0.1:40001")
	both("histogram_hour", "127.0.0.1:40002")
	both("histogram_day", "127.0.0.1:40003")
	both("trace", "127.0.0.1:30000")
	ls = append(ls, ListenerConfig{Format: "statsd", Transport: "udp", Address: "127.0.0.1:8125"})
	both("logs", "127.0.0.1:5170")
	both("emf", "127.0.0.1:25888")
	return ls
}

func validateListener(l ListenerConfig) error {
	spec, ok := formats()[l.Format]
	if !ok {
		return fmt.Errorf("listener format %q is not one of %v", l.Format, sortedKeys(formats()))
	}
	if !slices.Contains(spec.transports, l.Transport) {
		return fmt.Errorf("listener %s: transport %q is not one of %v", l.Format, l.Transport, spec.transports)
	}
	if l.Address == "" {
		return fmt.Errorf("listener %s/%s: address is required", l.Format, l.Transport)
	}
	if _, ok := statsd.ParseFlavor(l.Flavor); !ok {
		return fmt.Errorf("listener %s/%s: flavor %q is not one of dogstatsd, etsy", l.Format, l.Transport, l.Flavor)
	}
	if l.Flavor != "" && l.Format != "statsd" {
		return fmt.Errorf("listener %s/%s: flavor is a statsd setting; format %s has none", l.Format, l.Transport, l.Format)
	}
	if l.MaxBody != 0 {
		return fmt.Errorf("listener %s/%s: max_body bounds les up's otlp listeners, which the extension does not support (agent.http.max_body bounds its HTTP bodies)", l.Format, l.Transport)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// runner is a bound listener.
type runner interface {
	Run(ctx context.Context) error
}

// udpReadBatch is the recvmmsg batch of the extension's UDP readers.
const udpReadBatch = 4

// bind opens one listener socket feeding b. lineHTTP, when not nil, makes
// the HTTP server of each unified tcp listener (wfhttp.Unified).
func bind(l ListenerConfig, source string, b *ingest.Batcher, reg *selfmetric.Registry, log *slog.Logger, lineHTTP func() *http.Server) (runner, string, error) {
	spec := formats()[l.Format]
	if l.Source != "" {
		source = l.Source
	}
	if l.Transport == "tcp" {
		l.seriesBudget = wavefront.NewCacheBudget(wavefront.DefaultCacheBudget)
	}
	newDec := func() ingest.Decoder { return spec.newDecoder(l, source) }
	in := ingest.NewIntake(l.Format, l.Transport, b, reg)
	if l.Transport == "tcp" {
		tc := ingest.TCPConfig{Address: l.Address, MaxLine: l.MaxLine, MaxConnections: l.MaxConnections}
		if lineHTTP != nil && wfhttp.Unified(l.Format) {
			tc.HTTP = lineHTTP()
		}
		t, err := ingest.ListenTCP(tc, in, newDec, log)
		if err != nil {
			return nil, "", err
		}
		return t, t.Addr().String(), nil
	}
	// One reader taking up to udpReadBatch datagrams per call: a
	// sandbox runs one invocation at a time, and each reader holds
	// ReadBatch buffers of MaxDatagram bytes — les up's 2 readers × 32
	// made 9 UDP listeners hold 42 MB, the bulk of the extension's heap,
	// which also set the GC's target (ADR 0005, docs/performance.md).
	readers := l.Readers
	if readers == 0 {
		readers = 1
	}
	u, err := ingest.ListenUDP(ingest.UDPConfig{Address: l.Address, Network: l.Transport, Readers: readers, MaxDatagram: l.MaxDatagram,
		ReadBatch: udpReadBatch}, in, newDec, reg, log)
	if err != nil {
		return nil, "", err
	}
	return u, u.Addr().String(), nil
}

// lineHTTP returns what makes the HTTP servers of the unified Wavefront
// line ports, as les up's (internal/app/lineport.go, ADR 0012): /report
// and /api/v2/event of wfhttp, with the function name as the default
// source, agent.http's token and limits (ingest.LimitIntake: body size,
// slow bodies, concurrency) and timeouts; other paths are 404. A 2xx
// answer means the items are in the batcher, as raw lines are once read
// (ingest.AcceptQueued): the function never waits for the stream, and
// the end-of-invocation flush publishes or spools them (ADR 0005). It
// returns nil when no listener is unified.
func lineHTTP(cfg *Config, b *ingest.Batcher, reg *selfmetric.Registry, log *slog.Logger) func() *http.Server {
	if !slices.ContainsFunc(cfg.Listeners, func(l ListenerConfig) bool { return l.Transport == "tcp" && wfhttp.Unified(l.Format) }) {
		return nil
	}
	mux := http.NewServeMux()
	wfhttp.Handle(mux, wfhttp.Config{Token: cfg.HTTP.Token, MaxBody: cfg.HTTP.MaxBody, DefaultSource: cfg.Source,
		Accept: ingest.AcceptQueued}, b, reg)
	h := ingest.LinePortHandler(ingest.LimitIntake(mux, ingest.IntakeLimits{MaxBody: cfg.HTTP.MaxBody,
		MaxConcurrent: cfg.HTTP.MaxConcurrent, ReadTimeout: cfg.HTTP.ReadTimeout, Metrics: reg}), nil, reg)
	return func() *http.Server { return ingest.LinePortServer(h, cfg.HTTP.ReadTimeout, log) }
}

// emfLineDecoder: every line (TCP) or datagram (UDP) is one EMF document.
type emfLineDecoder struct{ d emf.Decoder }

func (e *emfLineDecoder) Decode(dst *model.Batch, payload []byte, _ int64) {
	_ = e.d.Decode(dst, payload) // rejects are in dst
}

// statsdGauges marks StatsD gauges for aggregation, as les up does
// (internal/app/listeners.go): later +/- deltas modify them.
type statsdGauges struct{ *statsd.Decoder }

func (d statsdGauges) Decode(dst *model.Batch, payload []byte, now int64) {
	start := len(dst.Metrics)
	d.Decoder.Decode(dst, payload, now)
	for i := start; i < len(dst.Metrics); i++ {
		if m := &dst.Metrics[i]; m.Kind == model.Gauge {
			m.Window = model.WindowMinute
		}
	}
}
