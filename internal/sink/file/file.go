// Package file is a sink that appends every item as one JSON line (NDJSON,
// see internal/format/jsonl) to a local file, de-duplicating re-delivered
// records by their record id so that a crash between writing a record and
// acknowledging it does not duplicate lines.
//
// It also guards what it acknowledged: it journals where each record came
// from (PosSuffix), checks the file before every append (its size, that it
// still exists, and its last bytes), repairs a damaged end — on open or
// while running — and asks the runner to re-read the stream from the first
// record the repair cut (Recover, Damaged; see repair.go).
package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

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
	// JournalRecords is how many of the most recent records' positions
	// are kept (in memory and in the journal, which holds up to twice as
	// many between compactions): a repair that cuts more records than
	// that re-delivers from the oldest one known and says so.
	JournalRecords = 4096
	// PathCheckInterval is how often Send checks that Path is still the
	// file it writes (replaced or renamed by rotation).
	PathCheckInterval = time.Second
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
	Repaired   uint64 // bytes of torn, damaged or incomplete records cut off the file's end
	Repairs    uint64 // repairs (on open or while running) that cut or found something
}

// ErrRewind is returned (retryable) by Send after a repair cut records
// the stream had already delivered, until the runner calls Recover and
// re-reads the stream from where it says: refusing the records in between
// keeps the file in stream order. Its Rewinding method tells the runner
// not to dead-letter the record.
var ErrRewind error = rewindError{}

type rewindError struct{}

func (rewindError) Error() string {
	return "file: output was damaged and repaired; the stream must be re-read from the first record cut"
}

// Rewinding marks the error for the runner (consumer.SinkRunner).
func (rewindError) Rewinding() bool { return true }

// Sink writes NDJSON to a file. It is safe for concurrent use; Sends are
// serialised.
type Sink struct {
	cfg       Config
	scanBytes int64
	keepRecs  int           // JournalRecords; smaller in tests
	pathEvery time.Duration // PathCheckInterval; 0 in tests

	log       *slog.Logger
	repairs   *metrics.Counter // les_sink_file_repairs_total{sink}
	repairedB *metrics.Counter // les_sink_file_repaired_bytes_total{sink}
	posPath   string           // Path + PosSuffix
	rewPath   string           // Path + RewindSuffix
	damaged   chan struct{}    // Damaged

	mu     sync.Mutex
	f      *os.File // nil until the first Send, and after a failed write
	fd     int      // f's descriptor (for the allocation-free check)
	stbuf  statBuf
	fi     os.FileInfo
	size   int64 // length of the file, ending with a complete record
	buf    []byte
	seen   dedup
	closed bool
	counts Counts

	// The file's last bytes as this sink left them (checked before each
	// append), and a buffer to read them back into.
	tail    [tailLen]byte
	tailN   int
	tailBuf [tailLen]byte
	checked time.Time // last PathCheckInterval check

	jf   *os.File  // the journal, open while f is
	jbuf []byte    // one journal line
	ring []written // records written, oldest first (at most 2·keepRecs)

	// pending is where the stream must be re-read from (partition →
	// position, inclusive) for records repairs cut; it is kept in
	// rewPath until the runner says they came again (Rewound).
	pending map[string]string
	// blocked: a repair cut records since the last Recover; Sends fail
	// with ErrRewind until the runner calls Recover (only once a runner
	// did call it: without one nobody would).
	blocked bool
	runner  bool // Recover was called at least once
}

// written is one record in the file: bytes [start, end) read from pos of
// partition.
type written struct {
	start, end     int64
	partition, pos string
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
	return &Sink{cfg: cfg, scanBytes: ScanBytes, keepRecs: JournalRecords, pathEvery: PathCheckInterval, seen: newDedup(cfg.DedupRecords),
		log: deps.Log.With("sink", deps.Name, "path", cfg.Path), posPath: cfg.Path + PosSuffix, rewPath: cfg.Path + RewindSuffix,
		repairs:   deps.Metrics.Counter("les_sink_file_repairs_total", "sink", deps.Name),
		repairedB: deps.Metrics.Counter("les_sink_file_repaired_bytes_total", "sink", deps.Name),
		damaged:   make(chan struct{}, 1),
	}, nil
}

// Send appends one line per item of b, tagged with m.RecordID, in a single
// write followed by fsync (Sync "batch"), then journals m.Partition and
// m.Pos. A record whose id was already written is skipped. It does not
// keep b. Before appending it checks the file (see check); after a repair
// that cut delivered records it fails with ErrRewind until Recover. Errors
// are retryable: a failed write is cut off again (or repaired on the next
// open) before returning.
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
	} else if err := s.check(); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if s.blocked {
		return ErrRewind
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
	start := s.size
	s.size += int64(len(buf))
	s.setTail(buf)
	if err := s.journal(start, m); err != nil {
		// Unjournaled, a later cut of this record could not be
		// re-delivered: take it back so that the stream retries it.
		s.size = start
		return s.fail(fmt.Errorf("file: journal: %w", err))
	}
	if key != "" {
		s.seen.add(key)
	}
	s.counts.Records++
	s.counts.Items += uint64(n)
	if cap(s.buf) > 16<<20 {
		s.buf = nil // do not pin one huge batch's buffer
	}
	return nil
}

