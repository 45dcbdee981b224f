package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/golang/snappy"

	"github.com/les-streams/les/internal/model"
)

// TestS2BodyIsSnappy: an s2 record's body is a plain Snappy block, which
// the reference Go Snappy decoder reads back to the uncompressed body; that
// is what docs/wire-format.md promises consumers in other languages.
func TestS2BodyIsSnappy(t *testing.T) {
	e := realisticRecord(2000, EncodingLES)
	plain, err := e.Finish(nil, 1, 1, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.Finish(nil, 1, 1, CompressionS2)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(rec)
	if err != nil {
		t.Fatal(err)
	}
	if h.Compression != CompressionS2 || int(h.BodyLen) != len(rec)-HeaderSize {
		t.Fatalf("header %+v, record %d bytes", h, len(rec))
	}
	body, err := snappy.Decode(nil, rec[HeaderSize:])
	if err != nil {
		t.Fatalf("snappy decode: %v", err)
	}
	if !bytes.Equal(body, plain[HeaderSize:]) {
		t.Fatal("snappy-decoded body differs from the uncompressed body")
	}
	if len(rec) >= len(plain)/2 {
		t.Errorf("s2 record %d bytes, uncompressed %d: expected at least 2× smaller", len(rec), len(plain))
	}
}

// TestS2Corrupt: a damaged s2 body, or one that would decompress past the
// decoder's bound, is an error, never a panic or an oversized buffer.
func TestS2Corrupt(t *testing.T) {
	rec, err := realisticRecord(500, EncodingLES).Finish(nil, 1, 1, CompressionS2)
	if err != nil {
		t.Fatal(err)
	}
	var b model.Batch
	trunc := append([]byte(nil), rec[:len(rec)-10]...)
	trunc = setBodyLen(trunc)
	if _, err := new(Decoder).Decode(&b, trunc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated body: err %v, want ErrCorrupt", err)
	}
	small := Decoder{MaxBodySize: 1024}
	if _, err := small.Decode(&b, rec); !errors.Is(err, ErrTooLarge) {
		t.Errorf("body over MaxBodySize: err %v, want ErrTooLarge", err)
	}
}

// setBodyLen makes the header's body_len match a cut record.
func setBodyLen(rec []byte) []byte {
	n := uint32(len(rec) - HeaderSize)
	rec[44], rec[45], rec[46], rec[47] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return rec
}
