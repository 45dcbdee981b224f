package pattern

import (
	"strings"
	"unicode"
)

func isLetterOrDigit(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// parseText parses an unstructured pattern: terms, "quoted phrases",
// %regex%, each optionally prefixed by - (exclude) or ? (any of).
func (p *Pattern) parseText(i int) error {
	s := p.src
	var terms, opts []txtTerm
	for {
		i = skipSpace(s, i)
		if i >= len(s) {
			break
		}
		neg, opt := false, false
		prefixPos := i
		switch s[i] {
		case '-':
			neg = true
			i = skipSpace(s, i+1)
		case '?':
			opt = true
			i = skipSpace(s, i+1)
		}
		if i >= len(s) {
			return errAt(prefixPos, "'"+s[prefixPos:prefixPos+1]+"' must be followed by a term")
		}
		var t txtTerm
		t.neg = neg
		switch c := s[i]; {
		case c == '"':
			text, end, err := scanQuoted(s, i)
			if err != nil {
				return err
			}
			i = end
			if i < len(s) && !isSpace(s[i]) {
				return errAt(i, "expected space after quoted term")
			}
			if strings.TrimSpace(text) == "" {
				continue // "" and " " match every event
			}
			t.lit = []byte(text)
		case c == '%':
			end := scanRegexEnd(s, i+1)
			if end < 0 {
				return errAt(i, "unterminated regular expression")
			}
			re, err := compileRegex(s[i+1:end], i+1)
			if err != nil {
				return err
			}
			t.re = re
			i = end + 1
			if i < len(s) && !isSpace(s[i]) {
				return errAt(i, "expected space after regular expression")
			}
		default:
			start := i
			for i < len(s) && !isSpace(s[i]) {
				ok, w := isWordRune(s, i)
				if !ok {
					return errAt(i, "terms containing characters other than letters, digits and '_' must be quoted")
				}
				i += w
			}
			t.lit = []byte(s[start:i])
		}
		if opt {
			opts = append(opts, t)
		} else {
			terms = append(terms, t)
		}
	}
	// CloudWatch ignores ?-terms combined with other terms.
	if len(terms) > 0 {
		opts = nil
	}
	p.terms, p.opts = terms, opts
	p.all = len(terms) == 0 && len(opts) == 0
	return nil
}
