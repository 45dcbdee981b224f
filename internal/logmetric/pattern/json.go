package pattern

import (
	"bytes"
	"strconv"
	"unicode/utf8"
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

func jsonWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index after the closing quote of the string that
// starts at b[i] == '"' and whether it contains escapes, or -1.
func scanString(b []byte, i int) (int, bool) {
	esc := false
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1, esc
		}
		q := j + k
		if !esc && bytes.IndexByte(b[j:q], '\\') >= 0 {
			esc = true
		}
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, esc
		}
		j = q + 1
	}
}

// skipValue returns the index after the value starting at b[i] (after
// whitespace), or -1. It checks only structure; validate checks the rest.
func skipValue(b []byte, i int) int {
	i = jsonWS(b, i)
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		e, _ := scanString(b, i)
		return e
	case '{', '[':
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
				e, _ := scanString(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

func (m *Matcher) matchJSON(line []byte) bool {
	i := jsonWS(line, 0)
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
	i = jsonWS(b, i)
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
	switch b[i] {
	case '{':
		if st.kind != stKey && st.kind != stAnyKey {
			return false, false
		}
		i = jsonWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return false, false
		}
		for {
			i = jsonWS(b, i)
			if i >= len(b) || b[i] != '"' {
				m.bad = true
				return false, found
			}
			ke, esc := scanString(b, i)
			if ke < 0 {
				m.bad = true
				return false, found
			}
			key := b[i+1 : ke-1]
			i = jsonWS(b, ke)
			if i >= len(b) || b[i] != ':' {
				m.bad = true
				return false, found
			}
			i++
			if st.kind == stAnyKey || m.keyEq(key, esc, st.key) {
				mt, f := m.walk(b, i, path[1:], lf)
				if m.bad || mt {
					return mt, f || found
				}
				found = found || f
				if st.kind == stKey {
					return false, found // first occurrence of a key wins
				}
			}
			if i = skipValue(b, i); i < 0 {
				m.bad = true
				return false, found
			}
			i = jsonWS(b, i)
			if i < len(b) && b[i] == ',' {
				i++
				continue
			}
			if i < len(b) && b[i] == '}' {
				return false, found
			}
			m.bad = true
			return false, found
		}
	case '[':
		if st.kind != stIndex && st.kind != stAnyIndex && st.kind != stAnyKey {
			return false, false
		}
		i = jsonWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return false, false
		}
		for n := 0; ; n++ {
			if st.kind != stIndex || n == st.idx {
				mt, f := m.walk(b, i, path[1:], lf)
				if m.bad || mt {
					return mt, f || found
				}
				found = found || f
				if st.kind == stIndex {
					return false, found
				}
			}
			if i = skipValue(b, i); i < 0 {
				m.bad = true
				return false, found
			}
			i = jsonWS(b, i)
			if i < len(b) && b[i] == ',' {
				i++
				continue
			}
			if i < len(b) && b[i] == ']' {
				return false, found
			}
			m.bad = true
			return false, found
		}
	}
	return false, false
}

func (m *Matcher) keyEq(raw []byte, esc bool, key string) bool {
	if !esc {
		return string(raw) == key
	}
	var ok bool
	m.kbuf, ok = unescape(m.kbuf[:0], raw)
	return ok && string(m.kbuf) == key
}

// scalar returns the text of the scalar at b[i]: a string's unescaped
// content (in m.sbuf when escaped) or a literal's text. kind is the first
// byte of the node; ok is false for objects, arrays and malformed values.
func (m *Matcher) scalar(b []byte, i int) (text []byte, kind byte, ok bool) {
	switch c := b[i]; c {
	case '"':
		e, esc := scanString(b, i)
		if e < 0 {
			m.bad = true
			return nil, c, false
		}
		raw := b[i+1 : e-1]
		if !esc {
			return raw, c, true
		}
		m.sbuf, ok = unescape(m.sbuf[:0], raw)
		if !ok {
			m.bad = true
		}
		return m.sbuf, c, ok
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

// unescape appends the decoded JSON string content raw to dst.
func unescape(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(raw) {
			return dst, false
		}
		switch raw[i] {
		case '"', '\\', '/':
			dst = append(dst, raw[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw, i+1)
			if !ok {
				return dst, false
			}
			i += 4
			if r >= 0xD800 && r < 0xDC00 && i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				if r2, ok := hex4(raw, i+3); ok && r2 >= 0xDC00 && r2 < 0xE000 {
					r = (r-0xD800)<<10 + (r2 - 0xDC00) + 0x10000
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// validJSON reports whether line is exactly one well-formed JSON object
// (with optional surrounding whitespace).
func (m *Matcher) validJSON(b []byte) bool {
	st := m.stack[:0]
	defer func() { m.stack = st[:0] }()
	i := jsonWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	// States: expect value, after value.
	expectValue := true
	for {
		i = jsonWS(b, i)
		if i >= len(b) {
			return false
		}
		c := b[i]
		if expectValue {
			switch {
			case c == '{' || c == '[':
				st = append(st, c)
				i = jsonWS(b, i+1)
				if i < len(b) && (c == '{' && b[i] == '}' || c == '[' && b[i] == ']') {
					st = st[:len(st)-1]
					i++
					expectValue = false
					break
				}
				if c == '{' {
					if i = m.validKey(b, i); i < 0 {
						return false
					}
				}
				continue
			case c == '"':
				e, esc := scanString(b, i)
				if e < 0 || !validStringBody(b[i+1:e-1], esc) {
					return false
				}
				i = e
			case c == 't':
				if !hasLit(b, i, "true") {
					return false
				}
				i += 4
			case c == 'f':
				if !hasLit(b, i, "false") {
					return false
				}
				i += 5
			case c == 'n':
				if !hasLit(b, i, "null") {
					return false
				}
				i += 4
			default:
				e := skipValue(b, i)
				if e < 0 || !validJSONNumber(b[i:e]) {
					return false
				}
				i = e
			}
			expectValue = false
			if len(st) == 0 {
				return jsonWS(b, i) == len(b)
			}
			continue
		}
		// After a value inside a container.
		if len(st) == 0 {
			return jsonWS(b, i) == len(b)
		}
		top := st[len(st)-1]
		switch {
		case c == ',':
			i++
			if top == '{' {
				if i = m.validKey(b, jsonWS(b, i)); i < 0 {
					return false
				}
			}
			expectValue = true
		case c == '}' && top == '{' || c == ']' && top == '[':
			st = st[:len(st)-1]
			i++
			if len(st) == 0 {
				return jsonWS(b, i) == len(b)
			}
		default:
			return false
		}
	}
}

// validKey checks `"key" :` at b[i] and returns the index after the colon.
func (m *Matcher) validKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	e, esc := scanString(b, i)
	if e < 0 || !validStringBody(b[i+1:e-1], esc) {
		return -1
	}
	i = jsonWS(b, e)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return i + 1
}

func hasLit(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

func validStringBody(raw []byte, esc bool) bool {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c < 0x20 {
			return false
		}
		if c == '\\' {
			i++
			if i >= len(raw) {
				return false
			}
			switch raw[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if _, ok := hex4(raw, i+1); !ok {
					return false
				}
				i += 4
			default:
				return false
			}
		}
	}
	return true
}

func validJSONNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return false
	}
	if b[i] == '0' {
		i++
	} else if b[i] >= '1' && b[i] <= '9' {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	} else {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	return i == len(b)
}
