package pattern

import (
	"strconv"

	"github.com/les-streams/les/internal/format/jsonscan"
)

type stepKind uint8

const (
	stKey      stepKind = iota // .name or ['name']
	stAnyKey                   // .*
	stIndex                    // [n]
	stAnyIndex                 // [*]
)

// step is one element of a JSON selector path.
type step struct {
	kind stepKind
	key  string
	idx  int
}

// parsePath parses a selector such as $.a.b[0]['c.d'][*] whose text starts
// at byte offset pos of the pattern. It reports whether the path has a
// wildcard; at most one is allowed.
func parsePath(s string, pos int) ([]step, bool, error) {
	if len(s) < 2 || s[0] != '$' || (s[1] != '.' && s[1] != '[') {
		return nil, false, errAt(pos, "JSON selectors start with '$.'")
	}
	var steps []step
	wild := false
	addWild := func(at int) error {
		if wild {
			return errAt(pos+at, "at most one wildcard is allowed per selector")
		}
		wild = true
		return nil
	}
	i := 1
	for i < len(s) {
		switch s[i] {
		case '.':
			i++
			if i < len(s) && s[i] == '[' {
				continue // $.['key']
			}
			if i < len(s) && s[i] == '*' {
				if err := addWild(i); err != nil {
					return nil, false, err
				}
				steps = append(steps, step{kind: stAnyKey})
				i++
				continue
			}
			j := i
			for j < len(s) && isKeyChar(s[j]) {
				j++
			}
			if j == i {
				return nil, false, errAt(pos+i, "expected property name after '.'")
			}
			steps = append(steps, step{kind: stKey, key: s[i:j]})
			i = j
		case '[':
			j := i + 1
			switch {
			case j < len(s) && (s[j] == '\'' || s[j] == '"'):
				q := s[j]
				k := j + 1
				for k < len(s) && s[k] != q {
					k++
				}
				if k+1 >= len(s) || s[k+1] != ']' {
					return nil, false, errAt(pos+i, "malformed quoted property name")
				}
				steps = append(steps, step{kind: stKey, key: s[j+1 : k]})
				i = k + 2
			case j < len(s) && s[j] == '*':
				if j+1 >= len(s) || s[j+1] != ']' {
					return nil, false, errAt(pos+i, "malformed '[*]'")
				}
				if err := addWild(j); err != nil {
					return nil, false, err
				}
				steps = append(steps, step{kind: stAnyIndex})
				i = j + 2
			default:
				k := j
				for k < len(s) && s[k] >= '0' && s[k] <= '9' {
					k++
				}
				if k == j || k >= len(s) || s[k] != ']' {
					return nil, false, errAt(pos+i, "array index must be a non-negative integer or '*'")
				}
				n, err := strconv.Atoi(s[j:k])
				if err != nil {
					return nil, false, errAt(pos+j, "array index out of range")
				}
				steps = append(steps, step{kind: stIndex, idx: n})
				i = k + 1
			}
		default:
			return nil, false, errAt(pos+i, "unexpected character "+quoteByte(s[i])+" in selector")
		}
	}
	if len(steps) == 0 {
		return nil, false, errAt(pos, "selector must name a property")
	}
	return steps, wild, nil
}

// skipValue returns the index after the value starting at b[i] (after
// whitespace), or -1. Strings, numbers and literals are scanned (and
// validated) by jsonscan; objects and arrays are skipped by bracket counting
// only, at any depth, and left to validJSON.
func skipValue(b []byte, i int) int {
	i = jsonscan.SkipSpace(b, i)
	if i >= len(b) {
		return -1
	}
	var ok bool
	switch b[i] {
	case '"':
		_, _, i, ok = jsonscan.ScanString(b, i)
	case '{', '[':
		return skipContainer(b, i)
	case 't':
		i, ok = jsonscan.ScanLiteral(b, i, "true")
	case 'f':
		i, ok = jsonscan.ScanLiteral(b, i, "false")
	case 'n':
		i, ok = jsonscan.ScanLiteral(b, i, "null")
	default:
		i, ok = jsonscan.ScanNumber(b, i)
	}
	if !ok {
		return -1
	}
	return i
}

// skipContainer returns the index after the object or array at b[i], found
// by bracket counting, or -1.
func skipContainer(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		case '"':
			_, _, e, ok := jsonscan.ScanString(b, j)
			if !ok {
				return -1
			}
			j = e - 1
		}
	}
	return -1
}

func (m *Matcher) matchJSON(line []byte) bool {
	i := jsonscan.SkipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return false
	}
	m.bad = false
	if !m.evalJSON(m.p.expr) || m.bad {
		return false
	}
	return m.validJSON(line)
}

func (m *Matcher) evalJSON(e *expr) bool {
	switch e.kind {
	case xAnd:
		for _, k := range e.kids {
			if !m.evalJSON(k) {
				return false
			}
		}
		return true
	case xOr:
		for _, k := range e.kids {
			if m.evalJSON(k) {
				return true
			}
		}
		return false
	}
	lf := &m.p.leaves[e.leaf]
	matched, found := m.walk(m.line, 0, lf.path, lf)
	if lf.test == lNotExists {
		return !found
	}
	return matched
}

