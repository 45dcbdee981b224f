package lambda

import (
	"errors"
	"strings"

	"github.com/les-streams/les/internal/format/jsonscan"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/model"
)

// ErrPayload is wrapped by the error FromTelemetry and LogsFromTelemetry
// return when the payload is not a JSON array or object at all.
var ErrPayload = errors.New("lambda: telemetry payload is not a JSON array or object")

// eventClass says what FromTelemetry does with an event type.
type eventClass uint8

const (
	classUnknown eventClass = iota
	classPlatform
	classLog
)

func classify(typ string) eventClass {
	switch typ {
	case "platform.initStart", "platform.initRuntimeDone", "platform.initReport",
		"platform.start", "platform.runtimeDone", "platform.report",
		"platform.extension", "platform.telemetrySubscription", "platform.logsDropped",
		"platform.restoreStart", "platform.restoreRuntimeDone", "platform.restoreReport",
		// Logs API (2020-08-15 / 2021-03-18) types that may still arrive.
		"platform.end", "platform.fault", "platform.logsSubscription":
		return classPlatform
	case "function", "extension":
		return classLog
	}
	return classUnknown
}

// event is one Telemetry API envelope; slices alias the payload.
type event struct {
	time   int64
	typ    string
	record []byte
	ok     bool // time and type present and valid
}

func parseEvent(v []byte) (ev event, reason string) {
	it := jsonscan.Members(v)
	hasTime := false
	for it.Next() {
		switch {
		case it.KeyIs("time"):
			raw, esc, ok := jsonscan.StringRaw(it.Val)
			if ok && !esc {
				ev.time, hasTime = logline.ParseTime(raw)
			}
		case it.KeyIs("type"):
			ev.typ, _ = jsonscan.Str(it.Val)
		case it.KeyIs("record"):
			ev.record = it.Val
		}
	}
	if it.Err() || ev.typ == "" {
		return ev, ReasonInvalidEvent
	}
	if !hasTime {
		return ev, ReasonInvalidTime
	}
	ev.ok = true
	return ev, ""
}

// forEach calls fn for each event of payload: a JSON array of events or a
// single event object.
func forEach(payload []byte, fn func(v []byte)) error {
	v, next, ok := jsonscan.Value(payload, 0)
	if !ok || jsonscan.SkipSpace(payload, next) != len(payload) {
		return ErrPayload
	}
	switch jsonscan.KindOf(v) {
	case jsonscan.Object:
		fn(v)
	case jsonscan.Array:
		it := jsonscan.Elems(v)
		for it.Next() {
			fn(it.Val)
		}
	default:
		return ErrPayload
	}
	return nil
}

// FromTelemetry appends the metric points implied by a Telemetry API batch
// (a JSON array of {time, type, record} events, or one event). source is the
// function name; "" uses the name learned from platform.initStart.
//
// Events of unknown type are rejected with ReasonUnknownEventType, events
// without a type or with malformed JSON members with ReasonInvalidEvent,
// without a valid RFC 3339 time with ReasonInvalidTime; the other events
// still decode. function and extension events are skipped (see
// LogsFromTelemetry). The error is non-nil only if payload is not JSON.
//
// Ownership: Rejects' Line aliases payload; metric strings do not, except
// error_type and phase tag values.
func (e *Extractor) FromTelemetry(dst *model.Batch, source string, payload []byte) error {
	return forEach(payload, func(v []byte) {
		if jsonscan.KindOf(v) != jsonscan.Object {
			dst.Reject(ReasonInvalidEvent, v)
			return
		}
		ev, reason := parseEvent(v)
		if reason != "" {
			dst.Reject(reason, v)
			return
		}
		switch classify(ev.typ) {
		case classUnknown:
			dst.Reject(ReasonUnknownEventType, v)
		case classPlatform:
			e.platform(dst, source, &ev)
		}
	})
}

// fromJSONLine handles a JSON-format system log line (one platform event).
func (e *Extractor) fromJSONLine(dst *model.Batch, source string, line []byte) bool {
	v, next, ok := jsonscan.Value(line, 0)
	if !ok || jsonscan.KindOf(v) != jsonscan.Object || jsonscan.SkipSpace(line, next) != len(line) {
		return false
	}
	ev, reason := parseEvent(v)
	if reason != "" || classify(ev.typ) != classPlatform {
		return false
	}
	e.platform(dst, source, &ev)
	return true
}

