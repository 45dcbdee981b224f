package otlp

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
)

// alpha is DDSketch's relative accuracy in the rollup (docs/rollups.md).
const alpha = 0.01

// midpointBound is the README's bound on the relative error of the
// geometric midpoint of the bucket that holds a quantile's rank, at scale:
// (1+α)·√base − 1 with base = 2^(2^−scale).
func midpointBound(scale int32) float64 {
	return (1+alpha)*math.Sqrt(math.Exp2(math.Exp2(-float64(scale)))) - 1
}

// TestSinkBucketIndexDefinition checks bucketIndex against the OTLP
// definition: bucket i holds (base^i, base^(i+1)], base = 2^(2^-scale).
func TestSinkBucketIndexDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		v := math.Exp2(r.Float64()*200 - 100)
		for scale := -4; scale <= 20; scale++ {
			i := bucketIndex(v, scale)
			// compare exponents: log2(v)·2^scale in (i, i+1], with slack
			// for the rounding of Log2
			x := math.Log2(v) * math.Exp2(float64(scale))
			if !(x > float64(i)-1e-9 && x <= float64(i+1)+1e-9) {
				t.Fatalf("bucketIndex(%g, %d) = %d; log2(v)·2^scale = %.12f", v, scale, i, x)
			}
		}
	}
	// exact powers of two close their bucket (upper-inclusive)
	for e := -1074; e <= 1023; e++ {
		v := math.Ldexp(1, e)
		for scale := -10; scale <= 20; scale++ {
			i := bucketIndex(v, scale)
			var lo, hi float64 // bucket bounds as base-2 exponents
			if scale >= 0 {
				lo, hi = float64(i)/math.Exp2(float64(scale)), float64(i+1)/math.Exp2(float64(scale))
			} else {
				lo, hi = float64(i)*math.Exp2(float64(-scale)), float64(i+1)*math.Exp2(float64(-scale))
			}
			if !(lo < float64(e) && float64(e) <= hi) {
				t.Fatalf("bucketIndex(2^%d, %d) = %d: bucket (2^%g, 2^%g]", e, scale, i, lo, hi)
			}
		}
	}
}

// exportDist encodes one distribution with the sink's encoder and decodes
// the request with pdata, returning the exported data point.
func exportDist(t *testing.T, d model.Distribution, maxScale, maxBuckets int) pmetric.ExponentialHistogramDataPoint {
	t.Helper()
	e := newEncoder(encOptions{sourceAttr: "service.name", maxScale: maxScale, maxBuckets: maxBuckets})
	body, n, _, err := e.metricsRequest(&model.Batch{Dists: []model.Distribution{d}})
	if err != nil || n != 1 {
		t.Fatalf("encode: %d points, %v", n, err)
	}
	req := pmetricotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		t.Fatal(err)
	}
	return req.Metrics().ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints().At(0)
}

// bucketAt returns the value bounds [lo, hi] (by magnitude: lo < |x| <= hi)
// and sign of the bucket that holds the sample of 0-based rank k in
// ascending order: negative buckets from the largest magnitude down, the
// zero bucket, then positive buckets upwards.
func bucketAt(dp pmetric.ExponentialHistogramDataPoint, k uint64) (lo, hi float64, sign int) {
	base := math.Exp2(math.Exp2(-float64(dp.Scale())))
	var cum uint64
	neg := dp.Negative().BucketCounts().AsRaw()
	for i := len(neg) - 1; i >= 0; i-- {
		if cum += neg[i]; cum > k {
			idx := float64(dp.Negative().Offset()) + float64(i)
			return math.Pow(base, idx), math.Pow(base, idx+1), -1
		}
	}
	if cum += dp.ZeroCount(); cum > k {
		return 0, 0, 0
	}
	for i, c := range dp.Positive().BucketCounts().AsRaw() {
		if cum += c; cum > k {
			idx := float64(dp.Positive().Offset()) + float64(i)
			return math.Pow(base, idx), math.Pow(base, idx+1), 1
		}
	}
	panic("rank beyond count")
}

func TestSinkExponentialHistogramAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	gen := func(n int, f func() float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = f()
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		samples    []float64
		maxBuckets int
		minScale   int32 // the README's table: what the span allows at least
		maxScale   int   // 0: DefaultMaxScale
	}{
		{"narrow uniform", gen(50000, func() float64 { return 100 + 100*r.Float64() }), 2048, 6, 0},
		{"lognormal latency", gen(100000, func() float64 { return math.Exp(3 + r.NormFloat64()) }), 2048, 6, 0},
		{"bimodal", gen(100000, func() float64 {
			if r.IntN(10) < 8 {
				return 5 + 0.5*math.Abs(r.NormFloat64())
			}
			return 500 + 50*math.Abs(r.NormFloat64())
		}), 2048, 6, 0},
		{"mixed sign with zeros", gen(100000, func() float64 {
			if r.IntN(10) == 0 {
				return 0
			}
			return 100 * r.NormFloat64()
		}), 2048, 6, 0},
		{"15 decades", gen(100000, func() float64 { return math.Pow(10, -6+15*r.Float64()) }), 2048, 5, 0},
		{"lognormal, 160 buckets", gen(100000, func() float64 { return math.Exp(3 + r.NormFloat64()) }), 160, 3, 0},
		{"constant", gen(1000, func() float64 { return 42 }), 2048, 6, 0},
		{"narrow uniform, max_scale 8", gen(50000, func() float64 { return 100 + 100*r.Float64() }), 2048, 8, 8},
		{"lognormal latency, max_scale 8", gen(100000, func() float64 { return math.Exp(3 + r.NormFloat64()) }), 2048, 7, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sk := rollup.NewSketch()
			for _, v := range tc.samples {
				sk.Add(v)
			}
			d := model.Distribution{Name: "x", Timestamp: 1e18, Window: model.WindowMinute, Count: sk.Count(),
				Sum: sk.Sum(), Min: sk.Min(), Max: sk.Max(), Centroids: sk.Centroids(nil)}
			maxScale := cmp.Or(tc.maxScale, DefaultMaxScale)
			dp := exportDist(t, d, maxScale, tc.maxBuckets)

			truth := slices.Clone(tc.samples)
			slices.Sort(truth)
			n := len(truth)
			var sum float64
			for _, v := range truth {
				sum += v
			}
			if dp.Count() != uint64(n) || dp.Min() != truth[0] || dp.Max() != truth[n-1] || dp.Sum() != d.Sum ||
				math.Abs(dp.Sum()-sum) > 1e-9*math.Abs(sum)+1e-9 {
				t.Errorf("count %d min %g max %g sum %g; want %d %g %g %g", dp.Count(), dp.Min(), dp.Max(), dp.Sum(), n, truth[0], truth[n-1], sum)
			}
			if dp.Scale() < tc.minScale || int(dp.Scale()) > maxScale {
				t.Errorf("scale %d, want %d..%d", dp.Scale(), tc.minScale, maxScale)
			}
			if dp.Scale() >= 6 {
				// every DDSketch bin has a bucket of its own
				nonEmpty := 0
				for _, c := range dp.Positive().BucketCounts().All() {
					nonEmpty += min(int(c), 1)
				}
				for _, c := range dp.Negative().BucketCounts().All() {
					nonEmpty += min(int(c), 1)
				}
				bins := 0
				for _, c := range d.Centroids {
					if c.Value != 0 {
						bins++
					}
				}
				if nonEmpty != bins {
					t.Errorf("scale %d: %d non-empty buckets for %d DDSketch bins", dp.Scale(), nonEmpty, bins)
				}
			}
			if l := max(dp.Positive().BucketCounts().Len(), dp.Negative().BucketCounts().Len()); l > tc.maxBuckets {
				t.Errorf("%d buckets, max %d", l, tc.maxBuckets)
			}
			bound := midpointBound(dp.Scale())
			worst := 0.0
			for _, q := range []float64{0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1} {
				k := int(math.Floor(q * float64(n-1)))
				x := truth[k]
				lo, hi, sign := bucketAt(dp, uint64(k))
				if sign == 0 {
					if x != 0 {
						t.Errorf("q%g: rank %d is in the zero bucket, true value %g", q, k, x)
					}
					continue
				}
				// the true value lies in the bucket widened by α
				ax := math.Abs(x)
				if float64(sign)*x <= 0 || !(ax > lo/(1+alpha) && ax < hi/(1-alpha)) {
					t.Errorf("q%g: true value %g outside bucket ±(%g, %g] widened by %g", q, x, lo, hi, alpha)
				}
				est := float64(sign) * math.Sqrt(lo*hi)
				est = math.Max(dp.Min(), math.Min(dp.Max(), est))
				rel := math.Abs(est-x) / ax
				worst = max(worst, rel)
				if rel > bound {
					t.Errorf("q%g: estimate %g, true %g: relative error %.4f%% > bound %.4f%% at scale %d", q, est, x, 100*rel, 100*bound, dp.Scale())
				}
			}
			t.Logf("scale %d, %d+%d buckets, worst relative error %.3f%% (bound %.3f%%)", dp.Scale(),
				dp.Negative().BucketCounts().Len(), dp.Positive().BucketCounts().Len(), 100*worst, 100*bound)
		})
	}
}

// TestSinkReadmeBounds pins the table of bounds per scale in README.md.
func TestSinkReadmeBounds(t *testing.T) {
	for scale, want := range map[int32]float64{8: 1.137, 7: 1.274, 6: 1.548, 5: 2.100, 4: 3.212, 3: 5.472} {
		if got := 100 * midpointBound(scale); math.Abs(got-want) > 0.001 {
			t.Errorf("scale %d: bound %.4f%%, README says %.3f%%", scale, got, want)
		}
	}
}

func TestSinkFractionalCounts(t *testing.T) {
	// counts that are not integers (sample-rate scaled) round so that the
	// total is the rounded total
	d := model.Distribution{Name: "x", Count: 3, Sum: 6, Min: 1, Max: 3,
		Centroids: []model.Centroid{{Value: 1, Count: 0.5}, {Value: 2, Count: 1.5}, {Value: 3, Count: 1}}}
	dp := exportDist(t, d, 8, 2048)
	if dp.Count() != 3 {
		t.Errorf("count %d, want 3", dp.Count())
	}
	checkBucketTotal(t, "x", dp)
}
