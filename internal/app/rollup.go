package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/les-streams/les/internal/consumer"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// RollupConfig is the `rollup:` section: the built-in consumer that rolls
// samples, StatsD aggregates and distributions up into windows.
type RollupConfig struct {
	// Disabled turns the rollup consumer off (raw samples then reach sinks).
	Disabled bool `yaml:"disabled"`
	// Windows for counters, gauges (from rules) and sets (default [minute]).
	Windows []string `yaml:"windows"`
	// DefaultWindow for samples without one (StatsD timers; default minute).
	DefaultWindow string `yaml:"default_window"`
	// Grace after a window's end before it closes (default 30s).
	Grace time.Duration `yaml:"grace"`
	// MaxSeriesPerWindow caps active series per window; more are rejected
	// and counted in les_rollup_series_rejected_total (default 100000).
	MaxSeriesPerWindow int `yaml:"max_series_per_window"`
	// Percentiles emitted with each distribution (default 0.5 … 0.999).
	Percentiles []float64 `yaml:"percentiles"`
	// Rules roll any metric whose name matches a glob into distributions.
	Rules []RollupRule `yaml:"rules"`
	// Tick is how often windows are checked for closing (default 1s).
	Tick time.Duration `yaml:"tick"`
}

// RollupRule rolls metrics named like Match up at Window.
type RollupRule struct {
	Match  string `yaml:"match"`
	Window string `yaml:"window"`
}

func (c *Config) validateRollup() []error {
	r := &c.Rollup
	var errs []error
	if r.Tick == 0 {
		r.Tick = time.Second
	}
	if _, err := r.engineConfig(); err != nil {
		errs = append(errs, c.errAt(err.Error(), "rollup"))
	}
	for i, rule := range r.Rules {
		if _, err := path.Match(rule.Match, ""); err != nil {
			errs = append(errs, c.errAt(fmt.Sprintf("bad glob %q: %v", rule.Match, err), "rollup", "rules", i, "match"))
		}
		if _, ok := model.ParseWindow(rule.Window); !ok {
			errs = append(errs, c.errAt(fmt.Sprintf("window %q is not one of minute, hour, day", rule.Window), "rollup", "rules", i, "window"))
		}
	}
	return errs
}

func (r *RollupConfig) engineConfig() (rollup.Config, error) {
	rc := rollup.Config{Grace: r.Grace, MaxSeriesPerWindow: r.MaxSeriesPerWindow, Percentiles: r.Percentiles}
	for _, w := range r.Windows {
		win, ok := model.ParseWindow(w)
		if !ok {
			return rc, fmt.Errorf("windows: %q is not one of minute, hour, day", w)
		}
		rc.Windows = append(rc.Windows, win)
	}
	if r.DefaultWindow != "" {
		win, ok := model.ParseWindow(r.DefaultWindow)
		if !ok {
			return rc, fmt.Errorf("default_window: %q is not one of minute, hour, day", r.DefaultWindow)
		}
		rc.DefaultWindow = win
	}
	for _, rule := range r.Rules {
		win, _ := model.ParseWindow(rule.Window)
		rc.Rules = append(rc.Rules, rollup.Rule{Match: rule.Match, Window: win})
	}
	for _, q := range r.Percentiles {
		if q <= 0 || q >= 1 {
			return rc, fmt.Errorf("percentiles: %v is not in (0,1)", q)
		}
	}
	err := rc.Validate()
	return rc, err
}

// rollupProc adapts the rollup engine to the processor runner: plain gauges
// pass through to sinks untouched unless a rule asks for their
// distribution, so only they are dropped before the engine sees the batch.
// Gauges that carry a Window (StatsD gauges, which +/- deltas modify) are
// aggregated: last value per window, deltas applied.
type rollupProc struct {
	*rollup.Rollup
	rules   []rollup.Rule
	scratch model.Batch
	series  seriesScratch // AddSeries (rollupproc.go)
}

