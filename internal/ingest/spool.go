package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// SpoolConfig bounds the local spool: records the stream did not take in
// time wait there (one file each) and are re-published in order.
type SpoolConfig struct {
	// Dir holds spooled records (default <data_dir>/spool).
	Dir string `yaml:"dir"`
	// MaxBytes bounds the spool; records beyond it are dropped and counted
	// in les_stream_dropped_records_total (default 1 GiB).
	MaxBytes int64 `yaml:"max_bytes"`
	// Retry is how often the spool is re-published (default 2s).
	Retry time.Duration `yaml:"retry"`
}

// Validate checks values (defaults are filled by OpenSpool).
func (c *SpoolConfig) Validate() error {
	if c.MaxBytes < 0 || c.Retry < 0 {
		return errors.New("spool: max_bytes and retry must not be negative")
	}
	return nil
}

// Spool keeps records on disk until the stream accepts them.
type Spool struct {
	cfg      SpoolConfig
	st       stream.Stream
	log      *slog.Logger
	mu       sync.Mutex
	size     atomic.Int64
	seq      atomic.Uint64
	spooled  *metrics.Counter
	replayed *metrics.Counter
	dropped  *metrics.Counter
	damaged  *metrics.Counter
}

// OpenSpool creates the spool directory and measures what is already in it.
func OpenSpool(cfg SpoolConfig, st stream.Stream, reg *selfmetric.Registry, log *slog.Logger) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("spool: dir is required")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{cfg: cfg, st: st, log: log,
		spooled:  reg.Counter("les_stream_spooled_records_total"),
		replayed: reg.Counter("les_stream_spool_replayed_records_total"),
		dropped:  reg.Counter("les_stream_dropped_records_total"),
		damaged:  reg.Counter("les_stream_spool_damaged_files_total"),
	}
	// A crash while writing leaves *.rec.tmp files: never renamed, so
	// never acknowledged as spooled; remove them.
	if tmps, err := filepath.Glob(filepath.Join(cfg.Dir, "*.rec.tmp")); err == nil {
		for _, f := range tmps {
			_ = os.Remove(f)
		}
	}
	files, _ := s.files()
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			s.size.Add(fi.Size())
		}
	}
	s.seq.Store(uint64(time.Now().UnixNano()))
	reg.Gauge("les_stream_spool_bytes", func() float64 { return float64(s.size.Load()) })
	return s, nil
}

// Empty reports whether no record is spooled (nothing for Replay to do).
func (s *Spool) Empty() bool { return s.size.Load() == 0 }

// Write stores rec durably (fsync) or drops it when the spool is full.
func (s *Spool) Write(rec stream.Record) error {
	buf := marshalSpooled(rec)
	need := int64(len(buf))
	// Reserve the space first: publishers spool concurrently.
	if !s.reserve(need) {
		s.dropped.Inc()
		return fmt.Errorf("spool: full (%d bytes); record %s dropped", s.cfg.MaxBytes, rec.ID)
	}
	name := filepath.Join(s.cfg.Dir, fmt.Sprintf("%020d.rec", s.seq.Add(1)))
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		s.size.Add(-need)
		s.dropped.Inc()
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		s.size.Add(-need)
		s.dropped.Inc()
		return fmt.Errorf("spool: %w", err)
	}
	s.spooled.Inc()
	return nil
}

// A spool file (<seq>.rec) is, little endian: "LESS", version 0x02,
// origin (u8 length + bytes), signal u8, partition u32, id (u8 length +
// bytes), data (u32 length + bytes), and a CRC-32C of everything before
// it. Files of the first version ("<subject>\n<id>\n<data>") are still
// read.
const spoolMagic = "LESS\x02"

var spoolCRC = crc32.MakeTable(crc32.Castagnoli)

func marshalSpooled(rec stream.Record) []byte {
	b := make([]byte, 0, len(spoolMagic)+1+len(rec.Origin)+1+4+1+len(rec.ID)+4+len(rec.Data)+4)
	b = append(b, spoolMagic...)
	b = append(b, byte(len(rec.Origin)))
	b = append(b, rec.Origin...)
	b = append(b, byte(rec.Signal))
	b = binary.LittleEndian.AppendUint32(b, uint32(rec.Partition))
	b = append(b, byte(len(rec.ID)))
	b = append(b, rec.ID...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rec.Data)))
	b = append(b, rec.Data...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, spoolCRC))
}

