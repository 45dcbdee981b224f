package datadog

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/les-streams/les/internal/sink/sinktest"
	"google.golang.org/protobuf/encoding/protowire"
)

// fakeDatadog follows Datadog's documented intake APIs, not this package:
//
//   - POST /api/v2/series (docs.datadoghq.com/api/latest/metrics, "Submit
//     metrics"): JSON {"series":[{metric, type 0-3, points [{timestamp,
//     value}], resources [{name, type}], tags, interval, unit}]}; at most
//     512000 bytes compressed and 5242880 decompressed (413); 202
//     {"errors":[]}; a bad payload 400 {"errors":[…]}.
//   - POST /api/beta/sketches: a protobuf SketchPayload of agent-payload
//     (proto/metrics/agent_payload.proto), decoded here with protowire.
//   - POST /api/v2/logs (docs.datadoghq.com/api/latest/logs, "Send
//     logs"): a JSON array of at most 1000 objects, 5 MB uncompressed
//     (413); 202 {}.
//   - Every endpoint: DD-API-KEY must be the key (else 403
//     {"errors":["Forbidden"]}); Content-Encoding gzip or deflate.
type fakeDatadog struct {
	t      *testing.T
	srv    *httptest.Server
	key    string
	before func(w http.ResponseWriter, r *http.Request) bool

	mu       sync.Mutex
	requests []*http.Request
	series   []ddSeries
	sketches []ddSketch
	logs     []map[string]any
}

