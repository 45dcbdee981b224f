// Package promrw is the prometheus_remote_write sink: it delivers metrics
// and distributions with the Prometheus remote write 1.0 protocol
// (protobuf WriteRequest, snappy block compression) to Prometheus,
// VictoriaMetrics, Mimir, Thanos receive or anything else that takes it.
//
// Counters (the rollup's per-window deltas) become cumulative series whose
// totals the sink keeps; gauges stay gauges; distributions become native
// histograms and/or summary-style _count, _sum and quantile series. The
// encoder (encode.go) writes the protobuf by hand; README.md documents
// the mapping, the name rules and how refused samples are handled.
package promrw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
)

// Defaults.
const (
	DefaultMaxSamplesPerRequest = 5000
	DefaultMaxRequestBytes      = 4 << 20
	DefaultMaxLabelValueLength  = 4096
	DefaultMaxCounterSeries     = 1_000_000
	DefaultSchema               = 8
	// dedupRecords is how many delivered record ids are remembered, so a
	// record delivered again (an acknowledgement lost) does not add its
	// counter deltas twice.
	dedupRecords = 16384
	// splitBudget bounds the extra requests one Send makes to isolate
	// samples the receiver refuses (see README.md, "Refused samples").
	splitBudget = 256
)

// Config is what users write under `prometheus_remote_write:`.
type Config struct {
	// URL is the receiver's write endpoint (required), e.g.
	// http://prometheus:9090/api/v1/write.
	URL string `yaml:"url"`
	// SourceLabel is the label the item's source goes into (default
	// "source"; e.g. "instance" or "host").
	SourceLabel string `yaml:"source_label"`
	// Labels are added to every series that has no label of that name
	// (like Prometheus' external_labels).
	Labels map[string]string `yaml:"labels"`
	// Distributions lists how a distribution is written: "summary"
	// (_count, _sum and one series per quantile label), "min_max" (_min
	// and _max gauges), "native" (a native gauge histogram). Default
	// [summary, min_max].
	Distributions []string `yaml:"distributions"`
	// HistogramSchema is the native histogram schema, -4…8 (default 8:
	// buckets 0.27% wide).
	HistogramSchema *int `yaml:"histogram_schema"`
	// MaxSamplesPerRequest bounds the samples (and histograms) of one
	// request (default 5000); MaxRequestBytes its uncompressed size
	// (default 4 MiB). A larger batch is sent in several requests.
	MaxSamplesPerRequest int `yaml:"max_samples_per_request"`
	MaxRequestBytes      int `yaml:"max_request_bytes"`
	// MaxLabelValueLength: an item with a longer label value (or name) is
	// dropped, counted with reason label_value_too_long (default 4096).
	MaxLabelValueLength int `yaml:"max_label_value_length"`
	// MaxCounterSeries bounds the counter series whose totals are kept
	// (default 1,000,000; about 250 bytes each).
	MaxCounterSeries int `yaml:"max_counter_series"`

	// Credentials and extra headers (e.g. X-Scope-OrgID for Mimir):
	// basic_auth, bearer_token_env / bearer_token_file, headers.
	sink.HTTPAuth `yaml:",inline"`
	TLS           sink.TLSConfig `yaml:"tls"`
}

// reservedHeaders are set by the sink.
var reservedHeaders = []string{"Content-Encoding", "Content-Type", "Content-Length", "X-Prometheus-Remote-Write-Version", "User-Agent"}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if _, err := sink.CheckURL("url", c.URL, "they would show in errors; use basic_auth"); err != nil {
		return err
	}
	if c.SourceLabel == "" {
		c.SourceLabel = "source"
	}
	if !validName(c.SourceLabel, false) || strings.HasPrefix(c.SourceLabel, "__") || c.SourceLabel == "quantile" {
		return fmt.Errorf("source_label: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __…, not quantile)", c.SourceLabel)
	}
	for k, v := range c.Labels {
		if !validName(k, false) || strings.HasPrefix(k, "__") || k == "quantile" {
			return fmt.Errorf("labels: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __…, not quantile)", k)
		}
		if v == "" {
			return fmt.Errorf("labels: %s: empty value", k)
		}
	}
	if len(c.Distributions) == 0 {
		c.Distributions = []string{"summary", "min_max"}
	}
	for i, d := range c.Distributions {
		switch d {
		case "summary", "min_max", "native":
		default:
			return fmt.Errorf("distributions: %q is not one of summary, min_max, native", d)
		}
		if slices.Contains(c.Distributions[:i], d) {
			return fmt.Errorf("distributions: %q given twice", d)
		}
	}
	if c.HistogramSchema == nil {
		s := DefaultSchema
		c.HistogramSchema = &s
	}
	if s := *c.HistogramSchema; s < -4 || s > 8 {
		return fmt.Errorf("histogram_schema: %d is not in -4…8", s)
	}
	if err := sink.CheckSizes(
		sink.Size{Key: "max_samples_per_request", V: &c.MaxSamplesPerRequest, Def: DefaultMaxSamplesPerRequest},
		sink.Size{Key: "max_request_bytes", V: &c.MaxRequestBytes, Def: DefaultMaxRequestBytes},
		sink.Size{Key: "max_label_value_length", V: &c.MaxLabelValueLength, Def: DefaultMaxLabelValueLength},
		sink.Size{Key: "max_counter_series", V: &c.MaxCounterSeries, Def: DefaultMaxCounterSeries},
	); err != nil {
		return err
	}
	if err := c.HTTPAuth.Validate(reservedHeaders, ""); err != nil {
		return err
	}
	return c.TLS.Validate()
}

