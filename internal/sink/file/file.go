// Package file is a sink that appends every item as one JSON line (NDJSON,
// see internal/format/jsonl) to a local file, de-duplicating re-delivered
// records by their record id so that a crash between writing a record and
// acknowledging it does not duplicate lines.
package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
)

// Defaults.
const (
	DefaultDedupRecords = 100_000
	// ScanBytes is how much of the file's end is read on open to rebuild the
	// set of written record ids.
	ScanBytes = 64 << 20
)

// Config is what users write under `file:`.
type Config struct {
	// Path of the output file (required). Missing parent directories are
	// created on first Send.
	Path string `yaml:"path"`
	// Sync is "batch" (default: fsync after every record, so a record is on
	// disk before Send returns) or "none" (leave flushing to the OS; a
	// power loss can lose acknowledged records).
	Sync string `yaml:"sync"`
	// DedupRecords is how many of the most recent record ids are remembered
	// to skip re-deliveries (default 100000).
	DedupRecords int `yaml:"dedup_records"`
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.Path == "" {
		return errors.New("file.path: required")
	}
	switch c.Sync {
	case "":
		c.Sync = "batch"
	case "batch", "none":
	default:
		return fmt.Errorf("file.sync: %q is not one of batch, none", c.Sync)
	}
	if c.DedupRecords < 0 {
		return errors.New("file.dedup_records: must not be negative")
	}
	if c.DedupRecords == 0 {
		c.DedupRecords = DefaultDedupRecords
	}
	return nil
}

// Counts are totals since New.
type Counts struct {
	Records    uint64 // records written
	Items      uint64 // lines written
	Duplicates uint64 // records skipped because their id was already written
	Repaired   uint64 // bytes of torn or incomplete records cut off the file's end on open
}

// Sink writes NDJSON to a file. It is safe for concurrent use; Sends are
// serialised.
type Sink struct {
	cfg       Config
	scanBytes int64

	log       *slog.Logger
	repairs   *metrics.Counter // les_sink_file_repairs_total{sink}
	repairedB *metrics.Counter // les_sink_file_repaired_bytes_total{sink}
	lastPath  string           // Path + LastSuffix
	rewind    Rewind           // set by a repair that cut a record, until Recover returns it

	mu     sync.Mutex
	f      *os.File // nil until the first Send, and after a failed write
	size   int64    // length of the file, ending with a complete record
	buf    []byte
	seen   dedup
	closed bool
	counts Counts
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It does no I/O: the file is opened,
// repaired and scanned on the first Send.
func New(cfg Config) (*Sink, error) { return NewDeps(cfg, sink.Deps{}) }

// NewDeps is New with the logger and registry the repair reports to.
func NewDeps(cfg Config, deps sink.Deps) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = selfmetric.New()
	}
	return &Sink{cfg: cfg, scanBytes: ScanBytes, seen: newDedup(cfg.DedupRecords),
		log: deps.Log.With("sink", deps.Name, "path", cfg.Path), lastPath: cfg.Path + LastSuffix,
		repairs:   deps.Metrics.Counter("les_sink_file_repairs_total", "sink", deps.Name),
		repairedB: deps.Metrics.Counter("les_sink_file_repaired_bytes_total", "sink", deps.Name),
	}, nil
}

// Send appends one line per item of b, tagged with m.RecordID, in a single
// write followed by fsync (Sync "batch"). A record whose id was already
// written is skipped. It does not keep b. Errors are retryable: a failed
// write is cut off again (or repaired on the next open) before returning.
func (s *Sink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("file: sink is closed")
	}
	n := b.Len()
	if n == 0 {
		return nil
	}
	if s.f == nil {
		if err := s.open(); err != nil {
			return fmt.Errorf("file: %w", err)
		}
	}
	var key string
	if m.RecordID != "" {
		// The key is the id as it appears (escaped) in the file.
		s.buf = jsonl.AppendString(s.buf[:0], m.RecordID)
		if s.seen.hasBytes(s.buf[1 : len(s.buf)-1]) {
			s.counts.Duplicates++
			return nil
		}
		key = string(s.buf[1 : len(s.buf)-1])
	}
	buf := s.buf[:0]
	o := jsonl.Options{RecordID: m.RecordID, Items: n}
	for i := range b.Metrics {
		buf = jsonl.AppendMetric(buf, &b.Metrics[i], o)
		o.Item++
	}
	for i := range b.Dists {
		buf = jsonl.AppendDistribution(buf, &b.Dists[i], o)
		o.Item++
	}
	for i := range b.Logs {
		buf = jsonl.AppendLog(buf, &b.Logs[i], o)
		o.Item++
	}
	for i := range b.Spans {
		buf = jsonl.AppendSpan(buf, &b.Spans[i], o)
		o.Item++
	}
	s.buf = buf
	if _, err := s.f.Write(buf); err != nil {
		return s.fail(fmt.Errorf("file: write: %w", err))
	}
	if s.cfg.Sync == "batch" {
		if err := s.f.Sync(); err != nil {
			return s.fail(fmt.Errorf("file: sync: %w", err))
		}
	}
	s.size += int64(len(buf))
	if key != "" {
		s.seen.add(key)
	}
	s.noteLast(m)
	s.counts.Records++
	s.counts.Items += uint64(n)
	if cap(s.buf) > 16<<20 {
		s.buf = nil // do not pin one huge batch's buffer
	}
	return nil
}

