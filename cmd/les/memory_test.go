package main

import (
	"testing"

	"github.com/les-streams/les/internal/ingest"
)

func TestMemoryPolicy(t *testing.T) {
	b := ingest.BatchConfig{QueueBatches: 64, MaxBatchBytes: 1 << 20}
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	const wantLimit = 64<<20 + 68*(1<<20)*3/2 // 166 MiB: 64 MiB + 1.5 × (64 + 4) × 1 MiB
	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantPct   int
		wantLimit int64
	}{
		{name: "defaults", env: nil, wantPct: 30, wantLimit: wantLimit},
		{name: "GOGC set", env: map[string]string{"GOGC": "100"}, wantPct: 0, wantLimit: wantLimit},
		{name: "GOMEMLIMIT set", env: map[string]string{"GOMEMLIMIT": "1GiB"}, wantPct: 30, wantLimit: 0},
		{name: "both set", env: map[string]string{"GOGC": "off", "GOMEMLIMIT": "1GiB"}, wantPct: 0, wantLimit: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pct, limit := memoryPolicy(b, env(tc.env))
			if pct != tc.wantPct || limit != tc.wantLimit {
				t.Errorf("memoryPolicy = (%d, %d), want (%d, %d)", pct, limit, tc.wantPct, tc.wantLimit)
			}
		})
	}
}
