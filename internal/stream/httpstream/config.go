package httpstream

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/les-streams/les/internal/netconf"
)

// Defaults of Config, applied by Validate.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultMaxRecordBytes = 1 << 20
)

// Config is what users write under `stream.http:`. The logical partition
// count is stream.partitions, passed to Open.
type Config struct {
	// URL is the base URL of the central les' HTTP API, e.g.
	// https://les.example.internal/ (required). Records go to
	// <URL>/v1/records. It must not carry credentials.
	URL string `yaml:"url"`
	// TokenEnv names the environment variable holding the bearer token
	// (the central's agent.http.token); TokenFile is a file holding it
	// (trailing newline trimmed), read at Open and again after the central
	// answers 401 or 403, so a rotated file takes effect without a
	// restart. At most one of them; neither sends no token.
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
	// TLS configures https:// connections.
	TLS TLSConfig `yaml:"tls"`
	// Timeout bounds one request (default 10s); Publish as a whole is
	// bounded by its caller's context (agent.batch.publish_timeout).
	Timeout time.Duration `yaml:"timeout"`
	// MaxRecordBytes is the largest record Publish sends (default 1 MiB);
	// set it to what the central accepts (its stream's largest record,
	// at most its agent.http.max_body). It is Capabilities().MaxRecordBytes,
	// so the agent keeps its batches at half of it.
	MaxRecordBytes int64 `yaml:"max_record_bytes"`
}

// TLSConfig configures TLS to the central les.
type TLSConfig = netconf.TLS

// Validate fills defaults and checks values; errors name the field under
// `stream.http`. It does no I/O.
func (c *Config) Validate() error {
	if c.URL == "" {
		return errors.New("url is required (the central les' HTTP API, e.g. https://les.example.internal/)")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("url: scheme %q is not https or http", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q has no host", c.URL)
	}
	if u.User != nil {
		return errors.New("url must not carry credentials (use token_env or token_file)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("url must not have a query or fragment")
	}
	if c.TokenEnv != "" && c.TokenFile != "" {
		return errors.New("token_env and token_file: give one, not both")
	}
	if u.Scheme == "http" && (c.TokenEnv != "" || c.TokenFile != "") && !loopback(u.Hostname()) {
		return fmt.Errorf("url: http:// to %s would send the bearer token in the clear; use https:// (http:// is for loopback only)", u.Hostname())
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.MaxRecordBytes < 4096 {
		return fmt.Errorf("max_record_bytes %d is less than 4096", c.MaxRecordBytes)
	}
	return nil
}

// endpoint is <URL>/v1/records.
func (c *Config) endpoint() string {
	return strings.TrimRight(c.URL, "/") + Path
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// secret reads the token from the environment variable env or the file
// (trailing newline trimmed). Errors name where it was looked for, never
// its value. Both empty gives "".
func secret(env, file string) (string, error) {
	v, err := netconf.Secret(env, file)
	switch {
	case err == nil:
		return v, nil
	case env != "":
		return "", fmt.Errorf("token_env: %w", err)
	}
	return "", fmt.Errorf("token_file: %w", err)
}
