package wire

import "github.com/les-streams/les/internal/model"

// The partition function is part of the wire format (docs/wire-format.md,
// "Partitioning") so that producers in any language put a series on the
// same partition: a 64-bit FNV-1a hash over the series identity, mixed by
// MurmurHash3's 64-bit finalizer (FNV alone barely changes its top bits
// for names that differ in their last bytes, such as fn-10 … fn-19), then
// the top 32 bits scaled onto [0, n). Scaling (not modulo) keeps
// neighbouring hashes together, so partition p of n owns one contiguous
// range of the hash space; Kinesis explicit hash keys are taken from it.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvSep(h uint64) uint64 {
	// h ^= 0 is a no-op: the separator byte 0x00 only multiplies.
	return h * fnvPrime
}

// SeriesHash is the hash of a metric series: FNV-1a 64 over name, 0x00,
// source, 0x00, then for each tag in sorted order key, 0x00, value, 0x00;
// then Mix. tags must be sorted (model.SortTags).
func SeriesHash(name, source string, tags model.Tags) uint64 {
	h := fnvSep(fnvString(fnvOffset, name))
	h = fnvSep(fnvString(h, source))
	for i := range tags {
		h = fnvSep(fnvString(h, tags[i].Key))
		h = fnvSep(fnvString(h, tags[i].Value))
	}
	return Mix(h)
}

// SourceHash is the hash logs and spans are partitioned by: FNV-1a 64 over
// source, 0x00; then Mix.
func SourceHash(source string) uint64 {
	return Mix(fnvSep(fnvString(fnvOffset, source)))
}

// Mix is MurmurHash3's fmix64: h ^= h>>33; h *= 0xff51afd7ed558ccd;
// h ^= h>>33; h *= 0xc4ceb9fe1a85ec53; h ^= h>>33.
func Mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Partition maps a hash onto one of n partitions: (hash>>32) × n >> 32.
// n ≤ 0 is treated as 1.
func Partition(hash uint64, n int) int {
	if n <= 1 {
		return 0
	}
	return int(((hash >> 32) * uint64(n)) >> 32)
}

// PartitionRange is the first hash (inclusive) of partition p of n; the
// partition ends where p+1 begins (2^64 for the last).
func PartitionRange(p, n int) uint64 {
	if n <= 1 || p <= 0 {
		return 0
	}
	// Smallest x with (x × n) >> 32 ≥ p, on the top 32 bits: ceil(p×2^32/n).
	top := (uint64(p)<<32 + uint64(n) - 1) / uint64(n)
	return top << 32
}

// MetricPartition is the partition of m's series among n.
func MetricPartition(m *model.Metric, n int) int {
	if n <= 1 {
		return 0
	}
	return Partition(SeriesHash(m.Name, m.Source, m.Tags), n)
}

// DistPartition is the partition of d's series among n.
func DistPartition(d *model.Distribution, n int) int {
	if n <= 1 {
		return 0
	}
	return Partition(SeriesHash(d.Name, d.Source, d.Tags), n)
}

// LogPartition is the partition of l's source among n.
func LogPartition(l *model.Log, n int) int {
	if n <= 1 {
		return 0
	}
	return Partition(SourceHash(l.Source), n)
}

// SpanPartition is the partition of s's source among n.
func SpanPartition(s *model.Span, n int) int {
	if n <= 1 {
		return 0
	}
	return Partition(SourceHash(s.Source), n)
}
