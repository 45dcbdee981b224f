package app

import (
	"slices"

	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
)

// formatSpec says which transports a listener format supports and how to
// make one decoder (one per reading goroutine).
type formatSpec struct {
	transports []string
	about      string
	// newDecoder is nil for formats with their own protocol, which
	// binders opens instead of a line or datagram socket.
	newDecoder func(l ListenerConfig) ingest.Decoder
}

// binders open the listeners of formats that speak their own protocol.
var binders = map[string]func(a *App, l ListenerConfig, b *ingest.Batcher) (runner, string, error){
	"otlp": bindOTLP, // otlp.go
}

func wavefrontDecoder(mode wavefront.Mode, w model.Window) func(ListenerConfig) ingest.Decoder {
	return func(l ListenerConfig) ingest.Decoder {
		// One decoder per UDP reader or TCP connection, each used by one
		// goroutine: it keeps a series cache.
		o := wavefront.Options{Mode: mode, Window: w, DefaultSource: l.Source, SeriesCache: wavefront.DefaultSeriesCache,
			SeriesCacheBudget: l.seriesBudget}
		if l.MaxLine > 0 {
			o.MaxLineLen = l.MaxLine
		}
		return wavefront.NewDecoder(o)
	}
}

// formats is the explicit table of listener formats; adding a format is one
// line here plus its package under internal/format.
var formats = map[string]formatSpec{
	"wavefront":        {[]string{"tcp", "udp"}, "Wavefront metric, !M/!H/!D distribution lines", wavefrontDecoder(wavefront.ModeMetrics, model.WindowNone)},
	"histogram_minute": {[]string{"tcp", "udp"}, "Wavefront lines rolled up into minute distributions", wavefrontDecoder(wavefront.ModeSample, model.WindowMinute)},
	"histogram_hour":   {[]string{"tcp", "udp"}, "Wavefront lines rolled up into hour distributions", wavefrontDecoder(wavefront.ModeSample, model.WindowHour)},
	"histogram_day":    {[]string{"tcp", "udp"}, "Wavefront lines rolled up into day distributions", wavefrontDecoder(wavefront.ModeSample, model.WindowDay)},
	"distribution":     {[]string{"tcp", "udp"}, "Wavefront !M/!H/!D distribution lines only", wavefrontDecoder(wavefront.ModeDistOnly, model.WindowNone)},
	"trace":            {[]string{"tcp", "udp"}, "Wavefront span lines", wavefrontDecoder(wavefront.ModeTrace, model.WindowNone)},
	"logs":             {[]string{"tcp", "udp"}, "log lines: NDJSON, Lambda text format or plain text (logintake.go)", logsDecoder},
	"emf":              {[]string{"tcp", "udp"}, "CloudWatch Embedded Metric Format documents, one per line or datagram", emfDecoder},
	"otlp":             {[]string{"http", "grpc"}, "OpenTelemetry OTLP/HTTP (protobuf, JSON) and OTLP/gRPC: metrics, logs, traces (otlp.go)", nil},
	"statsd":           {[]string{"udp", "unixgram"}, "StatsD and DogStatsD (flavor: dogstatsd | etsy)", statsdDecoder},
}

// statsdDecoder makes the decoder of a statsd listener; l was validated, so
// its flavor parses.
func statsdDecoder(l ListenerConfig) ingest.Decoder {
	flavor, _ := statsd.ParseFlavor(l.Flavor)
	// One decoder per UDP or unixgram reader goroutine (ingest.UDP.read):
	// it keeps a series cache.
	o := statsd.Options{Flavor: flavor, DefaultSource: l.Source, SeriesCache: statsd.DefaultSeriesCache}
	if l.MaxLine > 0 {
		o.MaxLineLen = l.MaxLine
	}
	return statsdGauges{statsd.NewDecoder(o)}
}

// defaultSource is agent.default_source when unset: the function's name
// inside AWS Lambda (every sandbox of a function shares it, so its series
// merge instead of splitting by sandbox host), else the host name, else
// "unknown" (the Wavefront proxy's word for no source).
func defaultSource(getenv func(string) string, hostname func() (string, error)) string {
	if fn := getenv("AWS_LAMBDA_FUNCTION_NAME"); fn != "" {
		return fn
	}
	if h, err := hostname(); err == nil && h != "" {
		return h
	}
	return wavefront.DefaultSource
}

func formatNames() []string {
	var out []string
	for k := range formats {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// DefaultListeners are the sockets `les up` opens without a config: all on
// loopback.
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
	// DogStatsD: the clients Lambda functions use (datadog-go, hot-shots,
	// the Datadog Lambda libraries) speak it; see the README's StatsD flavor.
	ls = append(ls, ListenerConfig{Format: "statsd", Transport: "udp", Address: "127.0.0.1:8125", Flavor: statsd.FlavorNameDogStatsD})
	both("logs", "127.0.0.1:5170")
	both("emf", "127.0.0.1:25888")
	ls = append(ls, ListenerConfig{Format: "otlp", Transport: "http", Address: "127.0.0.1:4318"},
		ListenerConfig{Format: "otlp", Transport: "grpc", Address: "127.0.0.1:4317"})
	return ls
}

// statsdGauges marks StatsD gauges for aggregation: StatsD gauges are
// modified by later +/- deltas, so the rollup keeps them (last value per
// window, deltas applied) instead of passing them through raw.
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
