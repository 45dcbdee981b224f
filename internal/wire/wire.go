// Package wire encodes and decodes les records: the bytes that travel on the
// stream. A record is one batch of one signal (metrics, distributions, logs
// or spans) behind a fixed 48-byte header. The format is specified in
// docs/wire-format.md so that consumers in other languages can read it.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Signal is the kind of items a record carries.
type Signal uint8

const (
	SignalMetrics       Signal = 1
	SignalDistributions Signal = 2
	SignalLogs          Signal = 3
	SignalSpans         Signal = 4
)

var signalNames = map[Signal]string{
	SignalMetrics: "metrics", SignalDistributions: "distributions",
	SignalLogs: "logs", SignalSpans: "spans",
}

func (s Signal) String() string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return "signal(" + strconv.Itoa(int(s)) + ")"
}

// Signals lists every signal in wire order.
var Signals = [...]Signal{SignalMetrics, SignalDistributions, SignalLogs, SignalSpans}

// ParseSignal maps a signal name to its value.
func ParseSignal(s string) (Signal, error) {
	for sig, n := range signalNames {
		if n == s {
			return sig, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q (want metrics, distributions, logs or spans)", s)
}

// Encoding of the record body.
type Encoding uint8

const (
	// EncodingLES is the les binary item encoding, version 1: every item
	// carries its whole series.
	EncodingLES Encoding = 1
	// EncodingSeries (metrics only) puts each distinct series of the
	// record once in a table at the start of the body; an item is the
	// table index, a timestamp delta and the value (series.go).
	EncodingSeries Encoding = 2
)

// ParseEncoding maps "les" or "series" to an Encoding.
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case "les":
		return EncodingLES, nil
	case "series":
		return EncodingSeries, nil
	}
	return 0, fmt.Errorf("unknown encoding %q (want series or les)", s)
}

func (e Encoding) String() string {
	switch e {
	case EncodingLES:
		return "les"
	case EncodingSeries:
		return "series"
	}
	return "encoding(" + strconv.Itoa(int(e)) + ")"
}

// Compression of the record body.
type Compression uint8

const (
	CompressionNone Compression = 0
	CompressionGzip Compression = 1
	CompressionZstd Compression = 2
	// CompressionS2 is a Snappy block written by S2's Snappy-compatible
	// encoder: 4–6× cheaper than zstd to write, for about 1.4× zstd's
	// bytes; les' default for the embedded, local stream (ADR 0010).
	CompressionS2 Compression = 3
)

// ParseCompression maps "none", "gzip", "zstd" or "s2" to a Compression.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "none", "":
		return CompressionNone, nil
	case "gzip":
		return CompressionGzip, nil
	case "zstd":
		return CompressionZstd, nil
	case "s2":
		return CompressionS2, nil
	}
	return 0, fmt.Errorf("unknown compression %q (want none, gzip, zstd or s2)", s)
}

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionGzip:
		return "gzip"
	case CompressionZstd:
		return "zstd"
	case CompressionS2:
		return "s2"
	}
	return "compression(" + strconv.Itoa(int(c)) + ")"
}

// Record layout versions. Version 2 differs from version 1 only in the
// span item, which gains kind, status, events and links after its tags.
// The encoder writes version 1 unless a span record holds a span with any
// of those fields, so records without them stay readable by version-1
// readers; the decoder reads both.
const (
	Version  = 1
	Version2 = 2
	// MaxVersion is the newest version this package reads.
	MaxVersion = Version2
)

// HeaderSize is the length of the fixed record header.
const HeaderSize = 48

// Magic starts every record.
var magic = [4]byte{'L', 'E', 'S', 'R'}

// Header is the fixed part of a record.
type Header struct {
	Version     uint8
	Signal      Signal
	Encoding    Encoding
	Compression Compression
	// Producer and Seq together are the batch id: unique per producer, used
	// to de-duplicate re-deliveries and re-publishes.
	Producer uint64
	Seq      uint64
	Count    uint32 // items in the body
	MinTime  int64  // Unix ns, smallest item timestamp (0 if none)
	MaxTime  int64  // Unix ns, largest item timestamp
	BodyLen  uint32 // bytes of body as stored (after compression)
}

// ID returns the batch id as text: "<producer hex>-<seq>".
func (h *Header) ID() string {
	return strconv.FormatUint(h.Producer, 16) + "-" + strconv.FormatUint(h.Seq, 10)
}

// Errors returned by ParseHeader and Decoder.Decode.
var (
	ErrShort       = errors.New("wire: record shorter than its header")
	ErrMagic       = errors.New("wire: not a les record (bad magic)")
	ErrVersion     = errors.New("wire: unsupported record version")
	ErrCorrupt     = errors.New("wire: corrupt record body")
	ErrTooLarge    = errors.New("wire: record body exceeds the size limit")
	ErrCompression = errors.New("wire: unknown compression")
)

// AppendHeader appends the 48 header bytes of h to dst.
func AppendHeader(dst []byte, h *Header) []byte {
	dst = append(dst, magic[:]...)
	dst = append(dst, h.Version, byte(h.Signal), byte(h.Encoding), byte(h.Compression))
	dst = binary.LittleEndian.AppendUint64(dst, h.Producer)
	dst = binary.LittleEndian.AppendUint64(dst, h.Seq)
	dst = binary.LittleEndian.AppendUint32(dst, h.Count)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.MinTime))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.MaxTime))
	dst = binary.LittleEndian.AppendUint32(dst, h.BodyLen)
	return dst
}

// ParseHeader reads the header at the start of rec.
func ParseHeader(rec []byte) (Header, error) {
	var h Header
	if len(rec) < HeaderSize {
		return h, ErrShort
	}
	if [4]byte(rec[:4]) != magic {
		return h, ErrMagic
	}
	h.Version = rec[4]
	if h.Version < Version || h.Version > MaxVersion {
		return h, fmt.Errorf("%w: %d", ErrVersion, h.Version)
	}
	h.Signal = Signal(rec[5])
	h.Encoding = Encoding(rec[6])
	h.Compression = Compression(rec[7])
	h.Producer = binary.LittleEndian.Uint64(rec[8:])
	h.Seq = binary.LittleEndian.Uint64(rec[16:])
	h.Count = binary.LittleEndian.Uint32(rec[24:])
	h.MinTime = int64(binary.LittleEndian.Uint64(rec[28:]))
	h.MaxTime = int64(binary.LittleEndian.Uint64(rec[36:]))
	h.BodyLen = binary.LittleEndian.Uint32(rec[44:])
	if int(h.BodyLen) != len(rec)-HeaderSize {
		return h, fmt.Errorf("%w: body length %d, record has %d", ErrCorrupt, h.BodyLen, len(rec)-HeaderSize)
	}
	if _, ok := signalNames[h.Signal]; !ok {
		return h, fmt.Errorf("%w: unknown signal %d", ErrCorrupt, h.Signal)
	}
	switch {
	case h.Encoding == EncodingLES:
	case h.Encoding == EncodingSeries && h.Signal == SignalMetrics:
	default:
		return h, fmt.Errorf("%w: unknown encoding %d for %s", ErrCorrupt, h.Encoding, h.Signal)
	}
	return h, nil
}
