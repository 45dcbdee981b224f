package app

import (
	"strings"
	"testing"
)

// TestSpoolConfigValidated: a negative spool.max_bytes would make the
// spool drop every record it is given; it is rejected at load.
func TestSpoolConfigValidated(t *testing.T) {
	var c Config
	c.Agent.Spool.MaxBytes = -1
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "agent.spool") {
		t.Fatalf("negative spool.max_bytes: %v", err)
	}
}
