package file

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/les-streams/les/internal/sink"
)

// tailLen is how many of the file's last bytes Send compares before each
// append (the end of the last record written).
const tailLen = 64

// check verifies, before an append, that the file is as this sink left
// it: still linked, the same length, the same last bytes and — every
// PathCheckInterval — still the file at Path. What it finds it repairs
// (repair). s.mu held; s.f open.
func (s *Sink) check() error {
	size, linked, err := fstat(s.f, s.fd, &s.stbuf)
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if !linked {
		return s.reopen("the file was deleted while les wrote it: writing a new one; the last record written is delivered again in case it went to the deleted file", true)
	}
	if size != s.size || !s.tailOK(size) {
		if size == 0 && s.size > 0 {
			s.log.Info("file sink: the file was truncated to zero (rotated by copytruncate?): starting afresh")
			s.seen.reset()
			s.size, s.tailN = 0, 0
			return s.resetJournal()
		}
		limit := int64(-1)
		if size == s.size && len(s.ring) > 0 {
			// Same length, other bytes at the end: the last record
			// written was overwritten. Cut it and what follows.
			limit = s.ring[len(s.ring)-1].start
		}
		return s.repair(size, limit, "while running")
	}
	if now := time.Now(); now.Sub(s.checked) >= s.pathEvery {
		s.checked = now
		if fi, err := os.Stat(s.cfg.Path); err != nil || !os.SameFile(fi, s.fi) {
			return s.reopen("the file at the path is another one or gone (rotated or moved?): writing to the path again", false)
		}
	}
	return nil
}

// tailOK reports whether the file of length size still ends with the
// bytes this sink left there.
func (s *Sink) tailOK(size int64) bool {
	if s.tailN == 0 {
		return true
	}
	n := s.readTail(s.tailBuf[:s.tailN], size)
	return bytes.Equal(s.tailBuf[:n], s.tail[:s.tailN])
}

// readTail reads the len(dst) bytes before end (fewer when end is
// smaller) into dst and returns how many it read.
func (s *Sink) readTail(dst []byte, end int64) int {
	n := int(min(int64(len(dst)), end))
	m, _ := s.f.ReadAt(dst[:n], end-int64(n))
	return m
}

// reopen closes the file and opens Path again, with a fresh journal; with
// rewindLast the last record written is re-read from the stream. s.mu
// held.
func (s *Sink) reopen(why string, rewindLast bool) error {
	var rw map[string]string
	if n := len(s.ring); rewindLast && n > 0 && s.ring[n-1].pos != "" {
		rw = map[string]string{s.ring[n-1].partition: s.ring[n-1].pos}
	}
	s.log.Warn("file sink: "+why, "rewind", rw)
	s.closeFiles()
	s.ring = s.ring[:0]
	if err := os.Truncate(s.posPath, 0); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := s.open(); err != nil {
		return err
	}
	s.addRewind(rw)
	return nil
}

