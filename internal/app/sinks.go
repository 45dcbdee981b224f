package app

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/les-streams/les/internal/consumer"
	"github.com/les-streams/les/internal/sink"
	datadogsink "github.com/les-streams/les/internal/sink/datadog"
	"github.com/les-streams/les/internal/sink/discard"
	execsink "github.com/les-streams/les/internal/sink/exec"
	"github.com/les-streams/les/internal/sink/file"
	httpsink "github.com/les-streams/les/internal/sink/http"
	"github.com/les-streams/les/internal/sink/influxdb"
	lokisink "github.com/les-streams/les/internal/sink/loki"
	otlpsink "github.com/les-streams/les/internal/sink/otlp"
	promrw "github.com/les-streams/les/internal/sink/prometheus_remote_write"
	wfsink "github.com/les-streams/les/internal/sink/wavefront"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Backend settings as they appear under each sink's type key.
type (
	fileSinkConfig      = file.Config
	wavefrontSinkConfig = wfsink.Config
	discardSinkConfig   = discard.Config
)

// allSignals are the signal names of `signals:` in les.yaml.
var allSignals = []string{"metrics", "distributions", "logs", "spans"}

// sinkType is one line of the sink table.
type sinkType struct {
	// signals the sink takes; `signals:` defaults to them and may only
	// narrow them, so a sink is never handed items it would drop.
	signals []string
	// settings returns a pointer to the sink's field in SinkConfig (a
	// pointer to a pointer to its Config), so the table can check it.
	settings func(c *SinkConfig) any
	// optional: the settings block may be left out (all defaults).
	optional bool
	// perRecord: send each stream record alone with its record id (the
	// sink de-duplicates re-deliveries by it).
	perRecord bool
	// ordered: the backend refuses a series' points out of order, so the
	// requests of one stream partition go one after another.
	ordered bool
	// concurrency is the default number of requests in flight (1 if 0).
	concurrency int
	// serial: the sink takes one Send at a time by nature (exec: one
	// program's stdin), so `concurrency` above 1 is refused.
	serial bool
	build  func(c *SinkConfig, d sink.Deps) (sink.Sink, error)
}

// sinkTypes is the explicit table of sink types: adding a sink is one
// folder under internal/sink, one field in SinkConfig and one line here.
var sinkTypes = map[string]sinkType{
	"file": {signals: allSignals, settings: func(c *SinkConfig) any { return &c.File }, perRecord: true,
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return file.NewDeps(*c.File, d) }},
	"wavefront": {signals: []string{"metrics", "distributions", "spans"}, settings: func(c *SinkConfig) any { return &c.Wavefront },
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return wfsink.New(*c.Wavefront) }},
	"discard": {signals: allSignals, settings: func(c *SinkConfig) any { return &c.Discard }, optional: true,
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return discard.New(*c.Discard) }},
	"influxdb": {signals: allSignals, settings: func(c *SinkConfig) any { return &c.InfluxDB }, concurrency: 4,
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return influxdb.New(*c.InfluxDB, d) }},
	"http": {signals: allSignals, settings: func(c *SinkConfig) any { return &c.HTTP },
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return httpsink.New(*c.HTTP, d) }},
	"exec": {signals: allSignals, settings: func(c *SinkConfig) any { return &c.Exec }, serial: true,
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return execsink.New(*c.Exec, d) }},
	"otlp": {signals: allSignals, settings: func(c *SinkConfig) any { return &c.OTLP }, concurrency: 4, build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return otlpsink.New(*c.OTLP, d) }},
	"prometheus_remote_write": {signals: []string{"metrics", "distributions"}, settings: func(c *SinkConfig) any { return &c.PrometheusRemoteWrite }, perRecord: true, ordered: true,
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return promrw.New(*c.PrometheusRemoteWrite, d) }},
	"loki": {signals: []string{"logs"}, settings: func(c *SinkConfig) any { return &c.Loki }, ordered: true, concurrency: 4,
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return lokisink.New(*c.Loki, d) }},
	"datadog": {signals: []string{"metrics", "distributions", "logs"}, settings: func(c *SinkConfig) any { return &c.Datadog },
		build: func(c *SinkConfig, d sink.Deps) (sink.Sink, error) { return datadogsink.New(*c.Datadog, d) }},
}

