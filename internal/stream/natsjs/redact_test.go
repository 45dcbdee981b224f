package natsjs

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestDialErrorHidesPassword: the error of a Dial whose URL carries a
// password (printed by `les tail`, logged by callers) does not show it.
func TestDialErrorHidesPassword(t *testing.T) {
	s, err := Open(context.Background(), Config{Listen: "127.0.0.1:-1", Name: "OTHER"}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := strings.Replace(s.ClientURL(), "nats://", "nats://les:s3cret@", 1)
	_, err = Dial(context.Background(), Config{URL: url}, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("Dial found stream LES on a server holding only OTHER")
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("error shows the password or no address: %v", err)
	}
}
