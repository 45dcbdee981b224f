package config

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// This file makes decoding errors speak the words of the file, not of Go:
// `unknown key "listn" in agent.http (did you mean "listen"?)` instead of
// `field listn not found in type app.HTTPConfig`, and `"fast" is not a
// duration (e.g. 200ms, 1m)` instead of "cannot unmarshal !!str `fast`
// into time.Duration".

var (
	durationType    = reflect.TypeFor[time.Duration]()
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
	yamlNode        = reflect.TypeFor[yaml.Node]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkNode walks n against the Go type t that will decode it and reports
// unknown keys and scalars of the wrong kind, each with its line and the
// dotted path of its key. What it does not know (types with their own
// UnmarshalYAML or UnmarshalText, interfaces) is left to the decoder.
func checkNode(n *yaml.Node, t reflect.Type, path, file string) []error {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return checkNode(n.Content[0], t, path, file)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // an empty value: the default
	}
	if t == yamlNode || reflect.PointerTo(t).Implements(yamlUnmarshaler) || t.Implements(yamlUnmarshaler) {
		return nil
	}
	at := func(msg string) error { return &Error{File: file, Line: n.Line, Path: path, Msg: msg} }
	if t == durationType {
		if n.Kind != yaml.ScalarNode {
			return []error{at(fmt.Sprintf("%s is not a duration (e.g. 200ms, 1m)", kindWords(n)))}
		}
		if _, err := time.ParseDuration(n.Value); err != nil || n.ShortTag() != "!!str" {
			return []error{at(fmt.Sprintf("%q is not a duration (e.g. 200ms, 1m)", n.Value))}
		}
		return nil
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []error{at(fmt.Sprintf("%s where settings (key: value) belong", kindWords(n)))}
		}
		fields := structFields(t)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // a YAML merge key
				continue
			}
			f, ok := fields[k.Value]
			if !ok {
				errs = append(errs, &Error{File: file, Line: k.Line, Msg: unknownKey(k.Value, path, fields)})
				continue
			}
			errs = append(errs, checkNode(v, f, join(path, k.Value), file)...)
		}
		return errs
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // []byte: base64 text
		}
		if n.Kind != yaml.SequenceNode {
			return []error{at(fmt.Sprintf("%s where a list belongs (- item, or [a, b])", kindWords(n)))}
		}
		var errs []error
		for i, c := range n.Content {
			errs = append(errs, checkNode(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", file)...)
		}
		return errs
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return []error{at(fmt.Sprintf("%s where a mapping (key: value) belongs", kindWords(n)))}
		}
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), file)...)
		}
		return errs
	case reflect.Interface:
		return nil
	}
	// A scalar field.
	if n.Kind != yaml.ScalarNode {
		return []error{at(fmt.Sprintf("%s where %s belongs", kindWords(n), scalarWords(t)))}
	}
	tag := n.ShortTag()
	ok := true
	switch t.Kind() {
	case reflect.Bool:
		// yaml.v3 also takes YAML 1.1's yes/no/on/off for a bool.
		ok = tag == "!!bool" || slices.Contains([]string{"y", "yes", "on", "n", "no", "off"}, strings.ToLower(n.Value))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		ok = tag == "!!int"
		if tag == "!!float" { // yaml.v3 takes a whole float (1e6) for an int
			f, err := strconv.ParseFloat(n.Value, 64)
			ok = err == nil && f == float64(int64(f))
		}
		if ok && strings.HasPrefix(n.Value, "-") && t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
			ok = false
		}
	case reflect.Float32, reflect.Float64:
		ok = tag == "!!int" || tag == "!!float"
	}
	if !ok {
		return []error{at(fmt.Sprintf("%q is not %s", n.Value, scalarWords(t)))}
	}
	return nil
}

// structFields maps the YAML keys of struct t (yaml tags; inline structs
// flattened; untagged fields under their lower-cased name, as yaml.v3
// does) to their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// unknownKey says that key is not one of fields, where, and the closest
// known key when one is near.
func unknownKey(key, path string, fields map[string]reflect.Type) string {
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	msg := fmt.Sprintf("unknown key %q %s", key, where)
	if s := closest(key, fields); s != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", s)
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) <= 12 {
		return msg + " (known: " + strings.Join(names, ", ") + ")"
	}
	return msg
}

// closest returns the known key nearest to key by edit distance, or one
// key is a prefix of, when it is near enough to be a typo.
func closest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 1<<30
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names) // deterministic among ties
	for _, k := range names {
		d := editDistance(strings.ToLower(key), k)
		if strings.HasPrefix(key, k) || strings.HasPrefix(k, key) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = k, d
		}
	}
	if bestD <= max(2, len(key)/3) {
		return best
	}
	// A known key inside a longer one ("listn_extra" holds "listn",
	// one edit from "listen").
	for _, k := range names {
		for _, part := range strings.FieldsFunc(key, func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
			if len(part) >= 3 && editDistance(part, k) <= 1 {
				return k
			}
		}
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindWords(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func scalarWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number ≥ 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "text"
	}
	return "a " + t.Kind().String()
}

// goWords rewrites what yaml.v3 says in Go's terms, for errors checkNode
// did not catch first.
// (Compiled at first use, like envRef.)
var goWords = sync.OnceValue(func() []struct {
	re   *regexp.Regexp
	repl string
} {
	return []struct {
		re   *regexp.Regexp
		repl string
	}{
		{regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into time\\.Duration$"), `"$1" is not a duration (e.g. 200ms, 1m)`},
		{regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into u?int\\d*$"), `"$1" is not a whole number`},
		{regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into float\\d*$"), `"$1" is not a number`},
		{regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into bool$"), `"$1" is not true or false`},
		{regexp.MustCompile("^cannot unmarshal !!seq into .*$"), `a list where it does not belong`},
		{regexp.MustCompile("^cannot unmarshal !!map into .*$"), `a mapping (key: value) where it does not belong`},
		{regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into .*$"), `"$1" is not a valid value here`},
		{regexp.MustCompile(`^field (\S+) not found in type \S+$`), `unknown key "$1"`},
	}
})

func inUserWords(msg string) string {
	for _, w := range goWords() {
		if w.re.MatchString(msg) {
			return w.re.ReplaceAllString(msg, w.repl)
		}
	}
	return msg
}