// walk resolves path from the value at b[i] and tests each resolved node
// with lf (or captures its position when lf is nil). It reports whether some
// node satisfied the test and whether any node was found; m.bad is set on
// malformed JSON.
func (m *Matcher) walk(b []byte, i int, path []step, lf *leaf) (matched, found bool) {
	i = jsonscan.SkipSpace(b, i)
	if i >= len(b) {
		m.bad = true
		return false, false
	}
	if len(path) == 0 {
		if lf == nil {
			m.capture = i
			return true, true
		}
		return m.testNode(b, i, lf), true
	}
	st := &path[0]
	c := b[i]
	switch {
	case c == '{' && (st.kind == stKey || st.kind == stAnyKey):
	case c == '[' && (st.kind == stIndex || st.kind == stAnyIndex || st.kind == stAnyKey):
	default:
		return false, false // a scalar, or a container the step does not apply to
	}
	closing := c + 2 // '}' or ']'
	i = jsonscan.SkipSpace(b, i+1)
	if i < len(b) && b[i] == closing {
		return false, false
	}
	for n := 0; ; n++ {
		var hit bool
		if c == '{' {
			i = jsonscan.SkipSpace(b, i)
			key, esc, ke, ok := jsonscan.ScanString(b, i)
			if !ok {
				m.bad = true
				return false, found
			}
			i = jsonscan.SkipSpace(b, ke)
			if i >= len(b) || b[i] != ':' {
				m.bad = true
				return false, found
			}
			i++
			hit = st.kind == stAnyKey || m.keyEq(key, esc, st.key)
		} else {
			hit = st.kind != stIndex || n == st.idx
		}
		if hit {
			mt, f := m.walk(b, i, path[1:], lf)
			if m.bad || mt {
				return mt, f || found
			}
			found = found || f
			if st.kind == stKey || st.kind == stIndex {
				return false, found // first occurrence of a key wins
			}
		}
		if i = skipValue(b, i); i < 0 {
			m.bad = true
			return false, found
		}
		i = jsonscan.SkipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == closing {
			return false, found
		}
		m.bad = true
		return false, found
	}
}

func (m *Matcher) keyEq(raw []byte, esc bool, key string) bool {
	if !esc {
		return string(raw) == key
	}
	m.kbuf = jsonscan.Unescape(m.kbuf[:0], raw)
	return string(m.kbuf) == key
}

// scalar returns the text of the scalar at b[i]: a string's unescaped
// content (in m.sbuf when escaped) or a literal's text. kind is the first
// byte of the node; ok is false for objects, arrays and malformed values.
func (m *Matcher) scalar(b []byte, i int) (text []byte, kind byte, ok bool) {
	switch c := b[i]; c {
	case '"':
		raw, esc, _, ok := jsonscan.ScanString(b, i)
		if !ok {
			m.bad = true
			return nil, c, false
		}
		if !esc {
			return raw, c, true
		}
		m.sbuf = jsonscan.Unescape(m.sbuf[:0], raw)
		return m.sbuf, c, true
	case '{', '[':
		return nil, c, false
	default:
		e := skipValue(b, i)
		if e < 0 {
			m.bad = true
			return nil, c, false
		}
		return b[i:e], c, true
	}
}

func (m *Matcher) testNode(b []byte, i int, lf *leaf) bool {
	text, kind, ok := m.scalar(b, i)
	if !ok {
		return false // objects and arrays are not value nodes
	}
	switch lf.test {
	case lNull:
		return kind == 'n' && string(text) == "null"
	case lTrue:
		return kind == 't' && string(text) == "true"
	case lFalse:
		return kind == 'f' && string(text) == "false"
	}
	return lf.v.matchText(text)
}

// validJSON reports whether line is exactly one well-formed JSON object
// (with optional surrounding whitespace). Unlike jsonscan.Valid it has no
// depth limit: nesting is tracked on m.stack.
func (m *Matcher) validJSON(b []byte) bool {
	st := m.stack[:0]
	defer func() { m.stack = st[:0] }()
	i := jsonscan.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	// States: expect value, after value.
	expectValue := true
	for {
		i = jsonscan.SkipSpace(b, i)
		if i >= len(b) {
			return false
		}
		c := b[i]
		if expectValue {
			if c == '{' || c == '[' {
				st = append(st, c)
				i = jsonscan.SkipSpace(b, i+1)
				if i < len(b) && (c == '{' && b[i] == '}' || c == '[' && b[i] == ']') {
					st = st[:len(st)-1]
					i++
					expectValue = false
					if len(st) == 0 {
						return jsonscan.SkipSpace(b, i) == len(b)
					}
				} else if c == '{' {
					if i = validKey(b, i); i < 0 {
						return false
					}
				}
				continue
			}
			// A scalar: skipValue validates strings, numbers and literals.
			if i = skipValue(b, i); i < 0 {
				return false
			}
			expectValue = false
			continue
		}
		// After a value inside a container.
		top := st[len(st)-1]
		switch {
		case c == ',':
			i++
			if top == '{' {
				if i = validKey(b, jsonscan.SkipSpace(b, i)); i < 0 {
					return false
				}
			}
			expectValue = true
		case c == '}' && top == '{' || c == ']' && top == '[':
			st = st[:len(st)-1]
			i++
			if len(st) == 0 {
				return jsonscan.SkipSpace(b, i) == len(b)
			}
		default:
			return false
		}
	}
}

// validKey checks `"key" :` at b[i] and returns the index after the colon.
func validKey(b []byte, i int) int {
	_, _, e, ok := jsonscan.ScanString(b, i)
	if !ok {
		return -1
	}
	i = jsonscan.SkipSpace(b, e)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return i + 1
}
