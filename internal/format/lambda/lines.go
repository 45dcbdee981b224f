package lambda

import (
	"bytes"
	"strconv"

	"github.com/les-streams/les/internal/format/jsonscan"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/model"
)

// FromLine inspects one CloudWatch log event message (it may span several
// lines, as a REPORT with its XRAY line does) and, if it is a Lambda
// platform line, appends the metric points it implies and returns true.
// ts (Unix ns) is the event's timestamp; source the function name ("" uses
// the name learned from telemetry).
//
// Recognised: START, END, REPORT (fields by key, any order, tab/space/newline
// separated, optional Init/Restore/Billed Restore Duration, Status, Error
// Type, XRAY), INIT_START, INIT_REPORT, RESTORE_START, RESTORE_REPORT,
// EXTENSION, TELEMETRY, XRAY, "<ts> <id> Task timed out after N seconds",
// "RequestId: <id> Error: …", "RequestId: <id> Process exited before
// completing request", and JSON-format system logs ({"time","type":
// "platform.*","record"}). Other lines return false and append nothing.
//
// Ownership: nothing produced aliases line except error_type tag values.
func (e *Extractor) FromLine(dst *model.Batch, source string, line []byte, ts int64) bool {
	if len(line) < 3 {
		return false
	}
	source = e.source(source)
	switch line[0] {
	case 'S':
		return hasPrefix(line, "START RequestId:")
	case 'E':
		return hasPrefix(line, "END RequestId:") || hasPrefix(line, "EXTENSION")
	case 'T':
		return hasPrefix(line, "TELEMETRY")
	case 'X':
		return hasPrefix(line, "XRAY TraceId:")
	case 'R':
		switch {
		case hasPrefix(line, "REPORT RequestId:"):
			var r report
			parseFields(line[len("REPORT RequestId:"):], &r, nil, nil)
			r.emit(dst, source, ts)
			return true
		case hasPrefix(line, "RESTORE_START"):
			return true
		case hasPrefix(line, "RESTORE_REPORT"):
			var r report
			var et []byte
			parseFields(line[len("RESTORE_REPORT"):], &r, &et, nil)
			if len(r.status) > 0 && string(r.status) != "success" {
				failure(dst, MetricRestoreErrors, source, ts, jsonscan.Alias(et), "")
			}
			return true
		case hasPrefix(line, "RequestId:"):
			rest := line[len("RequestId:"):]
			if bytes.Contains(rest, []byte(" Error: ")) || bytes.Contains(rest, []byte("Process exited before completing request")) {
				add(dst, MetricErrors, source, ts, model.Counter, 1)
				return true
			}
		}
		return false
	case 'I':
		switch {
		case hasPrefix(line, "INIT_START"):
			return true
		case hasPrefix(line, "INIT_REPORT"):
			var r report
			var et, phase []byte
			parseFields(line[len("INIT_REPORT"):], &r, &et, &phase)
			if len(r.status) > 0 && string(r.status) != "success" {
				failure(dst, MetricInitErrors, source, ts, jsonscan.Alias(et), jsonscan.Alias(phase))
			}
			return true
		}
		return false
	case '{':
		return e.fromJSONLine(dst, source, line)
	}
	if line[0] >= '0' && line[0] <= '9' && bytes.Contains(line, []byte("Task timed out after ")) {
		if sp := bytes.IndexAny(line, " \t"); sp > 0 {
			if _, ok := logline.ParseTime(line[:sp]); ok {
				add(dst, MetricTimeouts, source, ts, model.Counter, 1)
				return true
			}
		}
	}
	if line[0] == ' ' || line[0] == '\t' {
		return e.fromJSONLine(dst, source, bytes.TrimLeft(line, " \t"))
	}
	return false
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func isSep(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// parseFields scans "Key: value[ unit]" pairs separated by tabs, spaces or
// newlines. Unknown keys are skipped.
func parseFields(b []byte, r *report, errType, phase *[]byte) {
	i := 0
	for i < len(b) {
		for i < len(b) && isSep(b[i]) {
			i++
		}
		if i >= len(b) {
			return
		}
		rest := b[i:]
		key := matchKey(rest)
		if key == "" {
			// skip one word
			for i < len(b) && !isSep(b[i]) {
				i++
			}
			continue
		}
		i += len(key)
		for i < len(b) && b[i] == ' ' {
			i++
		}
		start := i
		for i < len(b) && !isSep(b[i]) {
			i++
		}
		val := b[start:i]
		switch key {
		case "Status:":
			r.status = val
			continue
		case "Error Type:":
			if errType != nil {
				*errType = val
			}
			continue
		case "Phase:":
			if phase != nil {
				*phase = val
			}
			continue
		}
		f, err := strconv.ParseFloat(jsonscan.Alias(val), 64)
		if err != nil {
			continue
		}
		switch key {
		case "Duration:":
			r.duration, r.has = f, r.has|hasDuration
		case "Billed Duration:":
			r.billed, r.has = f, r.has|hasBilled
		case "Memory Size:":
			r.memSize, r.has = f, r.has|hasMemSize
		case "Max Memory Used:":
			r.maxMem, r.has = f, r.has|hasMaxMem
		case "Init Duration:":
			r.initDur, r.has = f, r.has|hasInit
		case "Restore Duration:":
			r.restoreDur, r.has = f, r.has|hasRestore
		case "Billed Restore Duration:":
			r.billedRestore, r.has = f, r.has|hasBilledRestore
		}
	}
}

// matchKey returns the field key b starts with, or "".
func matchKey(b []byte) string {
	var keys []string
	switch b[0] {
	case 'D':
		keys = []string{"Duration:"}
	case 'B':
		keys = []string{"Billed Duration:", "Billed Restore Duration:"}
	case 'M':
		keys = []string{"Memory Size:", "Max Memory Used:"}
	case 'I':
		keys = []string{"Init Duration:"}
	case 'R':
		keys = []string{"Restore Duration:"}
	case 'S':
		keys = []string{"Status:"}
	case 'E':
		keys = []string{"Error Type:"}
	case 'P':
		keys = []string{"Phase:"}
	}
	for _, k := range keys {
		if hasPrefix(b, k) {
			return k
		}
	}
	return ""
}