// sinkTypeNames lists the table's keys, sorted, for error messages.
func sinkTypeNames() string {
	var names []string
	for k := range sinkTypes {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

type validator interface{ Validate() error }

// settingsOf returns the **Config field of c for type name.
func settingsOf(c *SinkConfig, name string) reflect.Value {
	return reflect.ValueOf(sinkTypes[name].settings(c)).Elem()
}

func (c *Config) validateSink(i int) []error {
	s := &c.Sinks[i]
	t, ok := sinkTypes[s.Type]
	if !ok {
		return []error{c.errAt(fmt.Sprintf("type %q is not one of %s", s.Type, sinkTypeNames()), "sinks", i, "type")}
	}
	var errs []error
	for k := range sinkTypes {
		if k != s.Type && !settingsOf(s, k).IsNil() {
			errs = append(errs, c.errAt(fmt.Sprintf("settings for %q given on a sink of type %q", k, s.Type), "sinks", i, k))
		}
	}
	if t.serial && s.Concurrency > 1 {
		errs = append(errs, c.errAt(fmt.Sprintf("concurrency %d: sink type %s writes to one program's stdin, one batch at a time; leave concurrency out or set 1", s.Concurrency, s.Type), "sinks", i, "concurrency"))
	}
	if len(s.Signals) == 0 {
		s.Signals = t.signals
	}
	for j, sig := range s.Signals {
		if slices.Contains(allSignals, sig) && !slices.Contains(t.signals, sig) {
			errs = append(errs, c.errAt(fmt.Sprintf("a %s sink does not take %s (it takes %s)", s.Type, sig, strings.Join(t.signals, ", ")), "sinks", i, "signals", j))
		}
	}
	v := settingsOf(s, s.Type)
	if v.IsNil() {
		if !t.optional {
			return append(errs, c.errAt(fmt.Sprintf("settings under %q are required for this type", s.Type), "sinks", i))
		}
		v.Set(reflect.New(v.Type().Elem()))
	}
	if err := v.Interface().(validator).Validate(); err != nil {
		errs = append(errs, c.errAt(err.Error(), "sinks", i, s.Type))
	}
	return errs
}

func (a *App) newSink(s *SinkConfig) (sink.Sink, error) {
	sk, _, err := a.newSinkDeps(s)
	return sk, err
}

// newSinkDeps builds the sink of s and returns the Deps it was given.
func (a *App) newSinkDeps(s *SinkConfig) (sink.Sink, sink.Deps, error) {
	d := sink.Deps{Name: s.Name, Log: a.log.With("sink", s.Name), Metrics: a.reg, HTTP: a.sinkHTTP,
		Drops: a.reg.NewReasonCounters("les_sink_dropped_items_total", "sink", s.Name)}
	sk, err := sinkTypes[s.Type].build(s, d)
	return sk, d, err
}

// sinkRunnerConfig is the runner's part of a sink's settings: batching,
// requests in flight, and what its type asks for.
func sinkRunnerConfig(s *SinkConfig, d sink.Deps) consumer.SinkConfig {
	t := sinkTypes[s.Type]
	c := consumer.SinkConfig{Name: s.Name, Retry: s.Retry, MaxItems: s.Batch.MaxItems, MaxBytes: s.Batch.MaxBytes,
		PerRecord: t.perRecord, Ordered: t.ordered, Concurrency: s.Concurrency, Dropped: d.Drops}
	if c.Concurrency == 0 {
		c.Concurrency = max(t.concurrency, 1)
	}
	c.Start, _ = parseStartAt(s.StartAt) // validated by Load
	for _, name := range s.Signals {
		sig, _ := wire.ParseSignal(name)
		c.Signals = append(c.Signals, sig)
	}
	return c
}

// parseStartAt reads a sink's start_at: oldest (or empty), newest, or an
// RFC 3339 time.
func parseStartAt(v string) (stream.StartAt, error) {
	switch v {
	case "", "oldest":
		return stream.StartAt{}, nil
	case "newest":
		return stream.StartAt{Newest: true}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return stream.StartAt{}, fmt.Errorf("%q is not oldest, newest or an RFC 3339 time (2026-12-01T00:00:00Z)", v)
	}
	return stream.StartAt{Time: t}, nil
}
