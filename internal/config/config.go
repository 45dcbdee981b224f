// Package config loads les.yaml: strict YAML (unknown keys are errors),
// ${ENV} expansion, defaults, and validation errors that name the key and
// its line.
package config

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Error is a configuration problem at a location in the file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. sinks[0].file.path
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// The regular expressions are compiled at first use, not at package
// initialisation: every les binary links this package, and the Lambda
// extension's init time counts (docs/performance.md).
var envRef = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)
})

// expandEnv replaces ${NAME} and ${NAME:-default} outside comments. Only
// the braced form is expanded, so `$.field` and `$1` in filter patterns
// stay as written.
func expandEnv(src []byte, file string) ([]byte, error) {
	var errs []error
	lines := bytes.SplitAfter(src, []byte("\n"))
	for i, line := range lines {
		code, comment := splitComment(line)
		code = envRef().ReplaceAllFunc(code, func(m []byte) []byte {
			sub := envRef().FindSubmatch(m)
			name := string(sub[1])
			if v, ok := os.LookupEnv(name); ok {
				return []byte(v)
			}
			if len(sub[2]) > 0 {
				return sub[3]
			}
			errs = append(errs, &Error{File: file, Line: i + 1, Msg: "environment variable " + name + " is not set (use ${" + name + ":-default} for a default)"})
			return m
		})
		lines[i] = append(code, comment...)
	}
	return bytes.Join(lines, nil), errors.Join(errs...)
}

// splitComment splits a YAML line before a comment: a '#' at the start or
// after whitespace, outside quotes.
func splitComment(line []byte) (code, comment []byte) {
	var quote byte
	for i, c := range line {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return append([]byte(nil), line[:i]...), line[i:]
		}
	}
	return append([]byte(nil), line...), nil
}

// Decode strictly decodes YAML src into v (a pointer to a struct with yaml
// tags) after ${ENV} expansion. It returns the document node for Locate.
func Decode(src []byte, file string, v any) (*yaml.Node, error) {
	src, err := expandEnv(src, file)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, yamlError(err, file)
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return &doc, nil
	}
	// Unknown keys and values of the wrong kind, in the file's words
	// (words.go); the strict decoder below is the backstop.
	if errs := checkNode(&doc, reflect.TypeOf(v), "", file); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return nil, yamlError(err, file)
	}
	return &doc, nil
}

var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`) })

func yamlError(err error, file string) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, e := range te.Errors {
			errs = append(errs, lineError(e, file))
		}
		return errors.Join(errs...)
	}
	return lineError(err.Error(), file)
}

func lineError(msg, file string) error {
	if m := yamlLine().FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Msg: inUserWords(m[2])}
	}
	return &Error{File: file, Msg: inUserWords(strings.TrimPrefix(msg, "yaml: "))}
}

// Locate returns the line of the node at path (keys and list indexes, e.g.
// "sinks", 0, "file", "path"), or of the deepest ancestor that exists.
func Locate(doc *yaml.Node, path ...any) int {
	n := doc
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						line = n.Content[i].Line
						next = n.Content[i+1]
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
