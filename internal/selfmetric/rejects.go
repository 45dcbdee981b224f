package selfmetric

import (
	"bytes"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Bounds of a RejectLog.
const (
	// RejectsPerFormat is how many rejected inputs are kept per format.
	RejectsPerFormat = 10
	// RejectMaxBytes is how much of each rejected input is kept.
	RejectMaxBytes = 256
)

// RejectLog keeps the last RejectsPerFormat rejected inputs of each intake
// format, each cut to RejectMaxBytes, with the reason it was refused, for
// the Pipeline page (GET /api/v1/rejected). It holds only what a decoder
// or transport refused (a line, a datagram, a document), never request
// headers; a token registered with Redact is replaced in what is kept.
// It is safe for concurrent use; Note does nothing while nobody rejects,
// and costs one lock and a copy of at most RejectMaxBytes when one does.
type RejectLog struct {
	mu       sync.Mutex
	byFormat map[string]*rejectRing
	secrets  [][]byte
	now      func() time.Time
}

type rejectRing struct {
	items [RejectsPerFormat]Rejected
	next  int // where the next one goes
	n     int // kept (≤ RejectsPerFormat)
	total uint64
}

// Rejected is one rejected input.
type Rejected struct {
	Time      time.Time
	Format    string
	Transport string
	Reason    string
	// Input is the start of what was refused, escaped (Escape); empty when
	// nothing was kept (refused before it was read, e.g. too large).
	Input string
	// Size is the length in bytes of the whole input; Truncated says
	// Input holds only its first RejectMaxBytes bytes.
	Size      int
	Truncated bool
}

// NewRejectLog returns an empty log.
func NewRejectLog() *RejectLog {
	return &RejectLog{byFormat: map[string]*rejectRing{}, now: time.Now}
}

// Redact makes the log replace secret wherever it appears in an input
// kept from now on (the HTTP token, say). Call it before intake starts.
func (l *RejectLog) Redact(secret string) {
	if secret == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, []byte(secret))
}

// Note keeps input (which may be nil) as the newest rejected input of
// format. It copies what it keeps; input may be reused after it returns.
func (l *RejectLog) Note(format, transport, reason string, input []byte) {
	if l == nil {
		return
	}
	size := len(input)
	l.mu.Lock()
	defer l.mu.Unlock()
	// Only the start is kept: look for secrets in the start plus enough
	// to catch one that begins inside it, then cut.
	head := input
	trunc := len(head) > RejectMaxBytes
	longest := 0
	for _, s := range l.secrets {
		longest = max(longest, len(s))
	}
	if len(head) > RejectMaxBytes+longest {
		head = head[:RejectMaxBytes+longest]
	}
	for _, s := range l.secrets {
		if bytes.Contains(head, s) {
			head = bytes.ReplaceAll(head, s, []byte("[redacted]"))
		}
	}
	if len(head) > RejectMaxBytes {
		head, trunc = head[:RejectMaxBytes], true
	}
	r := l.byFormat[format]
	if r == nil {
		r = &rejectRing{}
		l.byFormat[format] = r
	}
	r.items[r.next] = Rejected{Time: l.now(), Format: format, Transport: transport, Reason: reason,
		Input: Escape(head), Size: size, Truncated: trunc}
	r.next = (r.next + 1) % RejectsPerFormat
	r.n = min(r.n+1, RejectsPerFormat)
	r.total++
}

// Recent returns the kept inputs, newest first, and how many were rejected
// in all (kept or not) per format.
func (l *RejectLog) Recent() ([]Rejected, map[string]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Rejected
	totals := make(map[string]uint64, len(l.byFormat))
	for f, r := range l.byFormat {
		totals[f] = r.total
		for i := range r.n {
			out = append(out, r.items[(r.next-1-i+RejectsPerFormat)%RejectsPerFormat])
		}
	}
	slices.SortStableFunc(out, func(a, b Rejected) int { return b.Time.Compare(a.Time) })
	return out, totals
}

// Escape returns b as printable text: valid UTF-8 is kept but for control
// characters, which (like every byte of invalid UTF-8) are written as \xNN;
// a backslash is doubled, so the text reads back unambiguously. A rejected
// input may hold anything: what Escape returns is still only text.
func Escape(b []byte) string {
	var sb []byte
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x20 && r != '\t', r == 0x7f, r >= 0x80 && r < 0xa0:
			for _, c := range b[:max(n, 1)] {
				sb = append(sb, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			}
		case r == '\\':
			sb = append(sb, '\\', '\\')
		case r == 0x2028 || r == 0x2029 || r == 0xfeff || (r >= 0x200b && r <= 0x200f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			// Invisible or reordering characters: shown, not obeyed.
			sb = append(sb, `\u`...)
			sb = append(sb, strconv.FormatInt(int64(r)+0x10000, 16)[1:]...)
		default:
			sb = append(sb, b[:n]...)
		}
		b = b[max(n, 1):]
	}
	return string(sb)
}
