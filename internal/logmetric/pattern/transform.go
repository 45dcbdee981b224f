package pattern

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Transformation is a CloudWatch MetricTransformation: how a matching event
// becomes a metric value.
type Transformation struct {
	MetricName      string
	MetricNamespace string
	// MetricValue is a number ("1"), "$field", "$N" or "$.path".
	MetricValue string
	// DefaultValue, when set, is published for each event that does not
	// match (see MetricFilter.Apply). Not allowed together with Dimensions.
	DefaultValue *float64
	// Dimensions maps up to three dimension names to "$field", "$N" or
	// "$.path" selectors.
	Dimensions map[string]string
	// Unit is a CloudWatch StandardUnit name, or empty.
	Unit string
}

var standardUnits = []string{"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
	"Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
	"Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
	"Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
	"Count/Second", "None"}

func validMetricName(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("metric transformation: %s is required", field)
	case len(s) > 255:
		return fmt.Errorf("metric transformation: %s longer than 255 characters", field)
	case strings.ContainsAny(s, ":*$"):
		return fmt.Errorf("metric transformation: %s %q must not contain ':', '*' or '$'", field, s)
	}
	return nil
}

// Validate checks the constraints CloudWatch enforces on a metric
// transformation.
func (t Transformation) Validate() error {
	if err := validMetricName("metric name", t.MetricName); err != nil {
		return err
	}
	if err := validMetricName("metric namespace", t.MetricNamespace); err != nil {
		return err
	}
	if t.MetricValue == "" {
		return errors.New("metric transformation: metric value is required")
	}
	if len(t.MetricValue) > 100 {
		return errors.New("metric transformation: metric value longer than 100 characters")
	}
	if _, err := CompileSelector(t.MetricValue); err != nil {
		return fmt.Errorf("metric transformation: metric value %q: %w", t.MetricValue, err)
	}
	if len(t.Dimensions) > 3 {
		return fmt.Errorf("metric transformation: %d dimensions, at most 3 are allowed", len(t.Dimensions))
	}
	if len(t.Dimensions) > 0 && t.DefaultValue != nil {
		return errors.New("metric transformation: a default value is not allowed with dimensions")
	}
	for k, v := range t.Dimensions {
		if k == "" || len(k) > 255 {
			return fmt.Errorf("metric transformation: dimension name %q must be 1 to 255 characters", k)
		}
		s, err := CompileSelector(v)
		if err != nil {
			return fmt.Errorf("metric transformation: dimension %q: %w", k, err)
		}
		if s.IsLiteral() {
			return fmt.Errorf("metric transformation: dimension %q must reference a field, not %q", k, v)
		}
	}
	if t.Unit != "" {
		ok := false
		for _, u := range standardUnits {
			if u == t.Unit {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("metric transformation: unknown unit %q", t.Unit)
		}
	}
	return nil
}

// MetricFilter is a compiled filter pattern with its transformation. It is
// immutable and safe for concurrent use.
type MetricFilter struct {
	pattern *Pattern
	t       Transformation
	value   Selector
	dims    []dimSel
}

type dimSel struct {
	name string
	sel  Selector
}

// NewMetricFilter compiles pattern and validates t. Dimensions require a
// JSON or space-delimited pattern, as in CloudWatch.
func NewMetricFilter(pattern string, t Transformation) (*MetricFilter, error) {
	p, err := Compile(pattern)
	if err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if len(t.Dimensions) > 0 && p.Kind() == Unstructured {
		return nil, errors.New("metric transformation: dimensions need a JSON or space-delimited pattern")
	}
	f := &MetricFilter{pattern: p, t: t}
	f.value, _ = CompileSelector(t.MetricValue)
	for k, v := range t.Dimensions {
		s, _ := CompileSelector(v)
		f.dims = append(f.dims, dimSel{k, s})
	}
	sort.Slice(f.dims, func(i, j int) bool { return f.dims[i].name < f.dims[j].name })
	return f, nil
}

// Pattern returns the compiled filter pattern; use its NewMatcher for Apply.
func (f *MetricFilter) Pattern() *Pattern { return f.pattern }

// Transformation returns the transformation f was built with.
func (f *MetricFilter) Transformation() Transformation { return f.t }

// Point is one metric observation produced by Apply.
type Point struct {
	Value float64
	// Dimensions holds the resolved dimension values; nil without dimensions.
	// The map is newly allocated per point.
	Dimensions map[string]string
	// Default is true when the point carries DefaultValue for an event that
	// did not match.
	Default bool
}

// Apply matches line with m (from f.Pattern().NewMatcher()) and reports
// whether a point is emitted:
//   - the line matches and the metric value and every dimension resolve:
//     the value (a number for "$..." selectors; non-numeric means no point)
//     and dimensions;
//   - the line matches but the value or a dimension is absent or the value
//     is not numeric: no point;
//   - the line does not match and DefaultValue is set: a point with
//     DefaultValue and Default true. CloudWatch sums these per minute, so a
//     minute with events but no matches reports DefaultValue × events for
//     Sum (0 for the usual default of 0); a minute without events reports
//     nothing, which is the caller's concern.
func (f *MetricFilter) Apply(m *Matcher, line []byte) (Point, bool) {
	if !m.Match(line) {
		if f.t.DefaultValue != nil {
			return Point{Value: *f.t.DefaultValue, Default: true}, true
		}
		return Point{}, false
	}
	v, ok := m.ResolveFloat(f.value)
	if !ok {
		return Point{}, false
	}
	pt := Point{Value: v}
	if len(f.dims) > 0 {
		pt.Dimensions = make(map[string]string, len(f.dims))
		for _, d := range f.dims {
			s, ok := m.Resolve(d.sel)
			if !ok {
				return Point{}, false
			}
			pt.Dimensions[d.name] = s
		}
	}
	return pt, true
}
