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

func TestNextSpecial(t *testing.T) {
	naive := func(b []byte, j int) int {
		for j < len(b) && b[j] >= 0x20 && b[j] != '"' && b[j] != '\\' {
			j++
		}
		return j
	}
	// Every byte value at every position of a 20-byte run, over a background
	// of bytes just above and below the thresholds.
	for _, bg := range []byte{'a', 0x20, 0x21, '"' + 1, '\\' + 1, 0x7f, 0x80, 0xff} {
		for pos := range 20 {
			for c := range 256 {
				b := make([]byte, 20)
				for k := range b {
					b[k] = bg
				}
				b[pos] = byte(c)
				for j := range 3 {
					if got, want := nextSpecial(b, j), naive(b, j); got != want {
						t.Fatalf("nextSpecial(%q, %d) = %d, want %d", b, j, got, want)
					}
				}
			}
		}
	}
}

func TestScanString(t *testing.T) {
	b := []byte(`x"a\"b\u00e9 long enough to take the word path",1`)
	raw, esc, next, ok := ScanString(b, 1)
	if !ok || !esc || string(raw) != `a\"b\u00e9 long enough to take the word path` || b[next] != ',' {
		t.Fatalf("ScanString = %q %v %d %v", raw, esc, next, ok)
	}
	for _, s := range []string{`x`, `"abc`, "\"0123456789\x01\"", `"\q"`, `"\u12"`} {
		if _, _, _, ok := ScanString([]byte(s), 0); ok {
			t.Errorf("ScanString(%q) ok", s)
		}
	}
	if _, _, _, ok := ScanString(b, 99); ok {
		t.Error("ScanString past the end ok")
	}
}
