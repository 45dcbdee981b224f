package pattern

import (
	"bytes"
	"regexp"
	"strconv"
)

// MaxPatternLen is the longest filter pattern CloudWatch accepts (API length
// constraint of filterPattern).
const MaxPatternLen = 1024

// Kind is the family a filter pattern belongs to.
type Kind uint8

const (
	// Unstructured patterns match terms, quoted phrases and %regex% anywhere
	// in the event.
	Unstructured Kind = iota
	// SpaceDelimited patterns, written [f1, f2, ...], split the event into
	// fields.
	SpaceDelimited
	// JSON patterns, written { selector op value ... }, match JSON objects.
	JSON
)

func (k Kind) String() string {
	switch k {
	case Unstructured:
		return "unstructured"
	case SpaceDelimited:
		return "space-delimited"
	case JSON:
		return "json"
	}
	return "unknown"
}

// SyntaxError reports an invalid filter pattern or selector. Pos is the
// zero-based byte offset in the source where the problem was found.
type SyntaxError struct {
	Pos    int
	Reason string
}

func (e *SyntaxError) Error() string {
	return "filter pattern: at position " + strconv.Itoa(e.Pos) + ": " + e.Reason
}

func errAt(pos int, reason string) *SyntaxError { return &SyntaxError{Pos: pos, Reason: reason} }

// Pattern is a compiled filter pattern. It is immutable and safe for
// concurrent use; match lines with a Matcher from NewMatcher.
type Pattern struct {
	src  string
	kind Kind

	// Unstructured.
	all   bool      // matches every event
	terms []txtTerm // AND of required/excluded terms
	opts  []txtTerm // OR alternatives, used only when terms is empty

	// Space-delimited.
	slots        []slot
	leaves       []leaf // conditions of slots (space-delimited) or JSON
	hasEllipsis  bool
	fixedSuffix  []int // fixedSuffix[i]: non-ellipsis slots in slots[i:]
	ellipsisFrom []bool
	global       []int // slot indexes whose condition reads other slots

	// JSON.
	expr *expr
}

// Kind reports the pattern family.
func (p *Pattern) Kind() Kind { return p.kind }

// String returns the source the pattern was compiled from.
func (p *Pattern) String() string { return p.src }

// txtTerm is one unstructured term.
type txtTerm struct {
	lit []byte
	re  *regexp.Regexp
	neg bool
}

func (t *txtTerm) match(line []byte) bool {
	var ok bool
	if t.re != nil {
		ok = t.re.Match(line)
	} else {
		ok = bytes.Contains(line, t.lit)
	}
	return ok != t.neg
}

// Compile parses a CloudWatch Logs filter pattern. An empty pattern, `""`
// and `" "` match every event. Errors are *SyntaxError.
func Compile(src string) (*Pattern, error) {
	if len(src) > MaxPatternLen {
		return nil, errAt(MaxPatternLen, "pattern longer than 1024 characters")
	}
	p := &Pattern{src: src}
	i := skipSpace(src, 0)
	var err error
	switch {
	case i < len(src) && src[i] == '{':
		p.kind = JSON
		err = p.parseJSON(i)
	case i < len(src) && src[i] == '[':
		p.kind = SpaceDelimited
		err = p.parseDelimited(i)
	default:
		p.kind = Unstructured
		err = p.parseText(i)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// MustCompile is Compile for patterns known to be valid (tests, constants);
// it panics on error.
func MustCompile(src string) *Pattern {
	p, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return p
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Field is one extracted field of a space-delimited match. Name is "$name"
// for named fields and "$N" (1-based position) for the others, as in the
// extractedValues of CloudWatch's TestMetricFilter.
type Field struct {
	Name  string
	Value string
}

// Matcher matches lines against one Pattern. It carries reusable scratch
// space and is not safe for concurrent use; create one per goroutine.
type Matcher struct {
	p       *Pattern
	line    []byte
	matched bool

	// space-delimited state
	toks   []span // fields of line
	assign []int  // slot index -> token index

	// JSON state
	bad     bool   // line is not well-formed JSON
	capture int    // position captured by a selector walk
	sbuf    []byte // unescaped string values
	kbuf    []byte // unescaped keys
	stack   []byte // validator stack
}

type span struct{ start, end int32 }

// NewMatcher returns a Matcher for p.
func (p *Pattern) NewMatcher() *Matcher {
	m := &Matcher{p: p, toks: make([]span, 0, 32)}
	if p.kind == SpaceDelimited {
		m.assign = make([]int, len(p.slots))
	}
	return m
}

// Pattern returns the pattern m matches.
func (m *Matcher) Pattern() *Pattern { return m.p }

// Match reports whether line matches the pattern. It allocates nothing. The
// Matcher keeps a reference to line until the next Match, for Fields,
// Resolve and Value.
func (m *Matcher) Match(line []byte) bool {
	m.line = line
	m.matched = false
	var ok bool
	switch m.p.kind {
	case Unstructured:
		ok = m.matchText(line)
	case SpaceDelimited:
		ok = m.matchDelimited(line)
	case JSON:
		ok = m.matchJSON(line)
	}
	m.matched = ok
	return ok
}

func (m *Matcher) matchText(line []byte) bool {
	p := m.p
	if p.all {
		return true
	}
	if len(p.terms) > 0 {
		for i := range p.terms {
			if !p.terms[i].match(line) {
				return false
			}
		}
		return true
	}
	for i := range p.opts {
		if p.opts[i].match(line) {
			return true
		}
	}
	return false
}

// Fields returns the fields of the last successful space-delimited match in
// line order, named "$name" or "$N". It returns nil for other pattern kinds
// or when the last Match failed. The slice and strings are newly allocated.
func (m *Matcher) Fields() []Field {
	if !m.matched || m.p.kind != SpaceDelimited {
		return nil
	}
	out := make([]Field, len(m.toks))
	for i, t := range m.toks {
		out[i] = Field{Name: "$" + strconv.Itoa(i+1), Value: string(m.line[t.start:t.end])}
	}
	for si, s := range m.p.slots {
		if s.ellipsis || s.name == "" {
			continue
		}
		ti := m.assign[si]
		out[ti].Name = "$" + s.name
	}
	return out
}