var errBadSpoolFile = errors.New("damaged spool file")

func unmarshalSpooled(b []byte) (stream.Record, error) {
	var r stream.Record
	if !bytes.HasPrefix(b, []byte(spoolMagic)) {
		return unmarshalSpooledV1(b)
	}
	if len(b) < len(spoolMagic)+4 {
		return r, errBadSpoolFile
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, spoolCRC) != sum {
		return r, fmt.Errorf("%w: checksum mismatch", errBadSpoolFile)
	}
	p := body[len(spoolMagic):]
	str := func() (string, bool) {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return "", false
		}
		v := string(p[1 : 1+p[0]])
		p = p[1+p[0]:]
		return v, true
	}
	var ok bool
	if r.Origin, ok = str(); !ok || len(p) < 5 {
		return r, errBadSpoolFile
	}
	r.Signal = wire.Signal(p[0])
	r.Partition = int(binary.LittleEndian.Uint32(p[1:]))
	p = p[5:]
	if r.ID, ok = str(); !ok || len(p) < 4 {
		return r, errBadSpoolFile
	}
	n := binary.LittleEndian.Uint32(p)
	if uint64(n) != uint64(len(p)-4) {
		return r, errBadSpoolFile
	}
	r.Data = p[4:]
	if !stream.ValidOrigin(r.Origin) {
		return r, fmt.Errorf("%w: origin %q", errBadSpoolFile, r.Origin)
	}
	return r, nil
}

// unmarshalSpooledV1 reads "les.<origin>.<signal>.<partition>\n<id>\n<data>".
func unmarshalSpooledV1(b []byte) (stream.Record, error) {
	var r stream.Record
	subj, rest, ok1 := bytes.Cut(b, []byte("\n"))
	id, data, ok2 := bytes.Cut(rest, []byte("\n"))
	t := strings.Split(string(subj), ".")
	if !ok1 || !ok2 || len(t) != 4 || t[0] != "les" || !stream.ValidOrigin(t[1]) {
		return r, errBadSpoolFile
	}
	sig, err := wire.ParseSignal(t[2])
	p, perr := strconv.Atoi(t[3])
	if err != nil || perr != nil || p < 0 {
		return r, errBadSpoolFile
	}
	return stream.Record{Origin: t[1], Signal: sig, Partition: p, ID: string(id), Data: data}, nil
}

// reserve adds n to the spool's size unless that would pass MaxBytes.
func (s *Spool) reserve(n int64) bool {
	for {
		cur := s.size.Load()
		if cur+n > s.cfg.MaxBytes {
			return false
		}
		if s.size.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (s *Spool) files() ([]string, error) {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".rec") {
			out = append(out, filepath.Join(s.cfg.Dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Replay publishes spooled records oldest first, deleting each once the
// stream took it; it stops at the first failure.
func (s *Spool) Replay(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := s.files()
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		rec, err := unmarshalSpooled(b)
		if err != nil {
			// It can never be published: keep it aside for a person to
			// look at, and go on with the next.
			s.log.Error("spool: damaged file moved aside", "file", f+".bad", "err", err)
			if rerr := os.Rename(f, f+".bad"); rerr == nil {
				s.size.Add(-int64(len(b)))
			}
			s.damaged.Inc()
			continue
		}
		// The stream's partition count may have changed since.
		rec.Partition %= max(s.st.Capabilities().Partitions, 1)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = s.st.Publish(pctx, rec)
		cancel()
		if errors.Is(err, stream.ErrTooLarge) || errors.Is(err, stream.ErrRejected) {
			// It will never fit, or the stream refuses it for good: keep
			// it aside (for a person to look at) instead of blocking every
			// record behind it.
			ext := ".toolarge"
			if !errors.Is(err, stream.ErrTooLarge) {
				ext = ".rejected"
			}
			s.log.Error("spool: record can never be published; moved aside", "file", f+ext, "err", err)
			if rerr := os.Rename(f, f+ext); rerr == nil {
				s.size.Add(-int64(len(b)))
			}
			s.dropped.Inc()
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Remove(f); err == nil {
			s.size.Add(-int64(len(b)))
		}
		s.replayed.Inc()
	}
	return nil
}

// Run re-publishes the spool every Retry until ctx ends.
func (s *Spool) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Retry)
	defer t.Stop()
	for {
		if s.size.Load() > 0 {
			if err := s.Replay(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("spool replay: stream still unavailable", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