// repair makes the file end with a complete record: it scans the file's
// tail up to size (or up to limit, when the bytes after it are known to
// be damaged), cuts what follows the last complete record, and sets a
// rewind to the first journaled record the cut removed, per partition.
// It logs and counts what it did. s.mu held; s.f open.
func (s *Sink) repair(size, limit int64, when string) error {
	end := size
	if limit >= 0 && limit < end {
		end = limit
	}
	keep, err := s.scan(s.f, end)
	if err != nil {
		return err
	}
	first := len(s.ring)
	for first > 0 && s.ring[first-1].end > keep {
		first--
	}
	cut := s.ring[first:]
	var sample []byte // the start of what is cut
	if size > keep {
		sample = make([]byte, min(size-keep, 1<<20))
		n, _ := s.f.ReadAt(sample, keep)
		sample = sample[:n]
		if err := s.f.Truncate(keep); err != nil {
			return err
		}
		if err := s.f.Sync(); err != nil {
			return err
		}
	}
	s.size = keep
	s.tailN = s.readTail(s.tail[:], keep)
	if size == keep && len(cut) == 0 {
		return nil
	}
	rw := map[string]string{}
	unknown := 0 // cut records whose position is not known
	for _, w := range cut {
		if w.pos == "" {
			unknown++
			continue
		}
		if cur, ok := rw[w.partition]; !ok || comparePos(w.pos, cur) < 0 {
			rw[w.partition] = w.pos
		}
	}
	// Did the cut begin before the oldest record journaled? Then records
	// before it were cut too and their positions are not known.
	older := len(cut) > 0 && first == 0 && cut[0].start > keep
	if len(cut) > 0 {
		s.ring = s.ring[:first]
		if err := s.rewriteJournal(); err != nil {
			return err
		}
	}
	s.counts.Repairs++
	s.counts.Repaired += uint64(size - keep)
	s.repairs.Inc()
	s.repairedB.Add(int(size - keep))
	lines := bytes.Count(sample, []byte{'\n'})
	if len(sample) > 0 && sample[len(sample)-1] != '\n' {
		lines++ // a torn last line
	}
	id := ""
	if key, _, _, ok := parseHead(sample); ok {
		id = string(key)
	}
	attrs := []any{"when", when, "offset", keep, "bytes_cut", size - keep, "lines_cut", lines, "record", id,
		"records_cut", len(cut), "rewind", rw}
	switch {
	case when != "on open":
		s.log.Error("file sink found its output damaged while running and repaired its end: the stream is re-read from the first record cut", attrs...)
	case len(rw) > 0:
		s.log.Warn("file sink repaired its end on open: cut records already delivered; the stream is re-read from the first one cut", attrs...)
	case id == "":
		s.log.Warn("file sink repaired its end on open: cut a torn line that belongs to no record", attrs...)
	default:
		s.log.Warn("file sink repaired its end on open: cut an incomplete record, which was never acknowledged: the stream delivers it again", attrs...)
	}
	if older || unknown > 0 {
		s.log.Error("file sink: the repair cut records whose stream positions are not known (older than the journal, or sent without a position); they are not delivered again",
			"records_without_position", unknown, "cut_before_oldest_journaled", older, "offset", keep)
	}
	s.addRewind(rw)
	return nil
}

// addRewind merges rw into the pending rewind (the earliest position per
// partition), keeps it in rewPath and, when a runner re-reads the stream
// for this sink, blocks Sends and signals Damaged. s.mu held.
func (s *Sink) addRewind(rw map[string]string) {
	if len(rw) == 0 {
		return
	}
	if s.pending == nil {
		s.pending = map[string]string{}
	}
	for p, pos := range rw {
		if cur, ok := s.pending[p]; !ok || comparePos(pos, cur) < 0 {
			s.pending[p] = pos
		}
	}
	s.saveRewind()
	if !s.runner {
		s.log.Error("file sink: no runner re-reads the stream for this sink; the records cut are delivered again only when one calls Recover", "rewind", s.pending)
		return
	}
	s.blocked = true
	select {
	case s.damaged <- struct{}{}:
	default:
	}
}

// saveRewind writes the pending rewind to rewPath (removing it when
// empty). A failure is logged: the rewind still holds until a restart.
func (s *Sink) saveRewind() {
	var err error
	if len(s.pending) == 0 {
		if err = os.Remove(s.rewPath); os.IsNotExist(err) {
			err = nil
		}
	} else {
		b, _ := json.Marshal(s.pending)
		tmp := s.rewPath + ".tmp"
		if err = os.WriteFile(tmp, append(b, '\n'), 0o644); err == nil {
			err = os.Rename(tmp, s.rewPath)
		}
	}
	if err != nil {
		s.log.Error("file sink: keeping the pending rewind failed; it is lost if les stops before the records come again", "err", err)
	}
}

