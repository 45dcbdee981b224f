// Package rollup folds metric points and distributions into per-series,
// per-window mergeable sketches and aggregates (StatsD counters, gauges and
// sets), closes windows by event time after a grace period, and emits
// corrections for late data instead of dropping it.
//
// Rollup is a pure state machine: it starts no goroutines, does no I/O and
// takes the current time as an argument. Its state is checkpointed with
// MarshalState and restored with UnmarshalState. See README.md.
package rollup