type ddSeries struct {
	Metric string `json:"metric"`
	Type   int    `json:"type"`
	Points []struct {
		Timestamp int64   `json:"timestamp"`
		Value     float64 `json:"value"`
	} `json:"points"`
	Resources []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"resources"`
	Tags     []string `json:"tags"`
	Interval int64    `json:"interval"`
	Unit     string   `json:"unit"`
}

type ddSketch struct {
	metric, host string
	tags         []string
	dogs         []dogsketch
}

type dogsketch struct {
	ts, cnt            int64
	min, max, avg, sum float64
	k                  []int32
	n                  []uint32
}

func newFakeDatadog(t *testing.T, key string) *fakeDatadog {
	f := &fakeDatadog{t: t, key: key}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func ddError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string][]string{"errors": {msg}})
	w.Write(b)
}

func (f *fakeDatadog) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r)
	f.mu.Unlock()
	if f.before != nil && f.before(w, r) {
		return
	}
	if r.Header.Get("DD-API-KEY") != f.key {
		ddError(w, http.StatusForbidden, "Forbidden")
		return
	}
	compressed, _ := io.ReadAll(r.Body)
	var body []byte
	switch r.Header.Get("Content-Encoding") {
	case "":
		body = compressed
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(compressed))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			ddError(w, 400, "gzip: "+err.Error())
			return
		}
	case "deflate":
		zr, err := zlib.NewReader(bytes.NewReader(compressed))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			ddError(w, 400, "deflate: "+err.Error())
			return
		}
	default:
		ddError(w, 415, "unsupported Content-Encoding")
		return
	}
	switch r.URL.Path {
	case "/api/v2/series":
		if len(compressed) > 512000 || len(body) > 5242880 {
			ddError(w, http.StatusRequestEntityTooLarge, "Payload too large")
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var p struct {
			Series []ddSeries `json:"series"`
		}
		if err := dec.Decode(&p); err != nil {
			ddError(w, 400, err.Error())
			return
		}
		if p.Series == nil {
			ddError(w, 400, "series is required")
			return
		}
		for _, s := range p.Series {
			if s.Metric == "" || len(s.Points) == 0 || s.Type < 0 || s.Type > 3 {
				ddError(w, 400, fmt.Sprintf("invalid series %+v", s))
				return
			}
		}
		f.mu.Lock()
		f.series = append(f.series, p.Series...)
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{"errors":[]}`))
	case "/api/beta/sketches":
		if r.Header.Get("Content-Type") != "application/x-protobuf" {
			ddError(w, 400, "Content-Type")
			return
		}
		sk, err := decodeSketchPayload(body)
		if err != nil {
			ddError(w, 400, err.Error())
			return
		}
		f.mu.Lock()
		f.sketches = append(f.sketches, sk...)
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	case "/api/v2/logs":
		if len(body) > 5_000_000 {
			ddError(w, http.StatusRequestEntityTooLarge, "Payload too large")
			return
		}
		var logs []map[string]any
		if err := json.Unmarshal(body, &logs); err != nil {
			ddError(w, 400, err.Error())
			return
		}
		if len(logs) > 1000 {
			ddError(w, http.StatusRequestEntityTooLarge, "too many logs")
			return
		}
		f.mu.Lock()
		f.logs = append(f.logs, logs...)
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{}`))
	default:
		ddError(w, 404, "Not found")
	}
}

// decodeSketchPayload reads SketchPayload{sketches = 1} with
// Sketch{metric 1, host 2, tags 4, dogsketches 7} and Dogsketch{ts 1,
// cnt 2, min 3, max 4, avg 5, sum 6, k 7 (packed sint32), n 8 (packed
// uint32)}.
func decodeSketchPayload(b []byte) ([]ddSketch, error) {
	var out []ddSketch
	err := sinktest.ProtoFields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == 2 { // metadata
			return nil
		}
		if num != 1 || typ != protowire.BytesType {
			return fmt.Errorf("SketchPayload: field %d", num)
		}
		var sk ddSketch
		err := sinktest.ProtoFields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
			switch num {
			case 1:
				sk.metric = string(v)
			case 2:
				sk.host = string(v)
			case 4:
				sk.tags = append(sk.tags, string(v))
			case 7:
				var d dogsketch
				err := sinktest.ProtoFields(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
					switch num {
					case 1:
						d.ts = int64(x)
					case 2:
						d.cnt = int64(x)
					case 3, 4, 5, 6:
						f := math.Float64frombits(x)
						*[]*float64{&d.min, &d.max, &d.avg, &d.sum}[num-3] = f
					case 7:
						for len(v) > 0 {
							z, n := protowire.ConsumeVarint(v)
							if n < 0 {
								return protowire.ParseError(n)
							}
							d.k = append(d.k, int32(protowire.DecodeZigZag(z)))
							v = v[n:]
						}
					case 8:
						for len(v) > 0 {
							z, n := protowire.ConsumeVarint(v)
							if n < 0 {
								return protowire.ParseError(n)
							}
							d.n = append(d.n, uint32(z))
							v = v[n:]
						}
					default:
						return fmt.Errorf("Dogsketch: field %d", num)
					}
					return nil
				})
				if len(d.k) != len(d.n) {
					return fmt.Errorf("Dogsketch: %d keys, %d counts", len(d.k), len(d.n))
				}
				sk.dogs = append(sk.dogs, d)
				return err
			default:
				return fmt.Errorf("Sketch: field %d", num)
			}
			return nil
		})
		out = append(out, sk)
		return err
	})
	return out, err
}

// agentQuantile is the agent's Sketch.Quantile (pkg/quantile/sparse.go)
// over k/n, with the agent's parameters re-derived here from its
// config.go: gamma 1+2/128, bias from the minimum value 1e-9.
func agentQuantile(d dogsketch, q float64) float64 {
	gamma := 1 + 2.0/128
	lnGamma := math.Log1p(2.0 / 128)
	bias := -int(math.Floor(math.Log(1e-9)/lnGamma)) + 1
	lower := func(k int32) float64 {
		switch {
		case k < 0:
			return -math.Pow(gamma, float64(int(-k)-bias))
		case k == 0:
			return 0
		}
		return math.Pow(gamma, float64(int(k)-bias))
	}
	rank := math.RoundToEven(q * float64(d.cnt-1))
	var n float64
	for i, k := range d.k {
		n += float64(d.n[i])
		if n <= rank {
			continue
		}
		weight := (n - rank) / float64(d.n[i])
		vLow := lower(k)
		vHigh := vLow * gamma
		if i == 0 {
			vLow = d.min
		}
		return vLow*weight + vHigh*(1-weight)
	}
	return math.NaN()
}

func (f *fakeDatadog) snapshot() ([]ddSeries, []ddSketch, []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ddSeries(nil), f.series...), append([]ddSketch(nil), f.sketches...), append([]map[string]any(nil), f.logs...)
}

func tagMap(tags []string) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, t := range tags {
		k, v, _ := strings.Cut(t, ":")
		m[k] = v
	}
	return m
}
