package wavefront

import (
	"strconv"
	"strings"
	"testing"
)

// TestCacheBudget: decoders sharing a CacheBudget hold at most the budget
// between them (the connections of one TCP listener), decode exactly as
// without a cache when it is spent, and get the room back from Release.
func TestCacheBudget(t *testing.T) {
	const series = 40
	payload := func(conn string) string {
		var p strings.Builder
		for i := range series {
			p.WriteString("m." + strconv.Itoa(i) + " 1 source=" + conn + " k=v" + strconv.Itoa(i) + "\n")
		}
		return p.String()
	}
	// Room for one connection's series, not two.
	probe := newDiffer(t, Options{SeriesCache: 1000})
	probe.decode(payload("a"))
	one := probe.cached.cache.bytes
	budget := NewCacheBudget(one + one/2)

	a := newDiffer(t, Options{SeriesCache: 1000, SeriesCacheBudget: budget})
	b := newDiffer(t, Options{SeriesCache: 1000, SeriesCacheBudget: budget})
	for range 3 {
		a.decode(payload("a"))
	}
	if got := budget.Used(); got != one {
		t.Fatalf("budget used %d after one connection's %d series, want %d", got, series, one)
	}
	if h := a.cached.cache.hits; h != 2*series {
		t.Fatalf("connection a: %d hits, want %d", h, 2*series)
	}
	// b finds the budget spent: it caches what fits, then (holding
	// bytes) begins anew when the next series does not fit, and never
	// takes the budget past its bound. Every line decodes as uncached
	// (the differ compares).
	for range 3 {
		b.decode(payload("b"))
		if got := budget.Used(); got > one+one/2 {
			t.Fatalf("budget used %d, bound %d", got, one+one/2)
		}
	}
	if b.cached.cache.resets == 0 {
		t.Fatalf("connection b never began anew with the budget spent (hits %d)", b.cached.cache.hits)
	}
	// a ends: its bytes come back, and b caches all of its series.
	a.cached.Release()
	if got, want := budget.Used(), b.cached.cache.bytes; got != want {
		t.Fatalf("after a's release the budget holds %d, want b's %d", got, want)
	}
	b.decode(payload("b"))
	hits := b.cached.cache.hits
	b.decode(payload("b"))
	if got := b.cached.cache.hits - hits; got != series {
		t.Fatalf("connection b after a ended: %d of %d lines hit", got, series)
	}
	if got := budget.Used(); got != one {
		t.Fatalf("budget used %d with b's %d series cached, want %d", got, series, one)
	}
	b.cached.Release()
	if got := budget.Used(); got != 0 {
		t.Fatalf("budget used %d after every decoder released", got)
	}
	// A released decoder still decodes, and caches again.
	b.decode(payload("b"))
	if got := budget.Used(); got != one {
		t.Fatalf("budget used %d after reuse, want %d", got, one)
	}
}