func readRewind(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var m map[string]string
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// comparePos orders stream positions (stream.ComparePositions).
func comparePos(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// openJournal opens the journal and loads its entries into s.ring. A
// torn or malformed line is dropped (and the journal rewritten). s.mu
// held.
func (s *Sink) openJournal() error {
	jf, err := os.OpenFile(s.posPath, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(jf)
	if err != nil {
		_ = jf.Close()
		return err
	}
	s.jf = jf
	if cap(s.ring) == 0 {
		s.ring = make([]written, 0, min(64, 2*s.keepRecs))
	}
	s.ring = s.ring[:0]
	clean := true
	for line := range bytes.Lines(b) {
		w, ok := parseEntry(line)
		if !ok || (len(s.ring) > 0 && w.start < s.ring[len(s.ring)-1].end) {
			clean = false
			continue
		}
		s.ring = append(s.ring, w)
	}
	if n := len(s.ring); n > s.keepRecs {
		s.ring = s.ring[:copy(s.ring, s.ring[n-s.keepRecs:])]
		clean = false
	}
	if !clean {
		return s.rewriteJournal()
	}
	return nil
}

// journal appends the entry of the record just written at [start,
// s.size). s.mu held.
func (s *Sink) journal(start int64, m sink.Meta) error {
	part, pos := m.Partition, m.Pos
	if !journalable(part) || !journalable(pos) || pos == "" {
		part, pos = "", ""
	}
	b := strconv.AppendInt(s.jbuf[:0], start, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, s.size, 10)
	b = append(b, ' ')
	b = appendField(b, part)
	b = append(b, ' ')
	b = appendField(b, pos)
	b = append(b, '\n')
	s.jbuf = b
	if _, err := s.jf.Write(b); err != nil {
		return err
	}
	s.ring = append(s.ring, written{start: start, end: s.size, partition: part, pos: pos})
	if len(s.ring) >= 2*s.keepRecs {
		s.ring = s.ring[:copy(s.ring, s.ring[len(s.ring)-s.keepRecs:])]
		return s.rewriteJournal()
	}
	return nil
}

func appendField(b []byte, v string) []byte {
	if v == "" {
		return append(b, '-')
	}
	return append(b, v...)
}

// journalable reports whether v can be a journal field.
func journalable(v string) bool {
	return v != "-" && !strings.ContainsAny(v, " \n")
}

func parseEntry(line []byte) (written, bool) {
	f := bytes.Fields(line)
	if len(f) != 4 || line[len(line)-1] != '\n' {
		return written{}, false
	}
	start, err1 := strconv.ParseInt(string(f[0]), 10, 64)
	end, err2 := strconv.ParseInt(string(f[1]), 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end <= start {
		return written{}, false
	}
	w := written{start: start, end: end}
	if string(f[2]) != "-" && string(f[3]) != "-" {
		w.partition, w.pos = string(f[2]), string(f[3])
	}
	return w, true
}

// rewriteJournal replaces the journal with s.ring (atomically: a new file
// renamed over it) and reopens it. s.mu held.
func (s *Sink) rewriteJournal() error {
	var b []byte
	for _, w := range s.ring {
		b = strconv.AppendInt(b, w.start, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, w.end, 10)
		b = append(b, ' ')
		b = appendField(b, w.partition)
		b = append(b, ' ')
		b = appendField(b, w.pos)
		b = append(b, '\n')
	}
	tmp := s.posPath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.posPath); err != nil {
		return err
	}
	jf, err := os.OpenFile(s.posPath, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if s.jf != nil {
		_ = s.jf.Close()
	}
	s.jf = jf
	return nil
}

// resetJournal empties the journal (the file starts afresh). s.mu held.
func (s *Sink) resetJournal() error {
	s.ring = s.ring[:0]
	return s.jf.Truncate(0)
}

// scan reads the file's tail before size, adds the ids of complete
// records to s.seen (replacing its contents) and returns the length the
// file should have: without a torn last line and without an incomplete
// last record.
func (s *Sink) scan(f *os.File, size int64) (int64, error) {
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
