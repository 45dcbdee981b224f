package consumer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/les-streams/les/internal/stream"
)

// checkpoint is what a processor consumer persists: its position in the
// stream, its state, and the records it emitted but has not yet confirmed
// published.
//
// File layout (little endian): "LESC", version u8, lastSeq u64, emitSeq
// u64, state (u32 length + bytes), outbox count u32, then per record
// subject, id, data (each u32 length + bytes), and a CRC-32C of everything
// before it.
type checkpoint struct {
	lastSeq uint64
	emitSeq uint64
	state   []byte
	outbox  []stream.Record
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func (c *checkpoint) marshal() []byte {
	b := []byte("LESC\x01")
	b = binary.LittleEndian.AppendUint64(b, c.lastSeq)
	b = binary.LittleEndian.AppendUint64(b, c.emitSeq)
	b = appendBytes(b, c.state)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.outbox)))
	for _, r := range c.outbox {
		b = appendBytes(b, []byte(r.Subject))
		b = appendBytes(b, []byte(r.ID))
		b = appendBytes(b, r.Data)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendBytes(b, v []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

var errBadCheckpoint = errors.New("corrupt checkpoint")

func unmarshalCheckpoint(b []byte) (checkpoint, error) {
	var c checkpoint
	if len(b) < 5+16+4+4+4 || string(b[:5]) != "LESC\x01" {
		return c, errBadCheckpoint
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return c, fmt.Errorf("%w: checksum mismatch", errBadCheckpoint)
	}
	p := body[5:]
	c.lastSeq = binary.LittleEndian.Uint64(p)
	c.emitSeq = binary.LittleEndian.Uint64(p[8:])
	p = p[16:]
	next := func() ([]byte, bool) {
		if len(p) < 4 {
			return nil, false
		}
		n := binary.LittleEndian.Uint32(p)
		if uint64(n) > uint64(len(p)-4) {
			return nil, false
		}
		v := p[4 : 4+n]
		p = p[4+n:]
		return v, true
	}
	var ok bool
	if c.state, ok = next(); !ok {
		return c, errBadCheckpoint
	}
	if len(p) < 4 {
		return c, errBadCheckpoint
	}
	n := binary.LittleEndian.Uint32(p)
	p = p[4:]
	for i := uint32(0); i < n; i++ {
		subj, ok1 := next()
		id, ok2 := next()
		data, ok3 := next()
		if !ok1 || !ok2 || !ok3 {
			return c, errBadCheckpoint
		}
		c.outbox = append(c.outbox, stream.Record{Subject: string(subj), ID: string(id), Data: data})
	}
	return c, nil
}

// loadCheckpoint reads path; a missing file is an empty checkpoint.
func loadCheckpoint(path string) (checkpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return checkpoint{}, nil
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
func (c *checkpoint) save(path string) error {
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
