package embedded

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// CredsFile is the file under the data directory that holds the embedded
// stream's credentials. It is created at the first start with mode 0600
// and reads:
//
//	# les embedded stream credentials ...
//	token: <43 characters>
//
// Clients send the token as a NATS token (les tail, les consume and the
// examples read it from the data directory).
const CredsFile = "stream.creds"

// CredsPath is dataDir's credentials file.
func CredsPath(dataDir string) string { return filepath.Join(dataDir, CredsFile) }

// ReadCreds returns the token in dataDir's credentials file; the error
// wraps fs.ErrNotExist when there is none.
func ReadCreds(dataDir string) (string, error) {
	b, err := os.ReadFile(CredsPath(dataDir))
	if err != nil {
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "token:"); ok {
			if tok := strings.TrimSpace(v); tok != "" {
				return tok, nil
			}
		}
	}
	return "", fmt.Errorf("stream credentials: %s has no token line", CredsPath(dataDir))
}

// EnsureCreds returns the token in dataDir's credentials file, creating
// the file (mode 0600, a random 256-bit token) when there is none. A file
// readable by others is made 0600.
func EnsureCreds(dataDir string) (string, error) {
	path := CredsPath(dataDir)
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("stream credentials: %w", err)
		}
	}
	tok, err := ReadCreds(dataDir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand)
	tok = base64.RawURLEncoding.EncodeToString(raw[:])
	body := "# les embedded stream credentials: clients (les tail, les consume, your consumers)\n" +
		"# send this token. Keep this file private; delete it to get a new token at the next start.\n" +
		"token: " + tok + "\n"
	// Written aside and linked into place, so that two processes starting
	// at once agree on one token and a crash leaves no half-written file.
	tmp, err := os.CreateTemp(dataDir, CredsFile+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("stream credentials: %w", err)
	}
	return ReadCreds(dataDir) // the winner's, if another process linked first
}
