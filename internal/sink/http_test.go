package sink

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/model"
)

func response(code int, body string, header ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func TestCheckResponse(t *testing.T) {
	for _, tc := range []struct {
		code      int
		body      string
		header    []string
		permanent bool
		ok        bool
		after     time.Duration
	}{
		{code: 200, ok: true},
		{code: 204, ok: true},
		{code: 400, body: "bad label name \"1x\"\n", permanent: true},
		{code: 401, permanent: true},
		{code: 413, permanent: true},
		{code: 408},
		{code: 429, header: []string{"Retry-After", "7"}, after: 7 * time.Second},
		{code: 503, header: []string{"Retry-After", "soon"}},
		{code: 500, body: strings.Repeat("é", 400)},
	} {
		err := CheckResponse(response(tc.code, tc.body, tc.header...))
		if tc.ok {
			if err != nil {
				t.Errorf("%d: %v", tc.code, err)
			}
			continue
		}
		se, ok := errors.AsType[*StatusError](err)
		if !ok || se.Code != tc.code {
			t.Fatalf("%d: error %v is not a StatusError with that code", tc.code, err)
		}
		if len(se.Reason) > 512 || strings.ContainsRune(se.Reason, '\n') || !strings.HasPrefix(tc.body, se.Reason[:min(len(se.Reason), 4)]) {
			t.Errorf("%d: reason %q", tc.code, se.Reason)
		}
		if got := errors.Is(err, ErrPermanent); got != tc.permanent {
			t.Errorf("%d: permanent = %v, want %v", tc.code, got, tc.permanent)
		}
		ra, isRA := errors.AsType[*RetryAfterError](err)
		if (tc.after != 0) != isRA || (isRA && ra.After != tc.after) {
			t.Errorf("%d: retry-after %v (%v), want %v", tc.code, ra, isRA, tc.after)
		}
	}
}

func TestParseRetryAfterDate(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d, ok := parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now)
	if !ok || d != 90*time.Second {
		t.Fatalf("got %v %v, want 90s", d, ok)
	}
	if d, ok := parseRetryAfter(now.Add(-time.Hour).Format(http.TimeFormat), now); !ok || d != 0 {
		t.Fatalf("past date: got %v %v, want 0", d, ok)
	}
	if _, ok := parseRetryAfter("-3", now); ok {
		t.Fatal("negative seconds accepted")
	}
}

func TestDeliverHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSink{send: func(ctx context.Context, n int) error {
			switch n {
			case 1:
				return &RetryAfterError{Err: errFlaky, After: 5 * time.Second}
			case 2:
				return &RetryAfterError{Err: errFlaky, After: time.Hour} // bounded by max_backoff
			}
			return nil
		}}
		rc := RetryConfig{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Second}
		if err := Deliver(context.Background(), f, &model.Batch{}, Meta{}, rc, nil); err != nil {
			t.Fatal(err)
		}
		g := f.gaps()
		if len(g) != 2 || g[0] != 5*time.Second || g[1] != 20*time.Second {
			t.Fatalf("waits %v, want [5s 20s]", g)
		}
	})
}

func TestSecret(t *testing.T) {
	t.Setenv("LES_TEST_SECRET", "s3cr3t")
	if v, err := Secret("LES_TEST_SECRET", ""); err != nil || v != "s3cr3t" {
		t.Fatalf("env: %q %v", v, err)
	}
	_, err := Secret("LES_TEST_UNSET_SECRET", "")
	if err == nil || !strings.Contains(err.Error(), "LES_TEST_UNSET_SECRET") {
		t.Fatalf("unset: %v", err)
	}
	f := t.TempDir() + "/tok"
	if err := writeFile(f, "tok-123\n"); err != nil {
		t.Fatal(err)
	}
	if v, err := Secret("", f); err != nil || v != "tok-123" {
		t.Fatalf("file: %q %v", v, err)
	}
	if _, err := Secret("LES_TEST_SECRET", f); err == nil {
		t.Fatal("both accepted")
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