// fail cuts a partly written record off the file. If that fails too the
// file is closed so that the next Send reopens and repairs it.
func (s *Sink) fail(err error) error {
	if terr := s.f.Truncate(s.size); terr != nil {
		_ = s.f.Close()
		s.f = nil
		return fmt.Errorf("%w (truncate: %v)", err, terr)
	}
	return err
}

// Counts returns totals since New.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Close syncs and closes the file. Later Sends fail; a second Close returns nil.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("file: close: %w", err)
	}
	return nil
}

// open opens (creating) the file, cuts off a torn trailing line and an
// incomplete last record, and rebuilds the set of record ids from the last
// scanBytes of the file.
func (s *Sink) open() error {
	if dir := filepath.Dir(s.cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	keep, err := s.scan(f)
	if err == nil {
		err = s.truncate(f, keep)
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("open %s: %w", s.cfg.Path, err)
	}
	s.f, s.size = f, keep
	return nil
}

func (s *Sink) truncate(f *os.File, keep int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == keep {
		return nil
	}
	cut := make([]byte, min(st.Size()-keep, 1<<20))
	n, _ := f.ReadAt(cut, keep)
	cut = cut[:n]
	if err := f.Truncate(keep); err != nil {
		return err
	}
	s.counts.Repaired += uint64(st.Size() - keep)
	s.reportRepair(keep, st.Size()-keep, cut)
	return f.Sync()
}

// scan reads the file's tail, adds the ids of complete records to s.seen
// (replacing its contents) and returns the length the file should have:
// without a torn last line and without an incomplete last record.
func (s *Sink) scan(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	start := max(0, size-s.scanBytes)
	tail := make([]byte, size-start)
	if _, err := f.ReadAt(tail, start); err != nil && err != io.EOF {
		return 0, err
	}
	s.seen.reset()
	end := bytes.LastIndexByte(tail, '\n') + 1 // complete lines end here
	pos := 0
	if start > 0 {
		pos = bytes.IndexByte(tail, '\n') + 1 // skip a line cut by the window
		if pos == 0 {
			return 0, fmt.Errorf("last line is longer than %d bytes", s.scanBytes)
		}
	}
	var (
		runKey         []byte // record of the current run of lines
		runStart       = pos
		runItem, items = -1, 0
	)
	for pos < end {
		nl := pos + bytes.IndexByte(tail[pos:end], '\n')
		key, item, n, ok := parseHead(tail[pos:nl])
		if !ok || !bytes.Equal(key, runKey) {
			if runKey != nil {
				s.seen.add(string(runKey))
			}
			runKey, runStart, runItem, items = nil, pos, -1, 0
			if ok {
				runKey = key
			}
		}
		if ok {
			runItem, items = item, n
		}
		pos = nl + 1
	}
	if runKey != nil {
		if runItem+1 != items {
			return start + int64(runStart), nil // incomplete last record
		}
		s.seen.add(string(runKey))
	}
	return start + int64(end), nil
}

// parseHead parses the start of a line written by this sink,
// `{"type":"…","record":"<key>","item":<i>,"items":<n>,`, returning the
// record id as escaped in the file.
func parseHead(line []byte) (key []byte, item, items int, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"type":"`))
	if !ok {
		return nil, 0, 0, false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return nil, 0, 0, false
	}
	if rest, ok = bytes.CutPrefix(rest[i+1:], []byte(`,"record":"`)); !ok {
		return nil, 0, 0, false
	}
	// find the closing quote, skipping escapes
	j := 0
	for ; j < len(rest) && rest[j] != '"'; j++ {
		if rest[j] == '\\' {
			j++
		}
	}
	if j >= len(rest) || j == 0 {
		return nil, 0, 0, false
	}
	key = rest[:j]
	if rest, ok = bytes.CutPrefix(rest[j+1:], []byte(`,"item":`)); !ok {
		return nil, 0, 0, false
	}
	item, rest, ok = parseInt(rest)
	if !ok {
		return nil, 0, 0, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"items":`)); !ok {
		return nil, 0, 0, false
	}
	items, _, ok = parseInt(rest)
	return key, item, items, ok
}

func parseInt(b []byte) (int, []byte, bool) {
	n, i := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 10; i++ {
		n = n*10 + int(b[i]-'0')
	}
	return n, b[i:], i > 0
}

// dedup remembers the last cap record ids in insertion order.
type dedup struct {
	ring []string
	next int
	set  map[string]struct{}
}

func newDedup(n int) dedup {
	return dedup{ring: make([]string, 0, n), set: make(map[string]struct{}, min(n, 1024))}
}

func (d *dedup) reset() {
	d.ring, d.next = d.ring[:0], 0
	clear(d.set)
}

// hasBytes does not allocate (the compiler optimises map[string(b)]).
func (d *dedup) hasBytes(k []byte) bool {
	_, ok := d.set[string(k)]
	return ok
}

func (d *dedup) add(k string) {
	if _, ok := d.set[k]; ok {
		return
	}
	if len(d.ring) < cap(d.ring) {
		d.ring = append(d.ring, k)
	} else {
		delete(d.set, d.ring[d.next])
		d.ring[d.next] = k
		d.next = (d.next + 1) % len(d.ring)
	}
	d.set[k] = struct{}{}
}

// LastSuffix names the file, next to Path, that holds where the last
// record written was read from (a Rewind as JSON). It is
// written after the record is on disk, so it never names a record the
// file does not hold; when a repair cuts the file's last record, the
// runner re-reads the stream from there (Recover).
const LastSuffix = ".last"

// Rewind is where the runner must re-read the stream from so that the
// records a repair cut are delivered again: Pos in Partition, inclusive.
type Rewind struct {
	Partition string `json:"partition"`
	Pos       string `json:"pos"`
	RecordID  string `json:"record"`
}

// noteLast keeps where the record just written came from. A failure only
// loses precision: the rewind then starts earlier (at least once; the
// file de-duplicates by id). s.mu held.
func (s *Sink) noteLast(m sink.Meta) {
	if m.Pos == "" || s.lastPath == "" {
		return
	}
	b, err := json.Marshal(Rewind{Partition: m.Partition, Pos: m.Pos, RecordID: m.RecordID})
	if err == nil {
		_ = os.WriteFile(s.lastPath, append(b, '\n'), 0o644)
	}
}

// reportRepair logs and counts a cut of n bytes at off; cut holds
// (the start of) what was cut. When the cut began with a record of this
// sink, a rewind to the last record written is set for Recover. s.mu held.
func (s *Sink) reportRepair(off, n int64, cut []byte) {
	s.repairs.Inc()
	s.repairedB.Add(int(n))
	lines := bytes.Count(cut, []byte{'\n'})
	if len(cut) > 0 && cut[len(cut)-1] != '\n' {
		lines++ // a torn last line
	}
	id := ""
	if key, _, _, ok := parseHead(cut); ok {
		id = string(key)
	}
	attrs := []any{"offset", off, "bytes_cut", n, "lines_cut", lines, "record", id}
	if id == "" {
		s.log.Warn("file sink repaired its end on open: cut a torn line that belongs to no record", attrs...)
		return
	}
	rw, ok := s.readLast()
	if !ok {
		s.log.Warn("file sink repaired its end on open: cut an incomplete record; it is written again when the stream re-delivers it (no position known to rewind to)", attrs...)
		return
	}
	s.rewind = rw
	s.log.Warn("file sink repaired its end on open: cut an incomplete record; the stream is re-read from the last record written so that it is written again",
		append(attrs, "rewind_partition", rw.Partition, "rewind_pos", rw.Pos)...)
}

func (s *Sink) readLast() (Rewind, bool) {
	b, err := os.ReadFile(s.lastPath)
	if err != nil {
		return Rewind{}, false
	}
	var rw Rewind
	if json.Unmarshal(b, &rw) != nil || rw.Pos == "" {
		return Rewind{}, false
	}
	return rw, true
}

// Recover opens and repairs the file now (instead of on the first Send)
// and returns where the runner must re-read the stream from so that a
// record the repair cut is written again; ok is false when nothing was
// cut or no position is known. The runner calls it before consuming.
func (s *Sink) Recover() (partition, pos string, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil && !s.closed {
		if err := s.open(); err != nil {
			return "", "", false, fmt.Errorf("file: %w", err)
		}
	}
	rw := s.rewind
	s.rewind = Rewind{}
	return rw.Partition, rw.Pos, rw.Pos != "", nil
}