// Counts are totals since New.
type Counts struct {
	Requests   uint64 // requests the receiver accepted
	Samples    uint64 // samples and histograms in them
	Skipped    uint64 // requests not re-sent on a retry: accepted by an earlier attempt
	Splits     uint64 // requests sent to isolate refused samples
	Refused    uint64 // samples and histograms the receiver refused (out of order, duplicate, too old, too large)
	Duplicates uint64 // records skipped: delivered before (same record id)
	Ignored    uint64 // logs and spans handed to the sink (it takes neither)
}

// Sink writes to one remote write endpoint. It is safe for concurrent
// use; Sends are serialised.
type Sink struct {
	cfg     Config
	name    string
	log     *slog.Logger
	client  sink.Client
	header  http.Header
	dropped *selfmetric.ReasonCounters

	mu       sync.Mutex
	closed   bool
	enc      *encoder
	counters *counters
	body     []byte
	offs     []int
	// accepted are the requests accepted since the last Send that
	// completed: a retried batch encodes to the same bytes and skips them.
	accepted sink.Accepted
	// refused marks the items of the current Send with a refused sample.
	refused []bool
	drops   map[string]int
	recent  recentIDs
	counts  Counts
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It reads the credentials (and TLS
// files) but connects to nothing.
func New(cfg Config, d sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, name: d.Name, log: d.Log, header: http.Header{},
		drops: map[string]int{}, recent: newRecentIDs(dedupRecords)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil && d.Drops == nil {
		d.Metrics = selfmetric.New()
	}
	s.dropped = d.Dropped()
	var err error
	if s.client, err = sink.NewClient(d, cfg.TLS); err != nil {
		return nil, err
	}
	s.header.Set("Content-Encoding", "snappy")
	s.header.Set("Content-Type", "application/x-protobuf")
	s.header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	s.header.Set("User-Agent", "les")
	if _, err := cfg.HTTPAuth.Apply(s.header); err != nil {
		return nil, err
	}
	extra := make([]label, 0, len(cfg.Labels))
	for k, v := range cfg.Labels {
		extra = append(extra, label{k, v})
	}
	slices.SortFunc(extra, func(a, b label) int { return strings.Compare(a.name, b.name) })
	s.counters = newCounters(cfg.MaxCounterSeries)
	s.enc = newEncoder(encOptions{
		sourceLabel: cfg.SourceLabel, extra: extra,
		summary: slices.Contains(cfg.Distributions, "summary"), minMax: slices.Contains(cfg.Distributions, "min_max"),
		native: slices.Contains(cfg.Distributions, "native"), schema: int32(*cfg.HistogramSchema),
		maxSamples: cfg.MaxSamplesPerRequest, maxBytes: cfg.MaxRequestBytes, maxValueLen: cfg.MaxLabelValueLength,
	}, s.counters)
	return s, nil
}

// Send encodes the metrics and distributions of b into WriteRequests of at
// most max_samples_per_request samples and posts them one after another.
// It returns nil when every request was accepted, or when the receiver
// refused some samples for good (out of order, duplicate, too old: those
// are isolated, dropped and counted; see README.md). A request answered
// 429, 5xx or not at all fails the Send with a retryable error; the retry
// re-encodes b to the same bytes and skips the requests already accepted.
// Other 4xx answers are permanent errors. Logs and spans are ignored. It
// does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("prometheus_remote_write %s: sink is closed", s.name)
	}
	if m.RecordID != "" && s.recent.has(m.RecordID) {
		s.counts.Duplicates++
		return nil
	}
	s.counts.Ignored += uint64(len(b.Logs) + len(b.Spans))
	s.counters.begin()
	s.enc.encode(b)
	clear(s.drops)
	s.refused = slices.Grow(s.refused[:0], len(b.Metrics)+len(b.Dists))[:len(b.Metrics)+len(b.Dists)]
	clear(s.refused)
	err := s.sendAll(ctx)
	if err != nil && !errors.Is(err, sink.ErrPermanent) {
		s.counters.discard() // the retry adds the deltas again
		return fmt.Errorf("prometheus_remote_write %s: %w", s.name, err)
	}
	// Done, for good or ill: the totals move on (a permanent failure is a
	// gap in the series, not a lower total).
	s.counters.commit()
	s.accepted.Reset()
	for r, n := range s.enc.drops {
		s.dropped.Add(r, n)
	}
	for r, n := range s.drops {
		s.dropped.Add(r, n)
	}
	if m.RecordID != "" && err == nil {
		s.recent.add(m.RecordID)
	}
	if err != nil {
		return fmt.Errorf("prometheus_remote_write %s: %w", s.name, err)
	}
	return nil
}

