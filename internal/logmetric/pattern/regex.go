package pattern

import (
	"regexp"
	"strings"
)

// compileRegex translates the body of a CloudWatch %regex% (between the
// percent signs, starting at byte offset pos of the pattern) into a Go
// regexp. CloudWatch allows alphanumerics, the symbols : _ # = @ / ; , -
// and space, the operators ^ $ ? [ ] { } | \ * + ., the escapes \d \D \s \S
// \w \W \xhh and escaped punctuation. Parentheses and multi-byte characters
// are rejected.
func compileRegex(body string, pos int) (*regexp.Regexp, error) {
	if body == "" {
		return nil, errAt(pos, "empty regular expression")
	}
	var b strings.Builder
	b.Grow(len(body) + 8)
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 0x80:
			return nil, errAt(pos+i, "multi-byte characters are not supported in regular expressions")
		case isAlnum(c):
			b.WriteByte(c)
		case strings.IndexByte(":_#=@/;,- ", c) >= 0:
			b.WriteByte(c)
		case strings.IndexByte("^$?[]}|*+.", c) >= 0:
			b.WriteByte(c)
		case c == '{':
			// {,n} means {0,n}; Go would read it as a literal.
			if i+1 < len(body) && body[i+1] == ',' {
				b.WriteString("{0")
			} else {
				b.WriteByte(c)
			}
		case c == '\\':
			if i+1 >= len(body) {
				return nil, errAt(pos+i, "trailing backslash in regular expression")
			}
			e := body[i+1]
			switch {
			case strings.IndexByte("dDsSwW", e) >= 0:
				b.WriteByte('\\')
				b.WriteByte(e)
				i++
			case e == 'x':
				if !isHex(body, i+2) || !isHex(body, i+3) {
					return nil, errAt(pos+i, `\x must be followed by two hexadecimal digits`)
				}
				b.WriteString(body[i : i+4])
				i += 3
			case e < 0x80 && !isAlnum(e) && e != ' ':
				b.WriteByte('\\')
				b.WriteByte(e)
				i++
			default:
				return nil, errAt(pos+i, `unsupported escape \`+string(rune(e))+` in regular expression`)
			}
		case c == '(' || c == ')':
			return nil, errAt(pos+i, "parentheses are not supported in regular expressions")
		default:
			return nil, errAt(pos+i, "character "+quoteByte(c)+" is not supported in regular expressions")
		}
	}
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, errAt(pos, "invalid regular expression: "+err.Error())
	}
	return re, nil
}

func isHex(s string, i int) bool {
	if i >= len(s) {
		return false
	}
	c := s[i]
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func quoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return "0x" + string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])
	}
	return "'" + string(rune(c)) + "'"
}
