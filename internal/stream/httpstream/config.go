package httpstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
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
type TLSConfig struct {
	// CAFile holds PEM certificates to verify the server with instead of
	// the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate (mutual TLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name verified in the server certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables verification (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

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

// config returns the crypto/tls configuration.
func (c TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificates in %s", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// secret reads the token from the environment variable env or the file
// (trailing newline trimmed). Errors name where it was looked for, never
// its value. Both empty gives "".
func secret(env, file string) (string, error) {
	switch {
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("token_env: environment variable %s is not set", env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("token_file: %w", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("token_file: %s is empty", file)
		}
		return v, nil
	}
	return "", nil
}