// setTail keeps the file's last bytes after appending buf. s.mu held.
func (s *Sink) setTail(buf []byte) {
	if len(buf) >= tailLen {
		s.tailN = copy(s.tail[:], buf[len(buf)-tailLen:])
		return
	}
	keep := min(s.tailN, tailLen-len(buf))
	copy(s.tail[:], s.tail[s.tailN-keep:s.tailN])
	s.tailN = keep + copy(s.tail[keep:], buf)
}

// fail cuts a partly written record off the file. If that fails too the
// file is closed so that the next Send reopens and repairs it.
func (s *Sink) fail(err error) error {
	if terr := s.f.Truncate(s.size); terr != nil {
		s.closeFiles()
		return fmt.Errorf("%w (truncate: %v)", err, terr)
	}
	s.tailN = 0
	if s.size > 0 {
		s.tailN = s.readTail(s.tail[:], s.size)
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
	serr := s.f.Sync()
	cerr := s.f.Close()
	if s.jf != nil {
		_ = s.jf.Close()
	}
	s.f, s.jf = nil, nil
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("file: close: %w", err)
	}
	return nil
}

func (s *Sink) closeFiles() {
	if s.f != nil {
		_ = s.f.Close()
	}
	if s.jf != nil {
		_ = s.jf.Close()
	}
	s.f, s.jf = nil, nil
}

// open opens (creating) the file and its journal, repairs the file's end
// (repair.go) and rebuilds the set of record ids from the last scanBytes
// of the file.
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
	if err := s.openWith(f); err != nil {
		_ = f.Close()
		if s.jf != nil {
			_ = s.jf.Close()
			s.jf = nil
		}
		return fmt.Errorf("open %s: %w", s.cfg.Path, err)
	}
	return nil
}

func (s *Sink) openWith(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if s.pending == nil {
		s.pending = readRewind(s.rewPath)
	}
	if err := s.openJournal(); err != nil {
		return err
	}
	s.f, s.fd, s.fi, s.checked = f, fdOf(f), fi, time.Now()
	if fi.Size() == 0 && len(s.ring) > 0 {
		s.log.Info("file sink: the file is empty but its journal names records: taken as rotated (copytruncate); starting afresh")
		if err := s.resetJournal(); err != nil {
			s.f = nil
			return err
		}
	}
	if err := s.repair(fi.Size(), -1, "on open"); err != nil {
		s.f = nil
		return err
	}
	return nil
}

// PosSuffix names the journal next to Path: one line per record written,
// "<start> <end> <partition> <pos>", appended after the record is in the
// file and before Send returns, so every acknowledged record is in it (it
// is not fsynced: a power loss may lose its last lines; then a later cut
// of those records re-delivers from the last one known).
const PosSuffix = ".pos"

// RewindSuffix names the file next to Path that keeps, as JSON, where the
// stream must be re-read from for records a repair cut (partition →
// position, inclusive), until the runner reports them re-delivered.
const RewindSuffix = ".rewind"

// Damaged is signalled when a repair while running cut records the stream
// had delivered: the runner should stop consuming, call Recover and
// consume again from where it says.
func (s *Sink) Damaged() <-chan struct{} { return s.damaged }

// Recover opens and repairs the file now (instead of on the first Send)
// and returns where the stream must be re-read from so that records
// repairs cut — on open, while running, or before a restart — are written
// again: partition → position, inclusive (nil: nothing). It keeps
// returning a partition until Rewound names it. After Recover, Sends are
// accepted again.
func (s *Sink) Recover() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runner = true
	if s.f == nil && !s.closed {
		if err := s.open(); err != nil {
			return nil, fmt.Errorf("file: %w", err)
		}
	}
	s.blocked = false
	select { // damage found above is answered here
	case <-s.damaged:
	default:
	}
	if len(s.pending) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(s.pending))
	for p, pos := range s.pending {
		out[p] = pos
	}
	return out, nil
}

// Rewound tells the sink that the stream re-delivered the partitions'
// records from the positions Recover returned and that they are
// acknowledged: it forgets them.
func (s *Sink) Rewound(partitions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.pending)
	for _, p := range partitions {
		delete(s.pending, p)
	}
	if len(s.pending) != n {
		s.saveRewind()
	}
}
