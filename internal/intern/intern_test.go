package intern

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTableAgainstMap: gets and puts of random keys, some of them prefixes
// of others, agree with a Go map; numbers follow the order of the puts;
// with every hash the same (hashMask 0) lookups still tell the keys apart
// by their bytes; Reset forgets everything and numbers again from 1. A
// NewSplit table finds a key by Get and by GetParts of its two parts
// alike, first parts of every length the short hash distinguishes (0 to
// over 32 bytes).
func TestTableAgainstMap(t *testing.T) {
	for _, split := range []bool{false, true} {
		for _, mask := range []uint64{^uint64(0), 0} {
			t.Run(fmt.Sprintf("split=%v/hashMask=%x", split, mask), func(t *testing.T) {
				hashMask = mask
				defer func() { hashMask = ^uint64(0) }()
				testTableAgainstMap(t, split)
			})
		}
	}
}

func testTableAgainstMap(t *testing.T, split bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := New[int]()
	if split {
		tab = NewSplit[int](':')
	}
	get := func(k string) (*int, int) {
		if !split || rng.IntN(2) == 0 {
			return tab.Get([]byte(k))
		}
		i := strings.IndexByte(k, ':') + 1
		if i == 0 {
			i = len(k)
		}
		return tab.GetParts([]byte(k[:i]), []byte(k[i:]))
	}
	for round := range 3 {
		want := map[string]int{} // key -> number
		for range 3000 {
			k := fmt.Sprintf("n%s.%d:|#env:%d", strings.Repeat("x", rng.IntN(40)), rng.IntN(20), rng.IntN(3))
			if rng.IntN(4) == 0 {
				k = k[:rng.IntN(len(k)+1)]
			}
			e, n := get(k)
			wn, ok := want[k]
			if ok != (e != nil) || n != wn {
				t.Fatalf("round %d: Get(%q) = %v, %d; want present %v, %d", round, k, e, n, ok, wn)
			}
			if ok {
				if *e != -wn {
					t.Fatalf("Get(%q) entry %d, want %d", k, *e, -wn)
				}
				continue
			}
			if n = tab.Put(k, -(len(want) + 1)); n != len(want)+1 {
				t.Fatalf("Put(%q) numbered %d, want %d", k, n, len(want)+1)
			}
			want[k] = n
		}
		if tab.Len() != len(want) {
			t.Fatalf("Len %d, want %d", tab.Len(), len(want))
		}
		tab.Reset()
		if tab.Len() != 0 {
			t.Fatal("Reset kept entries")
		}
		for k := range want {
			if e, n := get(k); e != nil || n != 0 {
				t.Fatalf("after Reset Get(%q) = %d", k, n)
			}
		}
	}
}

// TestGetAllocs: a lookup allocates nothing.
func TestGetAllocs(t *testing.T) {
	tab := New[int]()
	tab.Put("a|#b:c", 1)
	k := []byte("a|#b:c")
	if a := testing.AllocsPerRun(100, func() { tab.Get(k) }); a != 0 {
		t.Fatalf("Get allocated %v times", a)
	}
}

var sink int

// evict reads 32 random bytes of a 32 MiB buffer: the other work of a
// line (decoding, the batcher, the rollup) that pushes a cache's memory
// out of the core's cache between lookups.
func evict(buf []byte, r *uint64) {
	for range 32 {
		*r = *r*6364136223846793005 + 1442695040888963407
		sink += int(buf[(*r>>20)%uint64(len(buf))])
	}
}

// BenchmarkGet: lookups of 5,000 keys of ~90 bytes with series-entry-sized
// values in random order, as a cache sees a les bench load, with and
// without other memory traffic between lookups; the Go map and the
// traffic alone for comparison.
func BenchmarkGet(b *testing.B) {
	type entry struct {
		name, source string
		tags         []string
		ref          uint64
	}
	keys := make([][]byte, 5000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "bench.metric.%d|#env:prod,region:eu-west-%d,service:svc-%d,version:v%d,az:a%d", i%97, i%3, i%25, i%4, i)
	}
	order := rand.New(rand.NewPCG(2, 3)).Perm(len(keys) * 20)
	buf := make([]byte, 32<<20)
	tab := New[entry]()
	m := map[string]entry{}
	for _, k := range keys {
		tab.Put(string(k), entry{})
		m[string(k)] = entry{}
	}
	for _, traffic := range []bool{false, true} {
		run := func(b *testing.B, get func([]byte) bool) {
			i, r := 0, uint64(1)
			for b.Loop() {
				if !get(keys[order[i]%len(keys)]) {
					b.Fatal("missing")
				}
				if traffic {
					evict(buf, &r)
				}
				i = (i + 1) % len(order)
			}
		}
		b.Run(fmt.Sprint("table/traffic=", traffic), func(b *testing.B) {
			b.ReportAllocs()
			run(b, func(k []byte) bool { e, _ := tab.Get(k); return e != nil })
		})
		b.Run(fmt.Sprint("map/traffic=", traffic), func(b *testing.B) {
			run(b, func(k []byte) bool { _, ok := m[string(k)]; return ok })
		})
		b.Run(fmt.Sprint("none/traffic=", traffic), func(b *testing.B) {
			run(b, func(k []byte) bool { return len(k) > 0 })
		})
	}
}
