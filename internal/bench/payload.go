// Package bench is the load generator behind `les bench`: it drives a
// running les over UDP or TCP with pre-generated Lambda-like Wavefront or
// StatsD lines, waits for the pipeline to drain, and reports what les
// accepted, published and delivered, read from les' own /metrics.
package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
)

// series is one generated time series: a name, a source and its tags.
type series struct {
	name   string
	source string
	tags   [][2]string
	kind   string // statsd type: c, g, ms, h, d
}

var (
	metricNames = []struct {
		name string
		kind string // statsd type
	}{
		{"aws.lambda.duration", "ms"},
		{"aws.lambda.billed_duration", "ms"},
		{"aws.lambda.init_duration", "ms"},
		{"aws.lambda.invocations", "c"},
		{"aws.lambda.errors", "c"},
		{"aws.lambda.throttles", "c"},
		{"aws.lambda.max_memory_used", "g"},
		{"aws.lambda.concurrent_executions", "g"},
		{"app.cart.items", "h"},
		{"app.cart.value", "d"},
		{"app.checkout.latency", "ms"},
		{"app.db.query_time", "ms"},
		{"app.cache.hits", "c"},
		{"app.cache.misses", "c"},
		{"app.http.requests", "c"},
		{"app.http.response_size", "h"},
	}
	regions  = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"}
	runtimes = []string{"nodejs20.x", "python3.12", "go1.x", "java21", "provided.al2023"}
	envs     = []string{"prod", "staging", "dev"}
	versions = []string{"1", "2", "3", "LATEST"}
	routes   = []string{"/cart", "/checkout", "/items", "/users", "/health", "/search"}
)

// makeSeries returns n distinct series. Series i uses function fn-(i/16)
// and metric name i%16, so n series span about n/16 functions; every
// series has 3 to 6 tags.
func makeSeries(n int, rng *rand.Rand) []series {
	out := make([]series, n)
	for i := range out {
		m := metricNames[i%len(metricNames)]
		fn := i / len(metricNames)
		s := series{name: m.name, kind: m.kind, source: "fn-" + strconv.Itoa(fn)}
		s.tags = append(s.tags,
			[2]string{"region", regions[fn%len(regions)]},
			[2]string{"runtime", runtimes[(fn/5)%len(runtimes)]},
			[2]string{"env", envs[(fn/25)%len(envs)]})
		extra := rng.IntN(4) // 0..3 more tags: 3 to 6 in all
		if extra > 0 {
			s.tags = append(s.tags, [2]string{"version", versions[fn%len(versions)]})
		}
		if extra > 1 {
			s.tags = append(s.tags, [2]string{"route", routes[i%len(routes)]})
		}
		if extra > 2 {
			s.tags = append(s.tags, [2]string{"cold_start", strconv.FormatBool(fn%7 == 0)})
		}
		out[i] = s
	}
	return out
}

// value returns a plausible value for s.
func value(s *series, rng *rand.Rand) float64 {
	switch s.kind {
	case "c":
		return float64(1 + rng.IntN(3))
	case "g":
		return float64(128 + rng.IntN(896))
	default:
		// Lognormal-ish latencies around 20 ms.
		return float64(int(rng.ExpFloat64()*2000)) / 100
	}
}

// appendLine appends one line for s (without the newline) in format f.
func appendLine(b []byte, f string, s *series, v float64) []byte {
	switch f {
	case "statsd":
		b = append(b, s.name...)
		b = append(b, ':')
		b = strconv.AppendFloat(b, v, 'f', -1, 64)
		b = append(b, '|')
		b = append(b, s.kind...)
		b = append(b, "|#source:"...)
		b = append(b, s.source...)
		for _, t := range s.tags {
			b = append(b, ',')
			b = append(b, t[0]...)
			b = append(b, ':')
			b = append(b, t[1]...)
		}
	default: // wavefront
		b = append(b, s.name...)
		b = append(b, ' ')
		b = strconv.AppendFloat(b, v, 'f', -1, 64)
		b = append(b, " source="...)
		b = append(b, s.source...)
		for _, t := range s.tags {
			b = append(b, ' ')
			b = append(b, t[0]...)
			b = append(b, '=')
			b = append(b, t[1]...)
		}
	}
	return b
}

// Datagrams returns count datagrams of at most linesPer lines and maxBytes
// bytes of the load `les bench --format f --series n` sends (its series,
// values and shuffled order that visits every series), drawn from seed:
// for the decoders' benchmarks, which then measure what les bench
// measures end to end. With n = count × linesPer every line is a series
// of its own.
func Datagrams(f string, n, count, linesPer, maxBytes int, seed uint64) ([][]byte, error) {
	rng := rand.New(rand.NewPCG(seed, seed))
	d, _, err := payloads(f, makeSeries(n, rng), count, linesPer, maxBytes, rng)
	return d, err
}

// payloads pre-generates count datagrams of at most linesPer lines and at
// most maxBytes bytes each, cycling through all series in a shuffled order
// so that every series is sent. It returns the datagrams and the number of
// lines in each.
func payloads(f string, ss []series, count, linesPer, maxBytes int, rng *rand.Rand) ([][]byte, []int, error) {
	if linesPer < 1 {
		return nil, nil, fmt.Errorf("bench: lines per datagram must be at least 1")
	}
	order := rng.Perm(len(ss))
	next := 0
	var line []byte
	dgrams := make([][]byte, 0, count)
	lines := make([]int, 0, count)
	for range count {
		d := make([]byte, 0, maxBytes)
		n := 0
		for n < linesPer {
			s := &ss[order[next%len(order)]]
			line = appendLine(line[:0], f, s, value(s, rng))
			if len(d)+len(line)+1 > maxBytes {
				if n == 0 {
					return nil, nil, fmt.Errorf("bench: a line of %d bytes does not fit a %d-byte datagram", len(line), maxBytes)
				}
				break
			}
			if n > 0 {
				d = append(d, '\n')
			}
			d = append(d, line...)
			n++
			next++
		}
		dgrams = append(dgrams, d)
		lines = append(lines, n)
	}
	return dgrams, lines, nil
}
