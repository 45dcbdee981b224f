package datadog

import (
	"math"

	"github.com/les-streams/les/internal/model"
)

// The Datadog agent's sketch (datadog-agent pkg/quantile, config.go and
// key.go): a log-gamma index mapping with eps = 1/128, gamma = 1 + 2·eps,
// values below 1e-9 in the zero bin, keys biased so the smallest key of a
// positive value is 1, int16 keys (±32767 for ±Inf), uint16 bin counts.
// The backend reads a Dogsketch's k[] and n[] with these parameters.
const (
	agentEps      = 1.0 / 128
	agentMinValue = 1e-9
	agentBinLimit = 4096
	agentInfKey   = 1<<15 - 1
	agentMaxKey   = agentInfKey - 1
	maxBinWidth   = math.MaxUint16
)

var (
	agentGammaLn = math.Log1p(2 * agentEps)
	agentBias    = -int(math.Floor(math.Log(agentMinValue)/agentGammaLn)) + 1
	// agentNormMin is γ^(1-bias): the lower bound of key 1; smaller
	// magnitudes have key 0.
	agentNormMin = math.Pow(1+2*agentEps, float64(1-agentBias))
)

// agentKey is the agent's Config.key: k with γ^(k-bias) ≈ v, rounded to
// even, 0 for |v| < agentNormMin, negative for negative v.
func agentKey(v float64) int32 {
	switch {
	case v < 0:
		return -agentKey(-v)
	case v == 0 || v < agentNormMin:
		return 0
	}
	i := int(math.RoundToEven(math.Log(v)/agentGammaLn)) + agentBias
	if i > agentMaxKey {
		return agentInfKey
	}
	if i < 1 {
		return 1
	}
	return int32(i)
}

// bin is one (key, count) of a Dogsketch.
type bin struct {
	k int32
	n uint32
}

// appendBins appends the bins of d's centroids (sorted by value) to dst:
// each centroid counts in the agent key of its value; fractional counts
// carry over to the next bin (as the agent's FromDDSketch does); counts
// above 65535 take several bins of one key; past 4096 bins the lowest
// are merged into one. It returns the bins and their total count.
func appendBins(dst []bin, d *model.Distribution) ([]bin, uint64) {
	start := len(dst)
	var total uint64
	carry := 0.0
	for _, c := range d.Centroids {
		if !(c.Count > 0) || !model.IsFinite(c.Value) || math.IsInf(c.Count, 0) {
			continue
		}
		k := agentKey(c.Value)
		cnt := c.Count + carry
		n := uint64(cnt)
		carry = cnt - float64(n)
		if n == 0 {
			continue
		}
		total += n
		for n > 0 {
			w := min(n, maxBinWidth)
			if last := len(dst) - 1; last >= start && dst[last].k == k && uint64(dst[last].n)+w <= maxBinWidth {
				dst[last].n += uint32(w)
			} else {
				dst = append(dst, bin{k, uint32(w)})
			}
			n -= w
		}
	}
	if carry >= 0.5 && len(dst) > start {
		dst[len(dst)-1].n++
		total++
	}
	if extra := len(dst) - start - agentBinLimit; extra > 0 {
		// merge the lowest extra+1 bins into one (counts capped per bin)
		lo := dst[start : start+extra+1]
		var n uint64
		for _, b := range lo {
			n += uint64(b.n)
		}
		k := lo[len(lo)-1].k
		dst = append(dst[:start], dst[start+extra+1:]...)
		var head []bin
		for n > 0 {
			w := min(n, maxBinWidth)
			head = append(head, bin{k, uint32(w)})
			n -= w
		}
		dst = append(dst[:start], append(head, dst[start:]...)...)
	}
	return dst, total
}
