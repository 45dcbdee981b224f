package pattern

import (
	"strconv"
)

type exprKind uint8

const (
	xLeaf exprKind = iota
	xAnd
	xOr
)

// expr is a boolean combination of leaf conditions.
type expr struct {
	kind exprKind
	leaf int
	kids []*expr
}

type leafTest uint8

const (
	lCmp       leafTest = iota // compare with v
	lExists                    // bare field name in a space-delimited slot: always true
	lNull                      // IS NULL
	lTrue                      // IS TRUE
	lFalse                     // IS FALSE
	lNotExists                 // NOT EXISTS
)

// leaf is one condition of a space-delimited or JSON pattern.
type leaf struct {
	test leafTest
	v    valueCond

	// space-delimited
	name    string
	namePos int
	slot    int

	// JSON
	path []step
}

// parser builds expressions for JSON and space-delimited patterns.
type parser struct {
	p       *Pattern
	lx      lexer
	regexes int
	wilds   int
	json    bool
	first   string // first field name seen in the current slot
	firstAt int
}

func (ps *parser) parseOr() (*expr, error) {
	return ps.parseChain(tOr, xOr, ps.parseAnd)
}

func (ps *parser) parseAnd() (*expr, error) {
	return ps.parseChain(tAnd, xAnd, ps.parseUnary)
}

// parseChain parses operand (op operand)* into one n-ary node of kind.
func (ps *parser) parseChain(op tokKind, kind exprKind, operand func() (*expr, error)) (*expr, error) {
	l, err := operand()
	if err != nil {
		return nil, err
	}
	for {
		t, err := ps.lx.lookahead()
		if err != nil {
			return nil, err
		}
		if t.kind != op {
			return l, nil
		}
		ps.lx.next()
		r, err := operand()
		if err != nil {
			return nil, err
		}
		if l.kind == kind {
			l.kids = append(l.kids, r)
		} else {
			l = &expr{kind: kind, kids: []*expr{l, r}}
		}
	}
}

func (ps *parser) parseUnary() (*expr, error) {
	t, err := ps.lx.next()
	if err != nil {
		return nil, err
	}
	if t.kind == tLParen {
		e, err := ps.parseOr()
		if err != nil {
			return nil, err
		}
		c, err := ps.lx.next()
		if err != nil {
			return nil, err
		}
		if c.kind != tRParen {
			return nil, errAt(c.pos, "expected ')' to close '(' at position "+strconv.Itoa(t.pos)+", found "+c.describe())
		}
		return e, nil
	}
	var lf leaf
	if ps.json {
		lf, err = ps.jsonLeaf(t)
	} else {
		lf, err = ps.delimLeaf(t)
	}
	if err != nil {
		return nil, err
	}
	ps.p.leaves = append(ps.p.leaves, lf)
	return &expr{kind: xLeaf, leaf: len(ps.p.leaves) - 1}, nil
}

// value parses the right-hand side of a comparison.
func (ps *parser) value(op token) (valueCond, error) {
	t, err := ps.lx.next()
	if err != nil {
		return valueCond{}, err
	}
	relational := op.op != opEq && op.op != opNe
	switch t.kind {
	case tString:
		if relational {
			return valueCond{}, errAt(t.pos, "operators <, <=, >, >= need a number")
		}
		return newStrCond(op.op, t.text), nil
	case tRegex:
		if relational {
			return valueCond{}, errAt(t.pos, "operators <, <=, >, >= need a number")
		}
		ps.regexes++
		if ps.regexes > 2 {
			return valueCond{}, errAt(t.pos, "at most 2 regular expressions are allowed in a JSON or space-delimited pattern")
		}
		re, err := compileRegex(t.text, t.pos+1)
		if err != nil {
			return valueCond{}, err
		}
		return valueCond{op: op.op, kind: vkRegex, re: re}, nil
	case tBare:
		if isNumber([]byte(t.text)) {
			f, err := strconv.ParseFloat(t.text, 64)
			if err != nil {
				return valueCond{}, errAt(t.pos, "number out of range")
			}
			return valueCond{op: op.op, kind: vkNum, num: f, lit: []byte(t.text)}, nil
		}
		if relational {
			return valueCond{}, errAt(t.pos, "operators <, <=, >, >= need a number, found '"+t.text+"'")
		}
		return newStrCond(op.op, t.text), nil
	}
	return valueCond{}, errAt(t.pos, "expected a value after "+opName(op.op)+", found "+t.describe())
}

func opName(o cmpOp) string {
	return [...]string{"'='", "'!='", "'<'", "'<='", "'>'", "'>='"}[o]
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '_' {
			return false
		}
	}
	return true
}

func (ps *parser) delimLeaf(t token) (leaf, error) {
	if t.kind != tBare {
		return leaf{}, errAt(t.pos, "expected a field name, found "+t.describe())
	}
	if !validName(t.text) {
		return leaf{}, errAt(t.pos, "field names may contain only letters, digits and '_': '"+t.text+"'")
	}
	if ps.first == "" {
		ps.first, ps.firstAt = t.text, t.pos
	}
	lf := leaf{name: t.text, namePos: t.pos, test: lExists}
	op, err := ps.lx.lookahead()
	if err != nil {
		return leaf{}, err
	}
	if op.kind != tOp {
		return lf, nil
	}
	ps.lx.next()
	lf.test = lCmp
	lf.v, err = ps.value(op)
	return lf, err
}

