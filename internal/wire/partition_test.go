package wire

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/les-streams/les/internal/model"
)

// The oracle is the standard library's FNV-1a over the documented byte
// sequence, so the hand-rolled loop and the specification cannot drift.
func TestSeriesHashMatchesSpec(t *testing.T) {
	cases := []struct {
		name, source string
		tags         model.Tags
	}{
		{"", "", nil},
		{"cpu.load", "host-1", nil},
		{"aws.lambda.duration", "fn", model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu-west-1"}}},
		{"x", "ü", model.Tags{{Key: "k", Value: ""}}},
	}
	for _, c := range cases {
		h := fnv.New64a()
		h.Write([]byte(c.name + "\x00" + c.source + "\x00"))
		for _, t := range c.tags {
			h.Write([]byte(t.Key + "\x00" + t.Value + "\x00"))
		}
		if got, want := SeriesHash(c.name, c.source, c.tags), fmix64(h.Sum64()); got != want {
			t.Errorf("SeriesHash(%q,%q,%v) = %x, want %x", c.name, c.source, c.tags, got, want)
		}
	}
	h := fnv.New64a()
	h.Write([]byte("src\x00"))
	if got := SourceHash("src"); got != fmix64(h.Sum64()) {
		t.Errorf("SourceHash = %x, want %x", got, fmix64(h.Sum64()))
	}
}

// fmix64 is MurmurHash3's finalizer, written out from its reference
// (smhasher's MurmurHash3.cpp) for the oracle.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// TestPartitionSpread: similar names (fn-00 … fn-39) spread over the
// partitions about evenly.
func TestPartitionSpread(t *testing.T) {
	counts := make([]int, 4)
	for s := range 400 {
		counts[Partition(SeriesHash("scale.latency", fmt.Sprintf("fn-%03d", s), nil), 4)]++
	}
	for p, n := range counts {
		if n < 70 || n > 130 {
			t.Fatalf("partition %d has %d of 400 similar series: %v", p, n, counts)
		}
	}
}

// Golden values: a producer in another language checks itself against
// these (docs/wire-format.md lists them too).
func TestPartitionGolden(t *testing.T) {
	got := fmt.Sprintf("%016x %d %d", SeriesHash("cpu.load", "host-1", model.Tags{{Key: "env", Value: "prod"}}),
		Partition(SeriesHash("cpu.load", "host-1", model.Tags{{Key: "env", Value: "prod"}}), 16),
		Partition(SourceHash("fn-a"), 4))
	const want = "bb4264458e41bc35 11 2"
	if got != want {
		t.Fatalf("golden partition values changed: %s, want %s", got, want)
	}
}

func TestPartitionRange(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 16, 1000} {
		for p := range n {
			lo := PartitionRange(p, n)
			if got := Partition(lo, n); got != p {
				t.Fatalf("n=%d: start of partition %d maps to %d", n, p, got)
			}
			if lo > 0 {
				if got := Partition(lo-1, n); got != p-1 {
					t.Fatalf("n=%d: hash before partition %d maps to %d", n, p, got)
				}
			}
		}
		if Partition(^uint64(0), n) != n-1 {
			t.Fatalf("n=%d: last hash not in last partition", n)
		}
	}
}

func BenchmarkSeriesHash(b *testing.B) {
	tags := model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu-west-1"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = SeriesHash("aws.lambda.duration", "my-function", tags)
	}
}