func (e *Extractor) platform(dst *model.Batch, source string, ev *event) {
	rec := ev.record
	isObj := jsonscan.KindOf(rec) == jsonscan.Object
	switch ev.typ {
	case "platform.initStart", "platform.restoreStart":
		if !isObj {
			return
		}
		it := jsonscan.Members(rec)
		for it.Next() {
			if it.KeyIs("functionName") {
				if s, ok := jsonscan.Str(it.Val); ok && s != "" && s != e.functionName {
					e.functionName = strings.Clone(s) // it outlives the payload
				}
			}
		}
		return
	case "platform.fault":
		add(dst, MetricErrors, e.source(source), ev.time, model.Counter, 1)
		return
	}
	if !isObj {
		return
	}
	source = e.source(source)
	switch ev.typ {
	case "platform.report":
		var r report
		var status []byte
		it := jsonscan.Members(rec)
		for it.Next() {
			switch {
			case it.KeyIs("status"):
				status, _ = jsonscan.Bytes(it.Val)
			case it.KeyIs("metrics"):
				reportMetrics(it.Val, &r)
			case it.KeyIs("spans"):
				spans(it.Val, &r)
			}
		}
		r.status = status
		r.emit(dst, source, ev.time)
	case "platform.initReport", "platform.restoreReport":
		var status, errType, phase string
		it := jsonscan.Members(rec)
		for it.Next() {
			switch {
			case it.KeyIs("status"):
				status, _ = jsonscan.Str(it.Val)
			case it.KeyIs("errorType"):
				errType, _ = jsonscan.Str(it.Val)
			case it.KeyIs("phase"):
				phase, _ = jsonscan.Str(it.Val)
			}
		}
		if status != "" && status != "success" {
			if ev.typ == "platform.initReport" {
				failure(dst, MetricInitErrors, source, ev.time, errType, phase)
			} else {
				failure(dst, MetricRestoreErrors, source, ev.time, errType, "")
			}
		}
	case "platform.runtimeDone":
		it := jsonscan.Members(rec)
		for it.Next() {
			if it.KeyIs("metrics") {
				m := jsonscan.Members(it.Val)
				for m.Next() {
					if m.KeyIs("producedBytes") {
						if f, ok := jsonscan.Float(m.Val); ok {
							add(dst, MetricProducedBytes, source, ev.time, model.Sample, f)
						}
					}
				}
			}
		}
	case "platform.logsDropped":
		it := jsonscan.Members(rec)
		for it.Next() {
			switch {
			case it.KeyIs("droppedRecords"):
				if f, ok := jsonscan.Float(it.Val); ok {
					add(dst, MetricDroppedRecords, source, ev.time, model.Counter, f)
				}
			case it.KeyIs("droppedBytes"):
				if f, ok := jsonscan.Float(it.Val); ok {
					add(dst, MetricDroppedBytes, source, ev.time, model.Counter, f)
				}
			}
		}
	}
}

func reportMetrics(v []byte, r *report) {
	it := jsonscan.Members(v)
	for it.Next() {
		f, ok := jsonscan.Float(it.Val)
		if !ok {
			continue
		}
		switch {
		case it.KeyIs("durationMs"):
			r.duration, r.has = f, r.has|hasDuration
		case it.KeyIs("billedDurationMs"):
			r.billed, r.has = f, r.has|hasBilled
		case it.KeyIs("memorySizeMB"):
			r.memSize, r.has = f, r.has|hasMemSize
		case it.KeyIs("maxMemoryUsedMB"):
			r.maxMem, r.has = f, r.has|hasMaxMem
		case it.KeyIs("initDurationMs"):
			r.initDur, r.has = f, r.has|hasInit
		case it.KeyIs("restoreDurationMs"):
			r.restoreDur, r.has = f, r.has|hasRestore
		case it.KeyIs("billedRestoreDurationMs"):
			r.billedRestore, r.has = f, r.has|hasBilledRestore
		}
	}
}

// spans picks the extensionOverhead span of platform.report.
func spans(v []byte, r *report) {
	it := jsonscan.Elems(v)
	for it.Next() {
		var name []byte
		var d float64
		var hasD bool
		m := jsonscan.Members(it.Val)
		for m.Next() {
			switch {
			case m.KeyIs("name"):
				name, _ = jsonscan.Bytes(m.Val)
			case m.KeyIs("durationMs"):
				d, hasD = jsonscan.Float(m.Val)
			}
		}
		if hasD && string(name) == "extensionOverhead" {
			r.eo, r.has = d, r.has|hasExtOverhead
		}
	}
}

// LogsFromTelemetry appends one model.Log per function or extension event
// of a Telemetry API batch. A string record is decoded as a text log line
// (Lambda's "<ts>\t<requestId>\t<LEVEL>\t<msg>" prefix is recognised); an
// object record (JSON log format) maps timestamp, level, requestId and
// message, other fields becoming attributes. Each Log has the attribute
// type=function|extension and Source = source (or the learned function
// name). The event time is the timestamp unless the record carries one.
//
// Platform and unknown events are ignored here (FromTelemetry rejects
// unknown types, so calling both does not double count). Records that fail
// logline's checks are rejected with its reasons. The error is non-nil
// only if payload is not JSON.
//
// Ownership: strings and Message alias payload, except string records with
// JSON escapes, which are copied.
func (e *Extractor) LogsFromTelemetry(dst *model.Batch, source string, payload []byte) error {
	dec := logline.NewDecoder(logline.Options{DefaultSource: e.source(source)})
	return forEach(payload, func(v []byte) {
		if jsonscan.KindOf(v) != jsonscan.Object {
			return
		}
		ev, reason := parseEvent(v)
		if reason != "" || classify(ev.typ) != classLog {
			return
		}
		var rec []byte
		switch jsonscan.KindOf(ev.record) {
		case jsonscan.String:
			rec, _ = jsonscan.Bytes(ev.record)
		case jsonscan.Object:
			rec = ev.record
		default:
			dst.Reject(ReasonInvalidEvent, v)
			return
		}
		mark := dst.TagMark()
		dst.AddTag("type", ev.typ)
		dec.DecodeRecord(dst, rec, ev.time, mark)
	})
}