func (p *rollupProc) Add(b *model.Batch, now int64) {
	first := -1 // the first point to drop
	for i := range b.Metrics {
		if p.drop(&b.Metrics[i]) {
			first = i
			break
		}
	}
	if first < 0 { // the rollup's own input (origin agg) has no plain gauges: no copy
		p.Rollup.Add(b, now)
		return
	}
	p.scratch.Metrics = append(p.scratch.Metrics[:0], b.Metrics[:first]...)
	for i := first + 1; i < len(b.Metrics); i++ {
		if m := &b.Metrics[i]; !p.drop(m) {
			p.scratch.Metrics = append(p.scratch.Metrics, *m)
		}
	}
	p.scratch.Dists = b.Dists
	p.scratch.SeriesN = b.SeriesN // the kept points keep their series numbers
	p.scratch.Continues, p.scratch.More = b.Continues, b.More
	p.Rollup.Add(&p.scratch, now)
	clear(p.scratch.Metrics)
	p.scratch.Dists, p.scratch.SeriesN = nil, 0
}

// drop reports whether m is a plain gauge no rule asks for.
func (p *rollupProc) drop(m *model.Metric) bool {
	return m.Kind == model.Gauge && m.Window == model.WindowNone && !p.ruleMatches(m.Name)
}

func (p *rollupProc) ruleMatches(name string) bool {
	for _, r := range p.rules {
		if ok, _ := path.Match(r.Match, name); ok {
			return true
		}
	}
	return false
}

// rollupOrigins: the rollup reads its raw input (agent and logmetric
// output under origin agg); with rules it also reads plain points, which
// the rules may turn into distributions (plain distributions there are
// few and the rollup merges them too).
func rollupOrigins(rc rollup.Config) []string {
	if len(rc.Rules) > 0 {
		return []string{stream.OriginAgg, stream.OriginIngest, stream.OriginDerived}
	}
	return []string{stream.OriginAgg}
}

// rollupRunner builds the rollup consumer: claimed (one engine per
// partition this process owns, checkpoints in the stream; ADR 0009) when
// the stream shares partitions through a group, else one engine with a
// local checkpoint. each calls f for every engine, while it is not fed.
func (a *App) rollupRunner(st stream.Stream, rc rollup.Config, comp wire.Compression) (r runner, each func(f func(*rollupProc)), err error) {
	newProc := func() (*rollupProc, error) {
		eng, err := rollup.New(rc)
		if err != nil {
			return nil, err
		}
		return &rollupProc{Rollup: eng, rules: rc.Rules}, nil
	}
	first, err := newProc() // validates rc once
	if err != nil {
		return nil, nil, err
	}
	pc := consumer.ProcConfig{
		Name:           "rollup",
		Origins:        rollupOrigins(rc),
		Signals:        []wire.Signal{wire.SignalMetrics, wire.SignalDistributions},
		Partitions:     a.parts,
		Origin:         stream.OriginRollup,
		CheckpointPath: filepath.Join(a.cfg.DataDir, "consumers", "rollup.ckpt"),
		Tick:           a.cfg.Rollup.Tick,
		Compression:    comp,
		MaxRecordBytes: a.cfg.Agent.Batch.MaxBatchBytes,
	}
	if a.claimProcessors(st, pc.Name, pc.CheckpointPath) {
		cr, err := consumer.NewClaimRunner(pc, st, func(int) consumer.Processor {
			p, _ := newProc() // rc is valid: first was built from it
			return p
		}, a.reg, a.log)
		if err != nil {
			return nil, nil, err
		}
		return cr, func(f func(*rollupProc)) {
			cr.Each(func(_ int, p consumer.Processor) { f(p.(*rollupProc)) })
		}, nil
	}
	pr, err := consumer.NewProcRunner(pc, st, first, a.reg, a.log)
	if err != nil {
		return nil, nil, err
	}
	return pr, func(f func(*rollupProc)) { pr.Locked(func() { f(first) }) }, nil
}

// claimProcessors reports whether the processor name runs claimed: the
// stream assigns partitions through a group and implements
// stream.Claimer, and les consume was not given --partitions. A local
// checkpoint at ckpt (written before ADR 0009) keeps the processor on it,
// with a warning: its state covers every partition and cannot be split.
func (a *App) claimProcessors(st stream.Stream, name, ckpt string) bool {
	if _, ok := st.(stream.Claimer); !ok || !st.Capabilities().GroupAssignment || a.parts != nil {
		return false
	}
	if _, err := os.Stat(ckpt); err == nil {
		a.log.Warn("a local checkpoint of this processor exists, so it keeps running from it in this process alone instead of sharing its partitions with the other les consume processes through the stream's group (docs/adr/0009); see the kafka README to switch",
			"consumer", name, "checkpoint", ckpt)
		return false
	}
	return true
}

var _ = json.Valid
