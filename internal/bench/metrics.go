package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// sample is one line of Prometheus text: a metric name, its labels and
// value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// snapshot is one scrape of les' /metrics.
type snapshot []sample

// sum adds the values of every series named name whose labels include all
// of match (key, value pairs).
func (s snapshot) sum(name string, match ...string) float64 {
	var t float64
outer:
	for _, x := range s {
		if x.name != name {
			continue
		}
		for i := 0; i+1 < len(match); i += 2 {
			if x.labels[match[i]] != match[i+1] {
				continue outer
			}
		}
		t += x.value
	}
	return t
}

// has reports whether a series named name exists.
func (s snapshot) has(name string) bool {
	for _, x := range s {
		if x.name == name {
			return true
		}
	}
	return false
}

// scrape fetches and parses url.
func scrape(ctx context.Context, c *http.Client, url string) (snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics: %w (is les up?)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: metrics: %s", resp.Status)
	}
	return parseText(resp.Body)
}

// parseText parses the Prometheus text format (the subset les writes:
// no timestamps, label values with \" and \\ escapes).
func parseText(r io.Reader) (snapshot, error) {
	var out snapshot
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		var x sample
		rest := line
		if i := strings.IndexAny(rest, "{ "); i < 0 {
			continue
		} else {
			x.name = rest[:i]
			rest = rest[i:]
		}
		if rest[0] == '{' {
			x.labels = map[string]string{}
			rest = rest[1:]
			for len(rest) > 0 && rest[0] != '}' {
				eq := strings.IndexByte(rest, '=')
				if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
					return nil, fmt.Errorf("bench: metrics: bad labels in %q", line)
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var v strings.Builder
				for len(rest) > 0 && rest[0] != '"' {
					if rest[0] == '\\' && len(rest) > 1 {
						switch rest[1] {
						case 'n':
							v.WriteByte('\n')
						default:
							v.WriteByte(rest[1])
						}
						rest = rest[2:]
						continue
					}
					v.WriteByte(rest[0])
					rest = rest[1:]
				}
				if len(rest) == 0 {
					return nil, fmt.Errorf("bench: metrics: unterminated label in %q", line)
				}
				rest = rest[1:]
				x.labels[key] = v.String()
				rest = strings.TrimPrefix(rest, ",")
			}
			rest = strings.TrimPrefix(rest, "}")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		x.value = v
		out = append(out, x)
	}
	return out, sc.Err()
}
