package pattern

import (
	"strconv"
)

type selKind uint8

const (
	selLiteral selKind = iota // a number such as 1 or 2.5
	selNamed                  // $name (space-delimited)
	selPos                    // $N (space-delimited, 1-based)
	selPath                   // $.path (JSON)
)

// Selector is a compiled metric value or dimension reference: a literal
// number, "$name", "$N" or "$.path". The zero Selector is the literal 0.
type Selector struct {
	src  string
	kind selKind
	num  float64
	name string
	pos  int
	path []step
}

// String returns the selector's source text.
func (s Selector) String() string { return s.src }

// IsLiteral reports whether s is a literal number rather than a reference.
func (s Selector) IsLiteral() bool { return s.kind == selLiteral }

// CompileSelector parses a metric value or dimension selector. Errors are
// *SyntaxError with positions relative to s.
func CompileSelector(s string) (Selector, error) {
	if s == "" {
		return Selector{}, errAt(0, "empty selector")
	}
	if s[0] != '$' {
		if !isNumber([]byte(s)) {
			return Selector{}, errAt(0, "selector must be a number, $field, $N or $.path")
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Selector{}, errAt(0, "number out of range")
		}
		return Selector{src: s, kind: selLiteral, num: f}, nil
	}
	if len(s) > 1 && (s[1] == '.' || s[1] == '[') {
		path, _, err := parsePath(s, 0)
		if err != nil {
			return Selector{}, err
		}
		return Selector{src: s, kind: selPath, path: path}, nil
	}
	name := s[1:]
	if !validName(name) {
		return Selector{}, errAt(1, "field names may contain only letters, digits and '_'")
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n < 1 {
			return Selector{}, errAt(1, "field positions start at 1")
		}
		return Selector{src: s, kind: selPos, pos: n}, nil
	}
	return Selector{src: s, kind: selNamed, name: name}, nil
}

// resolve returns the text the selector refers to in the last matched line,
// valid until the next Match. For JSON, strings are unescaped and numbers
// and booleans are their literal text; null, objects and arrays are absent.
func (m *Matcher) resolve(s *Selector) ([]byte, bool) {
	if !m.matched {
		return nil, false
	}
	switch s.kind {
	case selNamed:
		if m.p.kind != SpaceDelimited {
			return nil, false
		}
		for si := range m.p.slots {
			if m.p.slots[si].name == s.name {
				t := m.toks[m.assign[si]]
				return m.line[t.start:t.end], true
			}
		}
	case selPos:
		if m.p.kind != SpaceDelimited || s.pos > len(m.toks) {
			return nil, false
		}
		t := m.toks[s.pos-1]
		return m.line[t.start:t.end], true
	case selPath:
		if m.p.kind != JSON {
			return nil, false
		}
		m.bad = false
		if ok, _ := m.walk(m.line, 0, s.path, nil); !ok || m.bad {
			return nil, false
		}
		text, kind, ok := m.scalar(m.line, m.capture)
		if !ok || kind == 'n' {
			return nil, false
		}
		return text, true
	}
	return nil, false
}

// Resolve returns the value s refers to in the last matched line, as a new
// string: the literal for a number, the field's text, or the JSON value.
// ok is false when the last Match failed or the value is absent.
func (m *Matcher) Resolve(s Selector) (string, bool) {
	if s.kind == selLiteral {
		return s.src, true
	}
	b, ok := m.resolve(&s)
	if !ok {
		return "", false
	}
	return string(b), true
}

// ResolveFloat is Resolve for metric values: ok is false when the value is
// absent or not a decimal number. It does not allocate.
func (m *Matcher) ResolveFloat(s Selector) (float64, bool) {
	if s.kind == selLiteral {
		return s.num, true
	}
	b, ok := m.resolve(&s)
	if !ok {
		return 0, false
	}
	return parseNumber(b)
}

// Value compiles sel and resolves it as a number after a successful Match;
// ok is false if sel is invalid, absent or non-numeric. Prefer
// CompileSelector and ResolveFloat on hot paths.
func (m *Matcher) Value(sel string) (float64, bool) {
	s, err := CompileSelector(sel)
	if err != nil {
		return 0, false
	}
	return m.ResolveFloat(s)
}
