package ingest

import (
	"strings"
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

// TestBatchConfigEncoding: metrics default to the series encoding; les is
// the other choice and anything else is refused with the choices named.
func TestBatchConfigEncoding(t *testing.T) {
	var c BatchConfig
	if err := c.Validate(); err != nil || c.Encoding != "series" {
		t.Fatalf("default encoding %q, %v", c.Encoding, err)
	}
	if err := (&BatchConfig{Encoding: "les"}).Validate(); err != nil {
		t.Fatal(err)
	}
	err := (&BatchConfig{Encoding: "dict"}).Validate()
	if err == nil || !strings.Contains(err.Error(), "want series or les") {
		t.Fatalf("encoding dict: %v", err)
	}
}
