package app

import (
	"fmt"
	"time"

	"github.com/les-streams/les/internal/rollup"
)

// UIConfig is `ui:`: what a consuming les keeps for /query and the web UI
// (docs/api.md, ADR 0007). Every bound here is a memory bound.
type UIConfig struct {
	// History is the closed windows behind /query (only where the rollup
	// runs).
	History UIHistoryConfig `yaml:"history"`
	// ErrorLogs is the store of recent error-level log records per source
	// behind /api/v1/errors and the function page.
	ErrorLogs UIErrorLogsConfig `yaml:"error_logs"`
}

// UIHistoryConfig is `ui.history:`.
type UIHistoryConfig struct {
	// Retention is how long closed windows are kept after their end
	// (default 24h; the stream's max_age bounds what a restart rebuilds).
	Retention time.Duration `yaml:"retention"`
	// MaxSeries bounds the series kept (name, source, tags, kind,
	// window); windows of further series are refused and counted in
	// les_history_series_rejected_total (default 20000).
	MaxSeries int `yaml:"max_series"`
	// MaxQueryPoints bounds steps × series of one /query answer (default
	// 200000).
	MaxQueryPoints int `yaml:"max_query_points"`
}

// UIErrorLogsConfig is `ui.error_logs:`.
type UIErrorLogsConfig struct {
	// Disabled turns the store (and its reader of the stream's logs) off.
	Disabled bool `yaml:"disabled"`
	// PerSource is how many records each source keeps, newest (default 20).
	PerSource int `yaml:"per_source"`
	// MaxTotal bounds the records kept over all sources; past it the
	// oldest go first (default 10000).
	MaxTotal int `yaml:"max_total"`
	// MaxMessage truncates each kept message, in bytes (default 1024).
	MaxMessage int `yaml:"max_message"`
	// MaxAge: records older than this (by their timestamp) are not kept,
	// and the rebuild at start reads the stream from now − max_age
	// (default 24h).
	MaxAge time.Duration `yaml:"max_age"`
}

const (
	defaultHistoryRetention = 24 * time.Hour
	defaultHistorySeries    = 20_000
	defaultQueryPoints      = 200_000
)

func (c *Config) validateUI() []error {
	var errs []error
	h := &c.UI.History
	if h.Retention == 0 {
		h.Retention = defaultHistoryRetention
	}
	if h.Retention < time.Minute || h.Retention > maxQueryRange {
		errs = append(errs, c.errAt(fmt.Sprintf("retention %v is not in 1m…%v", h.Retention, maxQueryRange), "ui", "history", "retention"))
	}
	if h.MaxSeries == 0 {
		h.MaxSeries = defaultHistorySeries
	}
	if h.MaxSeries < 0 || h.MaxSeries > 10_000_000 {
		errs = append(errs, c.errAt(fmt.Sprintf("max_series %d is not in 1…10000000", h.MaxSeries), "ui", "history", "max_series"))
	}
	if h.MaxQueryPoints == 0 {
		h.MaxQueryPoints = defaultQueryPoints
	}
	if h.MaxQueryPoints < 0 || h.MaxQueryPoints > 100_000_000 {
		errs = append(errs, c.errAt(fmt.Sprintf("max_query_points %d is not in 1…100000000", h.MaxQueryPoints), "ui", "history", "max_query_points"))
	}
	e := &c.UI.ErrorLogs
	if e.PerSource == 0 {
		e.PerSource = 20
	}
	if e.MaxTotal == 0 {
		e.MaxTotal = 10_000
	}
	if e.MaxMessage == 0 {
		e.MaxMessage = 1024
	}
	if e.MaxAge == 0 {
		e.MaxAge = 24 * time.Hour
	}
	if e.PerSource < 0 || e.PerSource > 1000 {
		errs = append(errs, c.errAt(fmt.Sprintf("per_source %d is not in 1…1000", e.PerSource), "ui", "error_logs", "per_source"))
	}
	if e.MaxTotal < 0 || e.MaxTotal > 1_000_000 {
		errs = append(errs, c.errAt(fmt.Sprintf("max_total %d is not in 1…1000000", e.MaxTotal), "ui", "error_logs", "max_total"))
	}
	if e.MaxMessage < 64 || e.MaxMessage > 65536 {
		errs = append(errs, c.errAt(fmt.Sprintf("max_message %d is not in 64…65536", e.MaxMessage), "ui", "error_logs", "max_message"))
	}
	if e.MaxAge < 0 {
		errs = append(errs, c.errAt("max_age must be positive", "ui", "error_logs", "max_age"))
	}
	return errs
}

// historyConfig is the rollup.History configuration of ui.history.
func (h UIHistoryConfig) historyConfig() rollup.HistoryConfig {
	return rollup.HistoryConfig{Retention: h.Retention, MaxSeries: h.MaxSeries}
}
