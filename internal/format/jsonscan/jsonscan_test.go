package jsonscan

import (
	"encoding/json"
	"testing"
)

func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`{}`, `[]`, `{"a":1}`, ` {"a" : [1, -2.5e3, "x\n\u00e9", true, false, null, {}]} `, `"\ud83d\ude00"`,
		`{"a":}`, `{"a" 1}`, `[1,]`, `01`, `1.`, `-`, `"\x"`, "\"a\x01\"", `{"a":1}}`, `tru`, `nul`, `[`, `{"a":1,}`, `1e`, `{,}`,
	} {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, s := range []string{`"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\ud83d\ude00"`, `"\ud800x"`, `"\udc00"`} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		got, ok := Str([]byte(s))
		if !ok || got != want {
			t.Errorf("Str(%s) = %q, want %q", s, got, want)
		}
	}
}

func TestMembers(t *testing.T) {
	it := Members([]byte(`{"a":1,"b":{"c":[1,2]},"d":"x"}`))
	var keys, vals []string
	for it.Next() {
		keys = append(keys, string(it.Key))
		vals = append(vals, string(it.Val))
	}
	if it.Err() || len(keys) != 3 || vals[1] != `{"c":[1,2]}` || vals[2] != `"x"` {
		t.Fatalf("keys %v vals %v err %v", keys, vals, it.Err())
	}
	it = Members([]byte(`{"a":1,`))
	for it.Next() {
	}
	if !it.Err() {
		t.Error("want error")
	}
}

func TestDepth(t *testing.T) {
	deep := make([]byte, 0, 200)
	for range 100 {
		deep = append(deep, '[')
	}
	for range 100 {
		deep = append(deep, ']')
	}
	if Valid(deep) {
		t.Error("depth 100 accepted")
	}
}

func FuzzValid(f *testing.F) {
	f.Add([]byte(`{"a":[1,2,{"b":"c\u00e9"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if Valid(b) && !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		it := Members(b)
		for it.Next() {
			_ = it.KeyString()
			Str(it.Val)
			Float(it.Val)
			Int(it.Val)
		}
	})
}
