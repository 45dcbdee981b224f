package otlp

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/les-streams/les/internal/model"
)

// Traces appends the spans of td to dst as model.Span: ids in lower-case
// hex, Duration = end − start, Tags the resource, scope and span
// attributes, and kind, status, events and links (their attributes as
// they are, in dst.Arena; events in dst.EventArena, links in
// dst.LinkArena). A span with an all-zero trace or span id, or that ends
// before it starts, appends one model.Reject instead. Ownership: see
// Decoder.
func (d *Decoder) Traces(dst *model.Batch, td ptrace.Traces) {
	d.begin()
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		d.setResource(rs.Resource())
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j)
			d.setScope(ss.Scope())
			spans := ss.Spans()
			for k := range spans.Len() {
				d.span(dst, spans.At(k))
			}
		}
	}
}

func (d *Decoder) span(dst *model.Batch, sp ptrace.Span) {
	name := sp.Name()
	tid, sid, pid := sp.TraceID(), sp.SpanID(), sp.ParentSpanID()
	if tid.IsEmpty() {
		dst.Reject(ReasonInvalidTraceID, bytesOf(name))
		return
	}
	if sid.IsEmpty() {
		dst.Reject(ReasonInvalidSpanID, bytesOf(name))
		return
	}
	start, end := sp.StartTimestamp(), sp.EndTimestamp()
	if start == 0 || end < start {
		dst.Reject(ReasonInvalidDuration, bytesOf(name))
		return
	}
	tmark := dst.TagMark()
	tags, ok := d.itemTags(dst, sp.Attributes())
	if !ok {
		dst.Reject(ReasonTooManyTags, bytesOf(name))
		return
	}
	s := model.Span{Name: name, TraceID: d.hexID(tid[:]), SpanID: d.hexID(sid[:]), ParentID: d.hexID(pid[:]),
		Start: int64(start), Duration: int64(end - start), Source: d.source, Tags: tags,
		Kind: model.SpanKind(sp.Kind()), StatusCode: model.StatusCode(sp.Status().Code()),
		StatusMessage: sp.Status().Message()}
	if evs := sp.Events(); evs.Len() > 0 {
		emark := len(dst.EventArena)
		for i := range evs.Len() {
			ev := evs.At(i)
			dst.EventArena = append(dst.EventArena, model.SpanEvent{Name: ev.Name(),
				Timestamp: timestamp(ev.Timestamp(), s.Start), Attrs: d.plainAttrs(dst, ev.Attributes())})
		}
		end := len(dst.EventArena)
		s.Events = dst.EventArena[emark:end:end]
	}
	if links := sp.Links(); links.Len() > 0 {
		lmark := len(dst.LinkArena)
		for i := range links.Len() {
			l := links.At(i)
			ltid, lsid := l.TraceID(), l.SpanID()
			if ltid.IsEmpty() {
				dst.LinkArena = dst.LinkArena[:lmark]
				dst.EventArena = dst.EventArena[:len(dst.EventArena)-len(s.Events)]
				dst.TruncateTags(tmark)
				dst.Reject(ReasonInvalidTraceID, bytesOf(name))
				return
			}
			dst.LinkArena = append(dst.LinkArena, model.SpanLink{TraceID: d.hexID(ltid[:]), SpanID: d.hexID(lsid[:]),
				Attrs: d.plainAttrs(dst, l.Attributes())})
		}
		end := len(dst.LinkArena)
		s.Links = dst.LinkArena[lmark:end:end]
	}
	dst.Spans = append(dst.Spans, s)
}

// plainAttrs appends m's attributes to dst.Arena as they are.
func (d *Decoder) plainAttrs(dst *model.Batch, m pcommon.Map) model.Tags {
	mark := dst.TagMark()
	dst.Arena = d.appendAttrs(dst.Arena, m)
	return dst.TagsSince(mark)
}