func (s *Sink) sendAll(ctx context.Context) error {
	for _, r := range s.enc.requests() {
		budget := splitBudget
		if err := s.deliver(ctx, r.raw, r.items, &budget); err != nil {
			return err
		}
	}
	return nil
}

// deliver posts raw (a WriteRequest whose TimeSeries came from items).
// When the receiver refuses samples in it for good, sink.Isolate splits
// it in halves between TimeSeries and delivers each again, until the
// refused TimeSeries stand alone (or the split budget is spent) and are
// dropped with the reason.
func (s *Sink) deliver(ctx context.Context, raw []byte, items []int32, budget *int) error {
	offs := s.offs[:0] // entry offsets of raw, once a split needs them
	defer func() { s.offs = offs[:0] }()
	send := func(lo, hi int, split bool) error {
		part := raw
		if split {
			if len(offs) == 0 {
				offs = entryOffsets(offs, raw)
				if len(offs)-1 != len(items) {
					return sink.Permanent(fmt.Errorf("internal error: %d series in a request of %d", len(offs)-1, len(items)))
				}
			}
			part = raw[offs[lo]:offs[hi]]
		}
		h := s.accepted.Hash(part)
		if s.accepted.Has(h) {
			s.counts.Skipped++
			return nil
		}
		if split {
			s.counts.Splits++
		}
		// s2.EncodeSnappy writes the snappy block format (as snappy.Encode
		// does, compressing as well) at about twice the speed.
		s.body = s2.EncodeSnappy(s.body[:cap(s.body)], part)
		if err := s.post(ctx, s.body); err != nil {
			return err
		}
		s.accepted.Add(h)
		s.counts.Requests++
		s.counts.Samples += uint64(hi - lo)
		return nil
	}
	return sink.Isolate(len(items), budget, send, refusal, func(lo, hi int, reason string) { s.refuse(items[lo:hi], reason) })
}

// refuse counts the TimeSeries of items as refused and their items as
// dropped with reason (an item once, however many of its series).
func (s *Sink) refuse(items []int32, reason string) {
	s.counts.Refused += uint64(len(items))
	for _, it := range items {
		if !s.refused[it] {
			s.refused[it] = true
			s.drops[reason]++
		}
	}
}

// entryOffsets appends the offset of each top-level field of the
// WriteRequest raw (its TimeSeries) and then len(raw).
func entryOffsets(dst []int, raw []byte) []int {
	for i := 0; i < len(raw); {
		dst = append(dst, i)
		n, k := uvarint(raw[i+1:])
		i += 1 + k + int(n)
	}
	return append(dst, len(raw))
}

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i, c := range b {
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return v, len(b)
}

// refusal classifies an answer that refuses samples for good — Prometheus
// answers 400 for out-of-order, duplicate and out-of-bounds samples
// (Mimir and Cortex too, "too old" among them), 413 for a request too
// large — and returns the drop reason, or "" for any other answer.
func refusal(err error) string { return sink.Refused(err, refusals) }

var refusals = []sink.Refusal{
	{Text: "out of order", Reason: "out_of_order"}, {Text: "out-of-order", Reason: "out_of_order"},
	{Text: "duplicate sample", Reason: "duplicate_sample"},
	{Text: "out of bounds", Reason: "out_of_bounds"},
	{Text: "too old", Reason: "too_old"},
}

func (s *Sink) post(ctx context.Context, body []byte) error {
	resp, err := s.client.Do(ctx, s.cfg.URL, s.header, body)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	err = sink.CheckResponse(resp)
	if se, ok := errors.AsType[*sink.StatusError](err); ok && se.Code >= 500 && strings.Contains(se.Reason, "native histograms are disabled") {
		// Prometheus without --enable-feature=native-histograms answers
		// 500 for them; retrying cannot help.
		return sink.Permanent(fmt.Errorf("%w (remove native from distributions, or enable native histograms in the receiver)", err))
	}
	return err
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// CounterSeries returns how many counter series' totals the sink holds.
func (s *Sink) CounterSeries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters.len()
}

// Close releases idle connections. Later Sends fail; a second Close
// returns nil. The counter totals are forgotten: a new sink starts every
// counter from its next delta (a counter reset for Prometheus).
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.client.CloseIdle()
	return nil
}

// recentIDs is a bounded set of record ids, oldest forgotten first.
type recentIDs struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newRecentIDs(n int) recentIDs {
	return recentIDs{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (r *recentIDs) has(id string) bool { _, ok := r.set[id]; return ok }

func (r *recentIDs) add(id string) {
	id = strings.Clone(id)
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}
