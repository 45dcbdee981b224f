package sink

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// HTTPAuth is what users write for a network sink's credentials and extra
// headers, inlined in its block: basic_auth, bearer_token_env or
// bearer_token_file, headers. Secrets come from the environment or files
// (Secret), never from les.yaml itself.
type HTTPAuth struct {
	// BasicAuth sends HTTP basic auth.
	BasicAuth *BasicAuth `yaml:"basic_auth"`
	// BearerTokenEnv or BearerTokenFile holds a token sent as
	// `Authorization: Bearer …`.
	BearerTokenEnv  string `yaml:"bearer_token_env"`
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Headers are added to every request.
	Headers map[string]string `yaml:"headers"`
}

// BasicAuth is the `basic_auth:` block; the password comes from an
// environment variable or a file.
type BasicAuth struct {
	Username     string `yaml:"username"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
}

func (a *HTTPAuth) bearer() bool { return a.BearerTokenEnv != "" || a.BearerTokenFile != "" }

// Validate checks the settings; reserved are headers the sink sets itself
// (hint, if not empty, is added to the error for one of them).
func (a *HTTPAuth) Validate(reserved []string, hint string) error {
	if a.BasicAuth != nil {
		if a.BasicAuth.Username == "" {
			return errors.New("basic_auth.username: required")
		}
		if (a.BasicAuth.PasswordEnv == "") == (a.BasicAuth.PasswordFile == "") {
			return errors.New("basic_auth: give password_env or password_file")
		}
	}
	if a.BearerTokenEnv != "" && a.BearerTokenFile != "" {
		return errors.New("bearer_token_env, bearer_token_file: give one")
	}
	if a.BasicAuth != nil && a.bearer() {
		return errors.New("basic_auth and bearer_token_*: give one")
	}
	for k, v := range a.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if !ValidHeaderName(k) {
			return fmt.Errorf("headers: %q is not a header name", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("headers: value of %s holds a line break", k)
		}
		if slices.Contains(reserved, ck) {
			return fmt.Errorf("headers: %s is set by the sink%s", ck, hint)
		}
		if ck == "Authorization" && (a.BasicAuth != nil || a.bearer()) {
			return errors.New("headers: Authorization is set by basic_auth or bearer_token_*")
		}
	}
	return nil
}

// Apply reads the secrets and sets the headers and Authorization on h. It
// returns where the credential came from ("" if none), for error messages
// that must name it without its value.
func (a *HTTPAuth) Apply(h http.Header) (from string, err error) {
	for k, v := range a.Headers {
		h.Set(k, v)
	}
	switch {
	case a.BasicAuth != nil:
		v, err := a.BasicAuth.Value()
		if err != nil {
			return "", fmt.Errorf("basic_auth: %w", err)
		}
		h.Set("Authorization", v)
		return "basic_auth (" + a.BasicAuth.PasswordEnv + a.BasicAuth.PasswordFile + ")", nil
	case a.bearer():
		v, err := Token(a.BearerTokenEnv, a.BearerTokenFile, "Bearer")
		if err != nil {
			return "", fmt.Errorf("bearer_token: %w", err)
		}
		h.Set("Authorization", v)
		return "bearer token (" + a.BearerTokenEnv + a.BearerTokenFile + ")", nil
	}
	return "", nil
}

// Value reads the password (Secret: from PasswordEnv or PasswordFile;
// neither gives an empty one) and returns the Authorization value of
// HTTP basic auth.
func (b *BasicAuth) Value() (string, error) {
	pw, err := Secret(b.PasswordEnv, b.PasswordFile)
	if err != nil {
		return "", err
	}
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(b.Username, pw)
	return r.Header.Get("Authorization"), nil
}

// Token reads a token with Secret(env, file) and returns the header value
// that carries it: scheme, a space and the token, or the token alone for
// an empty scheme; "" when env and file are both empty. A token holding a
// line break is refused (it cannot go into a header). Errors name where
// the token was looked for, never its value.
func Token(env, file, scheme string) (string, error) {
	tok, err := Secret(env, file)
	if err != nil || tok == "" {
		return "", err
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("the token from %s holds a line break", env+file)
	}
	if scheme == "" {
		return tok, nil
	}
	return scheme + " " + tok, nil
}

// ValidHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || slices.Contains([]byte("!#$%&'*+-.^_`|~"), c)) {
			return false
		}
	}
	return true
}
