package ingest

import (
	"testing"
	"time"
)

// TestBatchConfigRejectsNegativeTimeout: a negative publish_timeout would
// make every publish fail at once and send every batch to the spool.
func TestBatchConfigRejectsNegativeTimeout(t *testing.T) {
	c := BatchConfig{PublishTimeout: -time.Second}
	if err := c.Validate(); err == nil {
		t.Fatal("negative publish_timeout accepted")
	}
}
