package pattern

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type conformanceCase struct {
	Source    string            `json:"source"`
	Pattern   string            `json:"pattern"`
	Event     string            `json:"event"`
	Match     bool              `json:"match"`
	Value     *string           `json:"value"`
	WantValue *float64          `json:"want_value"`
	Fields    map[string]string `json:"fields"`
}

func loadConformance(t testing.TB) []conformanceCase {
	t.Helper()
	b, err := os.ReadFile("testdata/conformance.json")
	if err != nil {
		t.Fatal(err)
	}
	var cs []conformanceCase
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestConformance(t *testing.T) {
	cs := loadConformance(t)
	if len(cs) < 90 {
		t.Fatalf("conformance table has %d cases, want at least 90", len(cs))
	}
	for i, c := range cs {
		p, err := Compile(c.Pattern)
		if err != nil {
			t.Errorf("case %d (%s): Compile(%q): %v", i, c.Source, c.Pattern, err)
			continue
		}
		m := p.NewMatcher()
		if got := m.Match([]byte(c.Event)); got != c.Match {
			t.Errorf("case %d (%s): %q on %q: match = %v, want %v", i, c.Source, c.Pattern, c.Event, got, c.Match)
			continue
		}
		if c.Value != nil {
			v, ok := m.Value(*c.Value)
			switch {
			case c.WantValue == nil && ok:
				t.Errorf("case %d (%s): value %s = %v, want none", i, c.Source, *c.Value, v)
			case c.WantValue != nil && (!ok || v != *c.WantValue):
				t.Errorf("case %d (%s): value %s = %v, %v; want %v", i, c.Source, *c.Value, v, ok, *c.WantValue)
			}
		}
		if c.Fields != nil {
			got := map[string]string{}
			for _, f := range m.Fields() {
				got[f.Name] = f.Value
			}
			if d := cmp.Diff(c.Fields, got); d != "" {
				t.Errorf("case %d (%s): fields (-want +got):\n%s", i, c.Source, d)
			}
		}
	}
}

func TestKind(t *testing.T) {
	for src, want := range map[string]Kind{"": Unstructured, "ERROR": Unstructured, "%a%": Unstructured,
		" [a]": SpaceDelimited, "{ $.a = 1 }": JSON} {
		if got := MustCompile(src).Kind(); got != want {
			t.Errorf("Kind(%q) = %v, want %v", src, got, want)
		}
	}
}

func TestSyntaxErrors(t *testing.T) {
	long := make([]byte, MaxPatternLen+1)
	for i := range long {
		long[i] = 'a'
	}
	cases := []struct {
		src string
		pos int
	}{
		{`ERROR:`, 5},               // unquoted non-alphanumeric
		{`foo.bar`, 3},              // unquoted dot
		{`"unterminated`, 0},        // open quote
		{`ERROR -`, 6},              // dangling exclusion
		{`%abc`, 0},                 // unterminated regex
		{`%a(b)%`, 2},               // regex parentheses
		{`%something!%`, 10},        // regex '!'
		{`%a\bc%`, 2},               // unsupported escape
		{`%\xZZ%`, 1},               // bad \x
		{`%é%`, 1},                  // multi-byte in regex
		{`[]`, 1},                   // empty delimited
		{`[a, b`, 5},                // unclosed bracket
		{`[a = ]`, 5},               // missing value
		{`[a > abc]`, 5},            // relational on string
		{`[a, b = 1 && c > 2]`, 13}, // unknown field c
		{`[a b]`, 3},                // missing comma
		{`[a] x`, 4},                // trailing text
		{`{ }`, 2},                  // empty JSON
		{`{ $.a = 1`, 9},            // unclosed brace
		{`{ a = 1 }`, 2},            // selector without $
		{`{ $.a IS NOT NULL }`, 9},  // IS NOT
		{`{ $.a EXISTS }`, 6},       // EXISTS alone
		{`{ $.a = @x }`, 8},         // special chars need quotes
		{`{ $.a[x] = 1 }`, 5},       // bad index
		{`{ $.a[*].b[*] = 1 }`, 11}, // two wildcards in one selector
		{`{ ($.a = 1 }`, 11},        // unclosed paren
		{`{ $.a < "x" }`, 8},        // relational on quoted string
		{`{ $.a = 1 } x`, 12},       // trailing text
		{`{ $.a = %x% && $.b = %y% && $.c = %z% }`, 34},                  // three regexes
		{`{ $.a[*] = 1 || $.b[*] = 1 || $.c[*] = 1 || $.d[*] = 1 }`, 44}, // four wildcard selectors
		{`{ $. = 1 }`, 4}, // empty property
		{string(long), MaxPatternLen},
	}
	for _, c := range cases {
		_, err := Compile(c.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Compile(%q) error = %v, want *SyntaxError", c.src, err)
			continue
		}
		if se.Pos != c.pos || se.Reason == "" {
			t.Errorf("Compile(%q) = %v, want position %d", c.src, se, c.pos)
		}
	}
	if got := (&SyntaxError{Pos: 3, Reason: "bad"}).Error(); got != "filter pattern: at position 3: bad" {
		t.Errorf("Error() = %q", got)
	}
}

func TestSelectors(t *testing.T) {
	for _, s := range []string{"1", "2.5", "$size", "$7", "$.latency", "$.a[0].b", "$.['x.y']"} {
		if _, err := CompileSelector(s); err != nil {
			t.Errorf("CompileSelector(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "abc", "$", "$0", "$a-b", "$.", "$.a["} {
		if _, err := CompileSelector(s); err == nil {
			t.Errorf("CompileSelector(%q) succeeded", s)
		}
	}
	m := MustCompile(`{ $.a = * }`).NewMatcher()
	line := []byte(`{"a":"x\"y","n":"12.5","b":null,"o":{"k":true}}`)
	if !m.Match(line) {
		t.Fatal("no match")
	}
	check := func(sel, want string, wantOK bool) {
		t.Helper()
		s, err := CompileSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := m.Resolve(s)
		if got != want || ok != wantOK {
			t.Errorf("Resolve(%s) = %q, %v; want %q, %v", sel, got, ok, want, wantOK)
		}
	}
	check("$.a", `x"y`, true)
	check("$.n", "12.5", true)
	check("$.b", "", false)
	check("$.o", "", false)
	check("$.o.k", "true", true)
	check("$.missing", "", false)
	check("$name", "", false)
	check("3", "3", true)
	if v, ok := m.Value("$.n"); !ok || v != 12.5 {
		t.Errorf("Value($.n) = %v, %v", v, ok)
	}
	if _, ok := m.Value("$.a"); ok {
		t.Error("Value of a non-numeric string succeeded")
	}
	if m.Match([]byte(`{"b":1}`)) {
		t.Fatal("unexpected match")
	}
	check("$.b", "", false) // after a failed match nothing resolves
}

func TestJSONEdgeCases(t *testing.T) {
	cases := []struct {
		pat, line string
		want      bool
	}{
		{`{ $.a = "é" }`, `{"a":"\u00e9"}`, true},
		{`{ $.a = "x" }`, `{"\u0061":"x"}`, true},
		{`{ $.a = 1 }`, `{"a":1} trailing`, false},
		{`{ $.a = 1 }`, `  {"a" : 1 }  `, true},
		{`{ $.a = 1 }`, `{"a":1,}`, false},
		{`{ $.a = 1 }`, `[{"a":1}]`, false},
		{`{ $.a = 1 }`, `{"a":01}`, false},
		{`{ $.b NOT EXISTS }`, `not json`, false},
		{`{ $.b NOT EXISTS }`, `{"a":{"b":1}}`, true},
		{`{ $.a.b NOT EXISTS }`, `{"a":{"b":1}}`, false},
		{`{ $.a != "x" }`, `{"a":"y"}`, true},
		{`{ $.a != "x" }`, `{}`, false},
		{`{ $.a = 5 }`, `{"a":"5"}`, true},
		{`{ $.a = true }`, `{"a":true}`, true},
		{`{ $.a = 1 }`, `{"a":1,"a":2}`, true},
		{`{ $.a[2] = 3 }`, `{"a":[1,[2],3]}`, true},
		{`{ $.a = 1 }`, `{"a":1,"b":"\x"}`, false},
	}
	for _, c := range cases {
		if got := MustCompile(c.pat).NewMatcher().Match([]byte(c.line)); got != c.want {
			t.Errorf("%s on %s = %v, want %v", c.pat, c.line, got, c.want)
		}
	}
}

func TestAllocs(t *testing.T) {
	cases := []struct{ pat, miss, hit string }{
		{`[ip, id, user, timestamp, request, status_code = 5*, size > 1000]`,
			`127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534`,
			`127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 500 1534`},
		{`{ $.eventType = "Update*" && $.latency > 500 }`,
			`{"eventType":"UpdateTrail","latency":12,"user":{"name":"a\"b"}}`,
			`{"eventType":"UpdateTrail","latency":700,"user":{"name":"a\"b"}}`},
		{`ERROR -DEBUG`, `INFO all good`, `ERROR bad`},
		{`%ERROR \d+%`, `INFO all good`, `ERROR 42`},
	}
	for _, c := range cases {
		m := MustCompile(c.pat).NewMatcher()
		miss, hit := []byte(c.miss), []byte(c.hit)
		if m.Match(miss) || !m.Match(hit) {
			t.Fatalf("%s: unexpected match results", c.pat)
		}
		if n := testing.AllocsPerRun(100, func() { m.Match(miss) }); n != 0 {
			t.Errorf("%s: %v allocs per non-matching line, want 0", c.pat, n)
		}
		if n := testing.AllocsPerRun(100, func() { m.Match(hit) }); n != 0 {
			t.Errorf("%s: %v allocs per matching line, want 0", c.pat, n)
		}
	}
}

// The JSON matcher has no nesting limit (unlike jsonscan.Valid, MaxDepth 64):
// deep values are skipped and validated at any depth.
func TestJSONDeepNesting(t *testing.T) {
	deep := strings.Repeat(`{"x":[`, 100) + `1` + strings.Repeat(`]}`, 100)
	m := MustCompile(`{ $.a = "b" }`).NewMatcher()
	if !m.Match([]byte(`{"skip":` + deep + `,"a":"b","after":` + deep + `}`)) {
		t.Error("deeply nested line did not match")
	}
	if m.Match([]byte(`{"skip":` + deep[:len(deep)-1] + `,"a":"b"}`)) {
		t.Error("unbalanced deep line matched")
	}
}
