package otlp

import (
	"crypto/sha256"
	"encoding/hex"
	"unsafe"
)

// Attribute keys under which the original les ids are kept when the OTLP
// id does not render back to them (see README: Spans).
const (
	AttrTraceID  = "les.trace_id"
	AttrSpanID   = "les.span_id"
	AttrParentID = "les.parent_id"
)

// traceID maps a les trace id to 16 bytes: 32 hex digits decode as they
// are; a UUID (8-4-4-4-12 hex digits, as Wavefront writes trace ids)
// decodes without its dashes; anything else (and an all-zero id, which
// OTLP calls invalid) is the first 16 bytes of its SHA-256. exact reports
// whether the lowercase hex rendering of the result equals s, so a caller
// knows when to keep s as an attribute.
func traceID(s string) (id [16]byte, exact bool) {
	switch {
	case len(s) == 32 && decodeHex(id[:], s):
	case len(s) == 36 && isUUID(s) && decodeUUID(id[:], s):
		return id, false
	default:
		return hashID16(s), false
	}
	if id == ([16]byte{}) {
		return hashID16(s), false
	}
	return id, isLowerHex(s)
}

// spanID maps a les span id to 8 bytes: 16 hex digits decode; a UUID whose
// first half is zero (Wavefront's form of a 64-bit id) gives its last 8
// bytes; anything else (and an all-zero id) is the first 8 bytes of its
// SHA-256. exact is as for traceID.
func spanID(s string) (id [8]byte, exact bool) {
	switch {
	case len(s) == 16 && decodeHex(id[:], s):
	case len(s) == 36 && isUUID(s):
		var u [16]byte
		if decodeUUID(u[:], s) && [8]byte(u[:8]) == ([8]byte{}) {
			copy(id[:], u[8:])
			if id != ([8]byte{}) {
				return id, false
			}
		}
		return hashID8(s), false
	default:
		return hashID8(s), false
	}
	if id == ([8]byte{}) {
		return hashID8(s), false
	}
	return id, isLowerHex(s)
}

func hashID16(s string) [16]byte {
	h := sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
	id := [16]byte(h[:16])
	if id == ([16]byte{}) {
		id[15] = 1
	}
	return id
}

func hashID8(s string) [8]byte {
	h := sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
	id := [8]byte(h[:8])
	if id == ([8]byte{}) {
		id[7] = 1
	}
	return id
}

func decodeHex(dst []byte, s string) bool {
	_, err := hex.Decode(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
	return err == nil
}

func isUUID(s string) bool {
	return s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-'
}

func decodeUUID(dst []byte, s string) bool {
	return decodeHex(dst[0:4], s[0:8]) && decodeHex(dst[4:6], s[9:13]) && decodeHex(dst[6:8], s[14:18]) &&
		decodeHex(dst[8:10], s[19:23]) && decodeHex(dst[10:16], s[24:36])
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
