package pattern

import (
	"testing"
)

func FuzzCompile(f *testing.F) {
	for _, c := range loadConformance(f) {
		f.Add(c.Pattern)
	}
	for _, s := range []string{`[a, b = 1 && c > 2]`, `{ $.a[*].b[*] = 1 }`, `%a{,3}%`, `{ ($.a = 1 }`, `?"x" -y %z%`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile(src)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("Compile(%q) error %T, want *SyntaxError", src, err)
			}
			return
		}
		m := p.NewMatcher()
		m.Match([]byte(src))
		m.Fields()
		CompileSelector(src)
	})
}

var fuzzPatterns = []string{
	`ERROR -DEBUG`,
	`?ERROR ?"WARN x"`,
	`%^a.c\d{1,3}|b+%`,
	`[ip, id, user, timestamp, request, status_code = 4* || status_code > 499, size]`,
	`[..., a = *x*, ..., b != 3, ...]`,
	`[w1, ..., w2 = %a+%,]`,
	`{ $.a = "x*" || ($.b[0] > 3 && $.c.d NOT EXISTS) }`,
	`{ $.a[*].b = 1 || $.* IS NULL || $.c IS TRUE }`,
	`{ $.['x.y'][1][*] != 2 }`,
}

func FuzzMatch(f *testing.F) {
	for _, c := range loadConformance(f) {
		f.Add([]byte(c.Event))
	}
	f.Add([]byte(`{"a":[{"b":1},{"b":"\ud83d\ude00"}],"x.y":[0,[1,2]],"c":true}`))
	f.Add([]byte(`a "b [c" [d "e] f`))
	var ms []*Matcher
	sels := []Selector{}
	for _, s := range []string{"$ip", "$3", "$.a[0].b", "$.a", "1"} {
		sel, err := CompileSelector(s)
		if err != nil {
			f.Fatal(err)
		}
		sels = append(sels, sel)
	}
	for _, p := range fuzzPatterns {
		ms = append(ms, MustCompile(p).NewMatcher())
	}
	for _, c := range loadConformance(f) {
		ms = append(ms, MustCompile(c.Pattern).NewMatcher())
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, m := range ms {
			if m.Match(line) {
				m.Fields()
				for _, s := range sels {
					m.Resolve(s)
					m.ResolveFloat(s)
				}
			}
		}
	})
}
