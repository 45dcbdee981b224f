package pattern

import "bytes"

// splitFields splits line into space-delimited fields. Text between double
// quotes or square brackets is one field whose value excludes the quotes or
// brackets. Runs of spaces separate fields; there are no empty fields.
func splitFields(dst []span, line []byte) []span {
	n := len(line)
	i := 0
	for {
		for i < n && line[i] == ' ' {
			i++
		}
		if i >= n {
			return dst
		}
		switch line[i] {
		case '"':
			j := i + 1
			for j < n && line[j] != '"' {
				if line[j] == '\\' && j+1 < n {
					j++
				}
				j++
			}
			if j > n {
				j = n
			}
			dst = append(dst, span{int32(i + 1), int32(j)})
			i = j + 1
		case '[':
			j := bytes.IndexByte(line[i+1:], ']')
			if j < 0 {
				j = n
			} else {
				j += i + 1
			}
			dst = append(dst, span{int32(i + 1), int32(j)})
			i = j + 1
		default:
			j := bytes.IndexByte(line[i:], ' ')
			if j < 0 {
				j = n
			} else {
				j += i
			}
			dst = append(dst, span{int32(i), int32(j)})
			i = j
		}
	}
}

func (m *Matcher) matchDelimited(line []byte) bool {
	m.toks = splitFields(m.toks[:0], line)
	p := m.p
	if !p.hasEllipsis && len(m.toks) != len(p.slots) {
		return false
	}
	if len(m.toks) < p.fixedSuffix[0] {
		return false
	}
	return m.place(0, 0)
}

// place assigns fields to slots[si:] starting at field ti, backtracking
// over ellipses.
func (m *Matcher) place(si, ti int) bool {
	p := m.p
	n := len(m.toks)
	for si < len(p.slots) {
		s := &p.slots[si]
		if s.ellipsis {
			last := n - p.fixedSuffix[si+1]
			if last < ti {
				return false
			}
			if !p.ellipsisFrom[si+1] {
				si, ti = si+1, last // nothing to search: jump to the fixed tail
				continue
			}
			for t := ti; t <= last; t++ {
				if m.place(si+1, t) {
					return true
				}
			}
			return false
		}
		if ti >= n {
			return false
		}
		m.assign[si] = ti
		if s.local && !m.evalDelim(s.cond) {
			return false
		}
		si++
		ti++
	}
	if ti != n {
		return false
	}
	for _, gi := range p.global {
		if !m.evalDelim(p.slots[gi].cond) {
			return false
		}
	}
	return true
}

func (m *Matcher) evalDelim(e *expr) bool {
	switch e.kind {
	case xAnd:
		for _, k := range e.kids {
			if !m.evalDelim(k) {
				return false
			}
		}
		return true
	case xOr:
		for _, k := range e.kids {
			if m.evalDelim(k) {
				return true
			}
		}
		return false
	}
	lf := &m.p.leaves[e.leaf]
	if lf.test == lExists {
		return true
	}
	t := m.toks[m.assign[lf.slot]]
	return lf.v.matchText(m.line[t.start:t.end])
}
