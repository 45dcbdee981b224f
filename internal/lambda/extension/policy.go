package extension

import "time"

// policy decides, at each INVOKE, whether this invocation ends with a
// bounded flush (wait for platform.runtimeDone, publish, then next) or
// whether the extension calls next at once and the batcher publishes in
// the background while the sandbox runs (ADR 0005). Adaptive, after the
// Datadog extension's published design: the first invocations of a
// sandbox, and invocations that arrive on average more than Interval
// apart, flush at the end; frequent invocations flush in the background,
// with an end flush at least every Interval so that nothing waits in
// memory longer than that.
type policy struct {
	cfg      FlushConfig
	arrivals [policyWindow]time.Time
	n        int // invocations seen
	lastEnd  time.Time
}

const policyWindow = 10

// atInvoke records an invocation arriving at now and returns whether it
// ends with a flush.
func (p *policy) atInvoke(now time.Time) bool {
	p.arrivals[p.n%policyWindow] = now
	p.n++
	end := false
	switch p.cfg.Mode {
	case "end":
		end = true
	case "periodic":
		end = now.Sub(p.lastEnd) >= p.cfg.Interval
	default: // adaptive
		end = !p.frequent() || now.Sub(p.lastEnd) >= p.cfg.Interval
	}
	if end {
		p.lastEnd = now
	}
	return end
}

// frequent: the last policyWindow invocations came at most Interval
// apart on average.
func (p *policy) frequent() bool {
	if p.n <= policyWindow {
		return false
	}
	newest := p.arrivals[(p.n-1)%policyWindow]
	oldest := p.arrivals[p.n%policyWindow]
	return newest.Sub(oldest) <= time.Duration(policyWindow-1)*p.cfg.Interval
}
