package app

import (
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/stream"
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
}

func (p *rollupProc) Add(b *model.Batch, now int64) {
	p.scratch.Metrics = p.scratch.Metrics[:0]
	for i := range b.Metrics {
		m := &b.Metrics[i]
		if m.Kind == model.Gauge && m.Window == model.WindowNone && !p.ruleMatches(m.Name) {
			continue
		}
		p.scratch.Metrics = append(p.scratch.Metrics, *m)
	}
	p.scratch.Dists = b.Dists
	p.Rollup.Add(&p.scratch, now)
	clear(p.scratch.Metrics)
	p.scratch.Dists = nil
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

var _ = json.Valid
