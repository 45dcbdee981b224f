package consumer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// checkpoint is what a consumer persists: its position in every physical
// partition it reads, the record ids it has folded in lately (to drop
// re-published records on streams that do not), a processor's state, and
// the records it emitted but has not yet confirmed published.
//
// File layout, version 2 (little endian; str = u32 length + bytes):
// "LESC", 0x02, producer u64, emitSeq u64, positions count u32 then (partition str, pos
// str) each, seen count u32 then (id str, first-seen unix ns i64) each,
// state str, outbox count u32 then per record origin str, signal u8,
// partition u32, id str, data str; and a CRC-32C of everything before it.
//
// Version 1 (a single JetStream sequence, outbox records by subject) is
// still read: its sequence becomes the position of every partition
// (positionAll), which holds for the embedded stream that wrote it.
type checkpoint struct {
	// producer and emitSeq make the ids of emitted records: producer is
	// drawn at random on the first run and kept, so processes that split
	// the partitions never emit the same id (a stream would drop one as a
	// duplicate) and a restart re-publishes its outbox under the same ids.
	producer  uint64
	emitSeq   uint64
	positions map[string]stream.Position
	seen      map[string]int64
	state     []byte
	outbox    []stream.Record
}

// positionAll is the key of a version 1 checkpoint's sequence, which
// applies to every partition; expandPositions replaces it.
const positionAll = "*"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func (c *checkpoint) marshal() []byte {
	b := []byte("LESC\x02")
	b = binary.LittleEndian.AppendUint64(b, c.producer)
	b = binary.LittleEndian.AppendUint64(b, c.emitSeq)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.positions)))
	for p, pos := range c.positions {
		b = appendStr(b, p)
		b = appendStr(b, string(pos))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.seen)))
	for id, t := range c.seen {
		b = appendStr(b, id)
		b = binary.LittleEndian.AppendUint64(b, uint64(t))
	}
	b = appendBytes(b, c.state)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.outbox)))
	for _, r := range c.outbox {
		b = appendStr(b, r.Origin)
		b = append(b, byte(r.Signal))
		b = binary.LittleEndian.AppendUint32(b, uint32(r.Partition))
		b = appendStr(b, r.ID)
		b = appendBytes(b, r.Data)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendStr(b []byte, v string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

var errBadCheckpoint = errors.New("corrupt checkpoint")

// reader reads the fields of a checkpoint body; ok turns false at the
// first field that does not fit.
type reader struct {
	p  []byte
	ok bool
}

func (r *reader) bytes() []byte {
	n := r.u32()
	if !r.ok || uint64(n) > uint64(len(r.p)) {
		r.ok = false
		return nil
	}
	v := r.p[:n]
	r.p = r.p[n:]
	return v
}

func (r *reader) u32() uint32 {
	if !r.ok || len(r.p) < 4 {
		r.ok = false
		return 0
	}
	v := binary.LittleEndian.Uint32(r.p)
	r.p = r.p[4:]
	return v
}

func (r *reader) u64() uint64 {
	if !r.ok || len(r.p) < 8 {
		r.ok = false
		return 0
	}
	v := binary.LittleEndian.Uint64(r.p)
	r.p = r.p[8:]
	return v
}

func (r *reader) u8() byte {
	if !r.ok || len(r.p) < 1 {
		r.ok = false
		return 0
	}
	v := r.p[0]
	r.p = r.p[1:]
	return v
}

func unmarshalCheckpoint(b []byte) (checkpoint, error) {
	c := checkpoint{positions: map[string]stream.Position{}, seen: map[string]int64{}}
	if len(b) < 9 || string(b[:4]) != "LESC" || (b[4] != 1 && b[4] != 2) {
		return c, errBadCheckpoint
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return c, fmt.Errorf("%w: checksum mismatch", errBadCheckpoint)
	}
	r := reader{p: body[5:], ok: true}
	if b[4] == 1 {
		return c, c.unmarshalV1(&r)
	}
	c.producer = r.u64()
	c.emitSeq = r.u64()
	for n := r.u32(); r.ok && n > 0; n-- {
		p, pos := string(r.bytes()), stream.Position(r.bytes())
		c.positions[p] = pos
	}
	for n := r.u32(); r.ok && n > 0; n-- {
		id := string(r.bytes())
		c.seen[id] = int64(r.u64())
	}
	c.state = r.bytes()
	for n := r.u32(); r.ok && n > 0; n-- {
		var rec stream.Record
		rec.Origin = string(r.bytes())
		rec.Signal = wire.Signal(r.u8())
		rec.Partition = int(r.u32())
		rec.ID = string(r.bytes())
		rec.Data = r.bytes()
		c.outbox = append(c.outbox, rec)
	}
	if !r.ok || len(r.p) != 0 {
		return c, errBadCheckpoint
	}
	return c, nil
}

// unmarshalV1 reads "LESC\x01": lastSeq u64, emitSeq u64, state, outbox
// count u32, then per record subject, id, data.
func (c *checkpoint) unmarshalV1(r *reader) error {
	if last := r.u64(); last > 0 {
		c.positions[positionAll] = stream.Position(strconv.FormatUint(last, 10))
	}
	c.emitSeq = r.u64()
	c.state = r.bytes()
	for n := r.u32(); r.ok && n > 0; n-- {
		subj, id, data := string(r.bytes()), string(r.bytes()), r.bytes()
		t := strings.Split(subj, ".") // les.<origin>.<signal>.<partition>
		if len(t) != 4 {
			return errBadCheckpoint
		}
		sig, err := wire.ParseSignal(t[2])
		p, perr := strconv.Atoi(t[3])
		if err != nil || perr != nil {
			return errBadCheckpoint
		}
		c.outbox = append(c.outbox, stream.Record{Origin: t[1], Signal: sig, Partition: p, ID: id, Data: data})
	}
	if !r.ok || len(r.p) != 0 {
		return errBadCheckpoint
	}
	return nil
}

// expandPositions turns a version 1 sequence into a position for each of
// n partitions (the embedded stream's partition tokens "0" … "n-1").
func (c *checkpoint) expandPositions(n int) {
	all, ok := c.positions[positionAll]
	if !ok {
		return
	}
	delete(c.positions, positionAll)
	for p := range n {
		if _, ok := c.positions[strconv.Itoa(p)]; !ok {
			c.positions[strconv.Itoa(p)] = all
		}
	}
}

// loadCheckpoint reads path; a missing file is an empty checkpoint.
func loadCheckpoint(path string) (checkpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return checkpoint{positions: map[string]stream.Position{}, seen: map[string]int64{}}, nil
	}
	if err != nil {
		return checkpoint{}, err
	}
	c, err := unmarshalCheckpoint(b)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// save writes the checkpoint atomically: temp file, fsync, rename, fsync dir.
func (c *checkpoint) save(path string) error { return c.write(path, false) }

// saveRotated is save that keeps the checkpoint it replaces as path.1
// (previousSuffix): a hard link of the current file renamed over path.1,
// then the new file renamed over path, each step atomic, so path and
// path.1 are always two complete checkpoints, the last two written. Where
// hard links are refused the current file is renamed to path.1 instead;
// a crash then may leave path.1 alone, which loadRotated reads.
func (c *checkpoint) saveRotated(path string) error { return c.write(path, true) }

// previousSuffix names the checkpoint before the newest.
const previousSuffix = ".1"

func (c *checkpoint) write(path string, rotate bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(c.marshal()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if rotate {
		if err := keepPrevious(path); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// keepPrevious makes path.1 the checkpoint now at path (if any).
func keepPrevious(path string) error {
	prev := path + previousSuffix
	lnk := prev + ".tmp"
	_ = os.Remove(lnk)
	err := os.Link(path, lnk)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil // nothing to keep yet
	case err == nil:
		return os.Rename(lnk, prev)
	}
	if err := os.Rename(path, prev); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// loaded says which checkpoint loadRotated started from.
type loaded int

const (
	loadedNewest   loaded = iota // path (or nothing yet: a first run)
	loadedPrevious               // path was damaged or missing: path.1
	loadedNone                   // neither is usable: start from the oldest record
)

// loadRotated reads the newest good checkpoint of path and path.1. A
// damaged one is moved aside to <name>.bad (so the next save does not
// keep it as the previous); problems lists what was wrong, for the log.
// When neither is good the checkpoint is empty (positions from the
// stream's oldest record) and loadedNone says so.
func loadRotated(path string) (c checkpoint, from loaded, problems []string, err error) {
	empty := func() checkpoint {
		return checkpoint{positions: map[string]stream.Position{}, seen: map[string]int64{}}
	}
	damaged := false
	for i, p := range []string{path, path + previousSuffix} {
		b, rerr := os.ReadFile(p)
		if errors.Is(rerr, os.ErrNotExist) {
			continue
		}
		if rerr != nil {
			return c, 0, problems, rerr
		}
		ck, uerr := unmarshalCheckpoint(b)
		if uerr == nil {
			if i == 0 && !damaged {
				return ck, loadedNewest, problems, nil
			}
			return ck, loadedPrevious, problems, nil
		}
		damaged = true
		problems = append(problems, fmt.Sprintf("%s: %v (moved to %s.bad)", p, uerr, filepath.Base(p)))
		if err := os.Rename(p, p+".bad"); err != nil {
			return c, 0, problems, fmt.Errorf("%s: %w; moving it aside: %v", p, uerr, err)
		}
	}
	if damaged {
		return empty(), loadedNone, problems, nil
	}
	return empty(), loadedNewest, problems, nil
}
