package model

import (
	"fmt"
	"testing"
	"unsafe"
)

// TestSeriesMemo: a value is found again only for the same memory and
// extra, in the same batch; never for equal bytes elsewhere, another
// length or an earlier batch; and many series at once (slots shared) never
// return another series' value.
func TestSeriesMemo(t *testing.T) {
	var m SeriesMemo[string]
	m.Next()
	buf := []byte("name.a")
	name := unsafe.String(&buf[0], len(buf))
	tags := Tags{{Key: "k", Value: "v"}}
	v, hit := m.Slot(0, name, "src", tags, 1)
	if hit {
		t.Fatal("hit before anything was remembered")
	}
	*v = "A"
	if v, hit := m.Slot(0, name, "src", tags, 1); !hit || *v != "A" {
		t.Fatalf("same memory: %q, %v", *v, hit)
	}
	for what, f := range map[string]func() bool{
		"equal bytes, other memory": func() bool { _, h := m.Slot(0, string(buf), "src", tags, 1); return h },
		"other source":              func() bool { _, h := m.Slot(0, name, "abc", tags, 1); return h },
		"other tags, same length":   func() bool { _, h := m.Slot(0, name, "src", Tags{{Key: "k", Value: "w"}}, 1); return h },
		"other extra":               func() bool { _, h := m.Slot(0, name, "src", tags, 2); return h },
		"shorter name":              func() bool { _, h := m.Slot(0, name[:4], "src", tags, 1); return h },
		"fewer tags":                func() bool { _, h := m.Slot(0, name, "src", tags[:0], 1); return h },
		"next batch":                func() bool { m.Next(); _, h := m.Slot(0, name, "src", tags, 1); return h },
	} {
		// The series is remembered again before each case.
		if v, _ := m.Slot(0, name, "src", tags, 1); true {
			*v = "A"
		}
		if v, hit := m.Slot(0, name, "src", tags, 1); !hit || *v != "A" {
			t.Fatalf("before %s: %q, %v", what, *v, hit)
		}
		if f() {
			t.Errorf("%s: hit", what)
		}
	}
	// 5,000 series through 1,024 slots, twice: a hit is always the
	// series' own value.
	m.Next()
	names := make([]string, 5000)
	for i := range names {
		names[i] = fmt.Sprint("series.", i)
	}
	for round := range 2 {
		for i, n := range names {
			v, hit := m.Slot(0, n, "", nil, 0)
			if hit && *v != n {
				t.Fatalf("round %d: series %d got %q", round, i, *v)
			}
			*v = n
		}
	}
}

// TestSeriesMemoNumbered: a decoder's series numbers pick the slot, so
// series never take turns; the memory is still checked, so a number that
// means another series here (a point copied from another batch) misses.
func TestSeriesMemoNumbered(t *testing.T) {
	var m SeriesMemo[string]
	m.Next()
	names := make([]string, 3000)
	for i := range names {
		names[i] = fmt.Sprint("series.", i)
	}
	for round := range 2 {
		for i, n := range names {
			v, hit := m.Slot(uint32(i+1), n, "", nil, 0)
			if hit != (round == 1) || (hit && *v != n) {
				t.Fatalf("round %d, series %d: %q, hit %v", round, i, *v, hit)
			}
			*v = n
		}
	}
	if _, hit := m.Slot(1, names[1], "", nil, 0); hit {
		t.Fatal("number 1 with another series' memory: hit")
	}
	// Beyond the numbered slots the shared ones serve.
	v, _ := m.Slot(memoNumbered+5, names[7], "", nil, 0)
	*v = "far"
	if v, hit := m.Slot(memoNumbered+5, names[7], "", nil, 0); !hit || *v != "far" {
		t.Fatalf("far number: %q, %v", *v, hit)
	}
}
