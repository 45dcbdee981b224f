package otlp

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/les-streams/les/internal/model"
)

// Severity names of OTLP's severity number ranges (1–4 TRACE … 21–24
// FATAL), used as Level when a record has a number but no text.
var severityNames = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// Logs appends the log records of ld to dst as model.Log: Level is the
// severity text (or the name of the severity number's range), Message the
// body (a string as is, other values as JSON), Attrs the resource, scope
// and record attributes plus severity_number, trace_id, span_id and
// event.name when set; RequestID is the faas.invocation_id attribute.
// now (Unix ns) stands in for a record with neither time nor observed
// time. Each record that cannot be mapped appends one model.Reject.
// Ownership: see Decoder.
func (d *Decoder) Logs(dst *model.Batch, ld plog.Logs, now int64) {
	d.begin()
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		d.setResource(rl.Resource())
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			sl := sls.At(j)
			d.setScope(sl.Scope())
			lrs := sl.LogRecords()
			for k := range lrs.Len() {
				d.logRecord(dst, lrs.At(k), now)
			}
		}
	}
}

func (d *Decoder) logRecord(dst *model.Batch, lr plog.LogRecord, now int64) {
	var extra [4]model.Tag
	ex := extra[:0]
	level := lr.SeverityText()
	if n := lr.SeverityNumber(); n != plog.SeverityNumberUnspecified {
		if level == "" && n >= 1 && int(n) <= 4*len(severityNames) {
			level = severityNames[(n-1)/4]
		}
		ex = append(ex, model.Tag{Key: AttrSeverityNum, Value: d.valueString(pcommon.NewValueInt(int64(n)))})
	}
	tid, sid := lr.TraceID(), lr.SpanID()
	if s := d.hexID(tid[:]); s != "" {
		ex = append(ex, model.Tag{Key: AttrTraceID, Value: s})
	}
	if s := d.hexID(sid[:]); s != "" {
		ex = append(ex, model.Tag{Key: AttrSpanID, Value: s})
	}
	if e := lr.EventName(); e != "" {
		ex = append(ex, model.Tag{Key: AttrEventName, Value: e})
	}
	attrs, ok := d.itemTags(dst, lr.Attributes(), ex...)
	if !ok {
		dst.Reject(ReasonTooManyTags, nil)
		return
	}
	ts := int64(lr.Timestamp())
	if ts == 0 {
		ts = timestamp(lr.ObservedTimestamp(), now)
	}
	l := model.Log{Timestamp: ts, Source: d.source, Level: level, Attrs: attrs}
	l.RequestID, _ = attrs.Get(AttrInvocationID)
	l.Message = bytesOf(d.valueString(lr.Body()))
	dst.Logs = append(dst.Logs, l)
}
