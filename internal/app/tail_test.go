package app

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestTailBounded: at most tailMaxOpen live tails run at once (the next is
// answered 503), and a client that goes away ends its tail, freeing the
// stream consumer behind it.
func TestTailBounded(t *testing.T) {
	cfg := queryTestConfig(t, t.TempDir())
	info, _ := runApp(t, cfg)
	base := "http://" + info.HTTP
	var cancels []context.CancelFunc
	for i := range tailMaxOpen {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/tail?signal=logs", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("tail %d: %s %s", i, resp.Status, resp.Header.Get("Content-Type"))
		}
		if l, _ := bufio.NewReader(resp.Body).ReadString('\n'); !strings.HasPrefix(l, ": les live tail") {
			t.Fatalf("tail %d first line %q", i, l)
		}
	}
	resp, err := http.Get(base + "/api/v1/tail")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("tail beyond the bound: %s, want 503", resp.Status)
	}
	if n := selfMetric(t, base, "", "les_api_tails_open"); n != tailMaxOpen {
		t.Errorf("tails open %v, want %d", n, tailMaxOpen)
	}
	for _, c := range cancels {
		c()
	}
	waitFor(t, func() bool { return selfMetric(t, base, "", "les_api_tails_open") == 0 }, "tails to end after their clients left")
	if resp, err := http.Get(base + "/api/v1/tail?origin=bogus"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad origin: %v %v", resp.Status, err)
	}
}
