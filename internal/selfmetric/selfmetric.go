// Package selfmetric holds les' own metrics and writes them in the
// Prometheus text format. A Registry is created once by the app and passed
// to every component; there is no global registry.
package selfmetric

import (
	"io"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Registry is a set of metrics. It is safe for concurrent use.
type Registry struct {
	set     *metrics.Set
	rejects *RejectLog
}

// New returns an empty registry.
func New() *Registry { return &Registry{set: metrics.NewSet(), rejects: NewRejectLog()} }

// Rejects is the log of recent rejected inputs that intakes note their
// rejections in (rejects.go).
func (r *Registry) Rejects() *RejectLog { return r.rejects }

// Counter returns the counter name{labels}; labels are key, value pairs.
// Look counters up once and keep them: the lookup builds a string.
func (r *Registry) Counter(name string, labels ...string) *metrics.Counter {
	return r.set.GetOrCreateCounter(series(name, labels))
}

// Gauge registers f as the gauge name{labels}; registering the same series
// twice keeps the first function.
func (r *Registry) Gauge(name string, f func() float64, labels ...string) {
	r.set.GetOrCreateGauge(series(name, labels), f)
}

// WritePrometheus writes every metric, then the process metrics (CPU, RSS,
// Go runtime), in the Prometheus text format.
func (r *Registry) WritePrometheus(w io.Writer) {
	r.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

func series(name string, labels []string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		b.WriteString(escape(labels[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func escape(v string) string {
	if !strings.ContainsAny(v, "\\\"\n") {
		return v
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// ReasonCounters caches one counter per reason of a labelled family, so the
// hot path looks reasons up in a map without building strings.
type ReasonCounters struct {
	reg    *Registry
	name   string
	labels []string
	mu     sync.RWMutex
	m      map[string]*metrics.Counter
}

// NewReasonCounters returns counters name{labels..., reason="..."}.
func (r *Registry) NewReasonCounters(name string, labels ...string) *ReasonCounters {
	return &ReasonCounters{reg: r, name: name, labels: labels, m: map[string]*metrics.Counter{}}
}

// Inc adds one to the counter for reason.
func (rc *ReasonCounters) Inc(reason string) { rc.Add(reason, 1) }

// Add adds n to the counter for reason.
func (rc *ReasonCounters) Add(reason string, n int) {
	rc.mu.RLock()
	c := rc.m[reason]
	rc.mu.RUnlock()
	if c == nil {
		rc.mu.Lock()
		if c = rc.m[reason]; c == nil {
			c = rc.reg.Counter(rc.name, append(append([]string(nil), rc.labels...), "reason", reason)...)
			rc.m[reason] = c
		}
		rc.mu.Unlock()
	}
	c.Add(n)
}

// Total is the sum over every reason counted through rc.
func (rc *ReasonCounters) Total() int64 {
	rc.mu.RLock()
	defer rc.mu.RUnlock()
	var n uint64
	for _, c := range rc.m {
		n += c.Get()
	}
	return int64(n)
}
