package pattern

import (
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tBare
	tString
	tRegex
	tSelector
	tOp
	tAnd
	tOr
	tLParen
	tRParen
	tComma
	tRBrack
	tRBrace
	tEllipsis
)

var tokNames = [...]string{tEOF: "end of pattern", tBare: "value", tString: "quoted string", tRegex: "regular expression",
	tSelector: "selector", tOp: "operator", tAnd: "'&&'", tOr: "'||'", tLParen: "'('", tRParen: "')'",
	tComma: "','", tRBrack: "']'", tRBrace: "'}'", tEllipsis: "'...'"}

type token struct {
	kind tokKind
	pos  int
	text string // bare text, unquoted string, regex body, selector source
	op   cmpOp
}

func (t token) describe() string {
	switch t.kind {
	case tBare, tSelector:
		return "'" + t.text + "'"
	}
	return tokNames[t.kind]
}

// lexer tokenises the inside of a JSON or space-delimited pattern.
type lexer struct {
	src  string
	pos  int
	peek *token
}

// isBare reports whether c may appear in an unquoted value or field name.
func isBare(c byte) bool {
	return isAlnum(c) || strings.IndexByte("_.*-+/:", c) >= 0
}

func (l *lexer) next() (token, error) {
	if l.peek != nil {
		t := *l.peek
		l.peek = nil
		return t, nil
	}
	return l.scan()
}

func (l *lexer) lookahead() (token, error) {
	if l.peek == nil {
		t, err := l.scan()
		if err != nil {
			return t, err
		}
		l.peek = &t
	}
	return *l.peek, nil
}

func (l *lexer) scan() (token, error) {
	s := l.src
	i := skipSpace(s, l.pos)
	l.pos = i
	if i >= len(s) {
		return token{kind: tEOF, pos: i}, nil
	}
	c := s[i]
	two := ""
	if i+1 < len(s) {
		two = s[i : i+2]
	}
	switch {
	case two == "&&":
		l.pos += 2
		return token{kind: tAnd, pos: i}, nil
	case two == "||":
		l.pos += 2
		return token{kind: tOr, pos: i}, nil
	case two == "!=":
		l.pos += 2
		return token{kind: tOp, pos: i, op: opNe}, nil
	case two == "<=":
		l.pos += 2
		return token{kind: tOp, pos: i, op: opLe}, nil
	case two == ">=":
		l.pos += 2
		return token{kind: tOp, pos: i, op: opGe}, nil
	case c == '=':
		l.pos++
		return token{kind: tOp, pos: i, op: opEq}, nil
	case c == '<':
		l.pos++
		return token{kind: tOp, pos: i, op: opLt}, nil
	case c == '>':
		l.pos++
		return token{kind: tOp, pos: i, op: opGt}, nil
	case c == '(':
		l.pos++
		return token{kind: tLParen, pos: i}, nil
	case c == ')':
		l.pos++
		return token{kind: tRParen, pos: i}, nil
	case c == ',':
		l.pos++
		return token{kind: tComma, pos: i}, nil
	case c == ']':
		l.pos++
		return token{kind: tRBrack, pos: i}, nil
	case c == '}':
		l.pos++
		return token{kind: tRBrace, pos: i}, nil
	case c == '"':
		text, end, err := scanQuoted(s, i)
		if err != nil {
			return token{}, err
		}
		l.pos = end
		return token{kind: tString, pos: i, text: text}, nil
	case c == '%':
		end := scanRegexEnd(s, i+1)
		if end < 0 {
			return token{}, errAt(i, "unterminated regular expression")
		}
		l.pos = end + 1
		return token{kind: tRegex, pos: i, text: s[i+1 : end]}, nil
	case c == '$':
		end, err := scanSelector(s, i)
		if err != nil {
			return token{}, err
		}
		l.pos = end
		return token{kind: tSelector, pos: i, text: s[i:end]}, nil
	case isBare(c):
		j := i
		for j < len(s) && isBare(s[j]) {
			j++
		}
		l.pos = j
		if s[i:j] == "..." {
			return token{kind: tEllipsis, pos: i}, nil
		}
		return token{kind: tBare, pos: i, text: s[i:j]}, nil
	case c >= 0x80:
		return token{}, errAt(i, "values with non-ASCII characters must be quoted")
	}
	return token{}, errAt(i, "unexpected character "+quoteByte(c)+" (values with special characters must be quoted)")
}

// scanQuoted reads a double-quoted string starting at s[i] == '"'. Inside,
// \" and \\ are escapes; other backslashes are literal.
func scanQuoted(s string, i int) (text string, end int, err error) {
	j := i + 1
	esc := false
	for j < len(s) {
		switch s[j] {
		case '\\':
			if j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
				esc = true
				j += 2
				continue
			}
		case '"':
			text = s[i+1 : j]
			if esc {
				var b strings.Builder
				for k := 0; k < len(text); k++ {
					if text[k] == '\\' && k+1 < len(text) && (text[k+1] == '"' || text[k+1] == '\\') {
						k++
					}
					b.WriteByte(text[k])
				}
				text = b.String()
			}
			return text, j + 1, nil
		}
		j++
	}
	return "", 0, errAt(i, "unterminated quoted string")
}

// scanRegexEnd returns the index of the '%' closing a regex whose body
// starts at i, honouring \% as an escaped percent sign, or -1.
func scanRegexEnd(s string, i int) int {
	for j := i; j < len(s); j++ {
		if s[j] == '\\' {
			j++
			continue
		}
		if s[j] == '%' {
			return j
		}
	}
	return -1
}

// scanSelector returns the end of a selector token starting with '$':
// $name, $N, or a JSON path $.a.b[0]['c.d'][*].
func scanSelector(s string, i int) (int, error) {
	j := i + 1
	if j < len(s) && s[j] != '.' && s[j] != '[' {
		for j < len(s) && (isAlnum(s[j]) || s[j] == '_') {
			j++
		}
		if j == i+1 {
			return 0, errAt(i, "'$' must be followed by a field name, position or JSON path")
		}
		return j, nil
	}
	for j < len(s) {
		switch s[j] {
		case '.':
			j++
			if j < len(s) && (s[j] == '*' || s[j] == '[') {
				if s[j] == '*' {
					j++
				}
				continue
			}
			k := j
			for j < len(s) && isKeyChar(s[j]) {
				j++
			}
			if j == k {
				return 0, errAt(j, "expected property name after '.'")
			}
		case '[':
			k := j + 1
			if k < len(s) && (s[k] == '\'' || s[k] == '"') {
				q := s[k]
				e := strings.IndexByte(s[k+1:], q)
				if e < 0 {
					return 0, errAt(k, "unterminated quoted property name")
				}
				k += 1 + e + 1
			} else {
				for k < len(s) && (s[k] >= '0' && s[k] <= '9' || s[k] == '*') {
					k++
				}
			}
			if k >= len(s) || s[k] != ']' {
				return 0, errAt(j, "expected array index, '*' or quoted property name in '[...]'")
			}
			j = k + 1
		default:
			return j, nil
		}
	}
	return j, nil
}

func isKeyChar(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

// isWordRune reports whether the UTF-8 sequence at s[i] is a letter, digit
// or underscore, returning its width.
func isWordRune(s string, i int) (bool, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return isAlnum(c) || c == '_', 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return r != utf8.RuneError && (isLetterOrDigit(r)), w
}