func (ps *parser) jsonLeaf(t token) (leaf, error) {
	if t.kind != tSelector || len(t.text) < 2 || (t.text[1] != '.' && t.text[1] != '[') {
		return leaf{}, errAt(t.pos, "expected a JSON selector starting with '$.', found "+t.describe())
	}
	path, wild, err := parsePath(t.text, t.pos)
	if err != nil {
		return leaf{}, err
	}
	if wild {
		ps.wilds++
		if ps.wilds > 3 {
			return leaf{}, errAt(t.pos, "at most 3 selectors with wildcards are allowed in a pattern")
		}
	}
	lf := leaf{path: path}
	op, err := ps.lx.next()
	if err != nil {
		return leaf{}, err
	}
	switch {
	case op.kind == tOp:
		lf.test = lCmp
		lf.v, err = ps.value(op)
		return lf, err
	case op.kind == tBare && op.text == "IS":
		w, err := ps.lx.next()
		if err != nil {
			return leaf{}, err
		}
		switch {
		case w.kind == tBare && w.text == "NULL":
			lf.test = lNull
		case w.kind == tBare && w.text == "TRUE":
			lf.test = lTrue
		case w.kind == tBare && w.text == "FALSE":
			lf.test = lFalse
		case w.kind == tBare && w.text == "NOT":
			return leaf{}, errAt(w.pos, "IS NOT is not supported")
		default:
			return leaf{}, errAt(w.pos, "expected NULL, TRUE or FALSE after IS, found "+w.describe())
		}
		return lf, nil
	case op.kind == tBare && op.text == "NOT":
		w, err := ps.lx.next()
		if err != nil {
			return leaf{}, err
		}
		if w.kind != tBare || w.text != "EXISTS" {
			return leaf{}, errAt(w.pos, "expected EXISTS after NOT, found "+w.describe())
		}
		lf.test = lNotExists
		return lf, nil
	case op.kind == tBare && op.text == "EXISTS":
		return leaf{}, errAt(op.pos, "EXISTS is not supported (only NOT EXISTS)")
	}
	return leaf{}, errAt(op.pos, "expected an operator, IS or NOT EXISTS after selector, found "+op.describe())
}

// parseJSON parses `{ expr }` starting at src[i] == '{'.
func (p *Pattern) parseJSON(i int) error {
	ps := &parser{p: p, json: true, lx: lexer{src: p.src, pos: i + 1}}
	t, err := ps.lx.lookahead()
	if err != nil {
		return err
	}
	if t.kind == tRBrace {
		return errAt(t.pos, "empty JSON pattern")
	}
	e, err := ps.parseOr()
	if err != nil {
		return err
	}
	t, err = ps.lx.next()
	if err != nil {
		return err
	}
	if t.kind != tRBrace {
		return errAt(t.pos, "expected '&&', '||' or '}', found "+t.describe())
	}
	if j := skipSpace(p.src, ps.lx.pos); j < len(p.src) {
		return errAt(j, "unexpected text after '}'")
	}
	p.expr = e
	return nil
}

// slot is one comma-separated element of a space-delimited pattern.
type slot struct {
	name     string
	ellipsis bool
	cond     *expr
	local    bool // cond reads only this slot
}

// parseDelimited parses `[slot, slot, ...]` starting at src[i] == '['.
func (p *Pattern) parseDelimited(i int) error {
	ps := &parser{p: p, lx: lexer{src: p.src, pos: i + 1}}
	for {
		t, err := ps.lx.lookahead()
		if err != nil {
			return err
		}
		var s slot
		switch t.kind {
		case tRBrack:
			if len(p.slots) == 0 {
				return errAt(t.pos, "empty space-delimited pattern")
			}
			// A trailing comma leaves an unnamed field.
		case tComma:
			// Unnamed field.
		case tEllipsis:
			ps.lx.next()
			s.ellipsis = true
			p.hasEllipsis = true
		case tEOF:
			return errAt(t.pos, "expected ']' to close '[' at position "+strconv.Itoa(i))
		default:
			ps.first = ""
			e, err := ps.parseOr()
			if err != nil {
				return err
			}
			s.name = ps.first
			if e.kind != xLeaf || p.leaves[e.leaf].test != lExists {
				s.cond = e
			}
		}
		p.slots = append(p.slots, s)
		t, err = ps.lx.next()
		if err != nil {
			return err
		}
		if t.kind == tRBrack {
			break
		}
		if t.kind != tComma {
			return errAt(t.pos, "expected ',' or ']', found "+t.describe())
		}
	}
	if j := skipSpace(p.src, ps.lx.pos); j < len(p.src) {
		return errAt(j, "unexpected text after ']'")
	}
	// Resolve field names and find conditions that read other slots.
	for li := range p.leaves {
		lf := &p.leaves[li]
		lf.slot = -1
		for si, s := range p.slots {
			if s.name == lf.name {
				lf.slot = si
				break
			}
		}
		if lf.slot < 0 {
			return errAt(lf.namePos, "unknown field '"+lf.name+"' (each field must have its own slot)")
		}
	}
	for si := range p.slots {
		s := &p.slots[si]
		if s.cond == nil {
			continue
		}
		s.local = exprReadsOnly(p, s.cond, si)
		if !s.local {
			p.global = append(p.global, si)
		}
	}
	n := len(p.slots)
	p.fixedSuffix = make([]int, n+1)
	p.ellipsisFrom = make([]bool, n+1)
	for si := n - 1; si >= 0; si-- {
		p.fixedSuffix[si] = p.fixedSuffix[si+1]
		p.ellipsisFrom[si] = p.ellipsisFrom[si+1]
		if p.slots[si].ellipsis {
			p.ellipsisFrom[si] = true
		} else {
			p.fixedSuffix[si]++
		}
	}
	return nil
}

func exprReadsOnly(p *Pattern, e *expr, si int) bool {
	if e.kind == xLeaf {
		return p.leaves[e.leaf].slot == si
	}
	for _, k := range e.kids {
		if !exprReadsOnly(p, k, si) {
			return false
		}
	}
	return true
}
