// Package lambda turns AWS Lambda platform output into metric points and
// logs: the classic text lines Lambda writes to CloudWatch Logs (START, END,
// REPORT, INIT_REPORT, RESTORE_REPORT, "Task timed out", runtime exit
// errors), the same records in Lambda's JSON log format, and Telemetry API
// batches (schemas 2022-07-01, 2022-12-13 and 2025-01-29).
//
// Invocations are counted on REPORT / platform.report only (never on START /
// platform.start), so a stream that carries both does not double count.
//
// The package is pure: no goroutines, logging or package state.
package lambda

import (
	"github.com/les-streams/les/internal/model"
)

// Metric names. Durations are milliseconds, memory megabytes.
const (
	MetricInvocations    = "aws.lambda.invocations"     // Counter, 1 per REPORT / platform.report
	MetricErrors         = "aws.lambda.errors"          // Counter, 0 or 1 per report; 1 per old-style crash line
	MetricTimeouts       = "aws.lambda.timeouts"        // Counter, 0 or 1 per report; 1 per "Task timed out" line
	MetricColdStarts     = "aws.lambda.cold_starts"     // Counter, 1 when a report carries Init or Restore Duration
	MetricDuration       = "aws.lambda.duration"        // Sample, ms
	MetricBilledDuration = "aws.lambda.billed_duration" // Sample, ms
	MetricInitDuration   = "aws.lambda.init_duration"   // Sample, ms (from the report only)
	MetricRestore        = "aws.lambda.restore_duration"
	MetricBilledRestore  = "aws.lambda.billed_restore_duration"
	MetricMaxMemoryUsed  = "aws.lambda.max_memory_used" // Sample, MB
	MetricMemorySize     = "aws.lambda.memory_size"     // Gauge, MB
	MetricInitErrors     = "aws.lambda.init_errors"     // Counter, INIT_REPORT / platform.initReport not success
	MetricRestoreErrors  = "aws.lambda.restore_errors"  // Counter, RESTORE_REPORT / platform.restoreReport not success
	MetricExtOverhead    = "aws.lambda.extension_overhead"
	MetricProducedBytes  = "aws.lambda.produced_bytes"       // Sample, platform.runtimeDone
	MetricDroppedRecords = "aws.lambda.logs_dropped_records" // Counter, platform.logsDropped
	MetricDroppedBytes   = "aws.lambda.logs_dropped_bytes"   // Counter, platform.logsDropped
)

// Tag keys.
const (
	TagErrorType = "error_type" // on init_errors and restore_errors
	TagPhase     = "phase"      // on init_errors
)

// Reject reasons.
const (
	ReasonUnknownEventType = "unknown_event_type"
	ReasonInvalidEvent     = "invalid_event"
	ReasonInvalidTime      = "invalid_time"
)

// Extractor derives metrics and logs from Lambda platform output. The zero
// value is ready to use. It remembers the function name announced by
// platform.initStart / platform.restoreStart (INIT_START lines carry none) and
// uses it as Source when the caller passes an empty source. An Extractor is
// not safe for concurrent use.
type Extractor struct {
	functionName string
}

// FunctionName returns the function name learned from platform.initStart or
// platform.restoreStart, or "".
func (e *Extractor) FunctionName() string { return e.functionName }

func (e *Extractor) source(s string) string {
	if s == "" {
		return e.functionName
	}
	return s
}

// report is a parsed REPORT line or platform.report record.
type report struct {
	has                                    uint16
	duration, billed, memSize, maxMem      float64
	initDur, restoreDur, billedRestore, eo float64
	status                                 []byte
}

const (
	hasDuration = 1 << iota
	hasBilled
	hasMemSize
	hasMaxMem
	hasInit
	hasRestore
	hasBilledRestore
	hasExtOverhead
)

func add(dst *model.Batch, name, source string, ts int64, kind model.Kind, v float64) {
	if !model.IsFinite(v) {
		return
	}
	dst.Metrics = append(dst.Metrics, model.Metric{Name: name, Value: v, Timestamp: ts, Source: source, Kind: kind})
}

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (r *report) emit(dst *model.Batch, source string, ts int64) {
	st := string(r.status)
	add(dst, MetricInvocations, source, ts, model.Counter, 1)
	add(dst, MetricErrors, source, ts, model.Counter, flag(st == "error" || st == "failure"))
	add(dst, MetricTimeouts, source, ts, model.Counter, flag(st == "timeout"))
	if r.has&(hasInit|hasRestore) != 0 {
		add(dst, MetricColdStarts, source, ts, model.Counter, 1)
	}
	if r.has&hasDuration != 0 {
		add(dst, MetricDuration, source, ts, model.Sample, r.duration)
	}
	if r.has&hasBilled != 0 {
		add(dst, MetricBilledDuration, source, ts, model.Sample, r.billed)
	}
	if r.has&hasMemSize != 0 {
		add(dst, MetricMemorySize, source, ts, model.Gauge, r.memSize)
	}
	if r.has&hasMaxMem != 0 {
		add(dst, MetricMaxMemoryUsed, source, ts, model.Sample, r.maxMem)
	}
	if r.has&hasInit != 0 {
		add(dst, MetricInitDuration, source, ts, model.Sample, r.initDur)
	}
	if r.has&hasRestore != 0 {
		add(dst, MetricRestore, source, ts, model.Sample, r.restoreDur)
	}
	if r.has&hasBilledRestore != 0 {
		add(dst, MetricBilledRestore, source, ts, model.Sample, r.billedRestore)
	}
	if r.has&hasExtOverhead != 0 {
		add(dst, MetricExtOverhead, source, ts, model.Sample, r.eo)
	}
}

// failure emits a Counter for a non-success init/restore report.
func failure(dst *model.Batch, name, source string, ts int64, errorType, phase string) {
	mark := dst.TagMark()
	if errorType != "" {
		dst.AddTag(TagErrorType, errorType)
	}
	if phase != "" {
		dst.AddTag(TagPhase, phase)
	}
	tags := dst.TagsSince(mark)
	model.SortTags(tags)
	dst.Metrics = append(dst.Metrics, model.Metric{Name: name, Value: 1, Timestamp: ts, Source: source, Kind: model.Counter, Tags: tags})
}
