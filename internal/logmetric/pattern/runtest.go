package pattern

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// TestOptions configures RunTestWith.
type TestOptions struct {
	// Pattern is the filter pattern.
	Pattern string
	// Value is the metric value selector; empty prints no value.
	Value string
	// Dimensions maps dimension names to selectors.
	Dimensions map[string]string
	// JSON selects one JSON object per input line instead of text.
	JSON bool
}

// RunTest implements `les filter test`: it matches each line of r against
// src and writes one result per line to w. See RunTestWith.
func RunTest(w io.Writer, r io.Reader, src, valueSel string, jsonOut bool) (matched int, err error) {
	return RunTestWith(w, r, TestOptions{Pattern: src, Value: valueSel, JSON: jsonOut})
}

type testResult struct {
	Line       string            `json:"line"`
	Match      bool              `json:"match"`
	Value      *float64          `json:"value"`
	Fields     map[string]string `json:"fields"`
	Dimensions map[string]string `json:"dimensions"`
}

// RunTestWith matches each line of r (newline-separated, a trailing \r is
// dropped) and writes, per line, either
//
//	line N: match value=V $field=... dim=...
//	line N: no match
//
// or, with JSON, {"line":...,"match":...,"value":number|null,"fields":{...},
// "dimensions":{...}}. value is null when there is no match or the selector
// is absent or non-numeric. It returns the number of matching lines. An
// invalid pattern or selector returns its *SyntaxError before reading r.
func RunTestWith(w io.Writer, r io.Reader, o TestOptions) (matched int, err error) {
	p, err := Compile(o.Pattern)
	if err != nil {
		return 0, err
	}
	var val *Selector
	if o.Value != "" {
		s, err := CompileSelector(o.Value)
		if err != nil {
			return 0, err
		}
		val = &s
	}
	names := make([]string, 0, len(o.Dimensions))
	dims := make(map[string]Selector, len(o.Dimensions))
	for k, v := range o.Dimensions {
		s, err := CompileSelector(v)
		if err != nil {
			return 0, err
		}
		names = append(names, k)
		dims[k] = s
	}
	sort.Strings(names)
	m := p.NewMatcher()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		res := testResult{Line: string(line), Fields: map[string]string{}, Dimensions: map[string]string{}}
		res.Match = m.Match(line)
		if res.Match {
			matched++
			if val != nil {
				if v, ok := m.ResolveFloat(*val); ok {
					res.Value = &v
				}
			}
			for _, f := range m.Fields() {
				res.Fields[f.Name] = f.Value
			}
			for _, k := range names {
				if s, ok := m.Resolve(dims[k]); ok {
					res.Dimensions[k] = s
				}
			}
		}
		if o.JSON {
			if err := enc.Encode(res); err != nil {
				return matched, fmt.Errorf("filter test: %w", err)
			}
			continue
		}
		var b strings.Builder
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(n))
		if !res.Match {
			b.WriteString(": no match\n")
			bw.WriteString(b.String())
			continue
		}
		b.WriteString(": match")
		if val != nil {
			b.WriteString(" value=")
			if res.Value != nil {
				b.WriteString(strconv.FormatFloat(*res.Value, 'g', -1, 64))
			} else {
				b.WriteString("none")
			}
		}
		for _, f := range m.Fields() {
			b.WriteString(" " + f.Name + "=" + strconv.Quote(f.Value))
		}
		for _, k := range names {
			if s, ok := res.Dimensions[k]; ok {
				b.WriteString(" " + k + "=" + strconv.Quote(s))
			}
		}
		b.WriteByte('\n')
		bw.WriteString(b.String())
	}
	if err := sc.Err(); err != nil {
		bw.Flush()
		return matched, fmt.Errorf("filter test: read: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return matched, fmt.Errorf("filter test: write: %w", err)
	}
	return matched, nil
}
