package sink

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// CheckURL checks the value raw of the config key key: required, an
// http or https URL with a host, no credentials in it (they would show in
// errors and logs; hint, if not empty, says where they go instead). It
// returns the parsed URL.
func CheckURL(key, raw, hint string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New(key + ": required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: %q is not an http or https URL", key, raw)
	}
	if u.User != nil {
		if hint != "" {
			return nil, fmt.Errorf("%s: must not hold credentials (%s)", key, hint)
		}
		return nil, errors.New(key + ": must not hold credentials")
	}
	return u, nil
}

// OneOf checks the value *v of the config key key is one of values; an
// empty *v becomes values[0], the default.
func OneOf(key string, v *string, values ...string) error {
	if *v == "" {
		*v = values[0]
		return nil
	}
	if !slices.Contains(values, *v) {
		return fmt.Errorf("%s: %q is not one of %s", key, *v, strings.Join(values, ", "))
	}
	return nil
}

// Size is one size setting for CheckSizes: the config key, where its
// value is, its default (taken for 0) and its least value (0: none).
type Size struct {
	Key      string
	V        *int
	Def, Min int
}

// CheckSizes fills the defaults of sizes and checks none is negative or
// below its least value.
func CheckSizes(sizes ...Size) error {
	for _, s := range sizes {
		if *s.V < 0 {
			return fmt.Errorf("%s: must not be negative", s.Key)
		}
		if *s.V == 0 {
			*s.V = s.Def
		}
		if *s.V < s.Min {
			return fmt.Errorf("%s: must be at least %d", s.Key, s.Min)
		}
	}
	return nil
}
