package rollup

import (
	"math"
	"math/bits"
)

// MaxExactSetMembers is how many distinct members a set window counts
// exactly; past it the window switches to a HyperLogLog (about 0.8%
// standard error) and Stats.SetsApproximated is incremented.
const MaxExactSetMembers = 10_000

const hllP = 14 // 2^14 one-byte registers = 16 KiB

// distinct counts distinct 53-bit member hashes (model.Set values).
type distinct struct {
	exact map[uint64]struct{}
	hll   []uint8 // nil while exact
}

func mix64(x uint64) uint64 { // splitmix64 finalizer: spreads 53-bit hashes over 64 bits
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// add adds a member and reports whether the set switched to HyperLogLog.
func (d *distinct) add(h uint64) bool {
	if d.hll != nil {
		d.hllAdd(h)
		return false
	}
	if d.exact == nil {
		d.exact = make(map[uint64]struct{})
	}
	d.exact[h] = struct{}{}
	if len(d.exact) <= MaxExactSetMembers {
		return false
	}
	d.hll = make([]uint8, 1<<hllP)
	for m := range d.exact {
		d.hllAdd(m)
	}
	d.exact = nil
	return true
}

func (d *distinct) hllAdd(h uint64) {
	x := mix64(h)
	idx := x >> (64 - hllP)
	rho := uint8(bits.LeadingZeros64(x<<hllP|1<<(hllP-1)) + 1)
	if rho > d.hll[idx] {
		d.hll[idx] = rho
	}
}

func (d *distinct) count() float64 {
	if d.hll == nil {
		return float64(len(d.exact))
	}
	const m = float64(1 << hllP)
	var sum float64
	zeros := 0
	for _, r := range d.hll {
		sum += 1 / float64(uint64(1)<<r)
		if r == 0 {
			zeros++
		}
	}
	alpha := 0.7213 / (1 + 1.079/m)
	e := alpha * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return float64(int64(e + 0.5))
}
