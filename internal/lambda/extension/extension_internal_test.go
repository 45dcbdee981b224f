package extension

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHostsEntry(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(p, []byte("127.0.0.1 localhost\n# 10.0.0.1 sandbox.localdomain\n169.254.100.1\tsandbox.localdomain sandbox # Lambda\n"), 0o600)
	if got := hostsEntry(p, "sandbox.localdomain"); got != "169.254.100.1" {
		t.Errorf("got %q", got)
	}
	if got := hostsEntry(p, "other"); got != "" {
		t.Errorf("other: %q", got)
	}
}
