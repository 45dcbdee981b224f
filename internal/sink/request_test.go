package sink

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ raw, hint, want string }{
		{"", "", "url: required"},
		{"localhost:80", "", `url: "localhost:80" is not an http or https URL`},
		{"ftp://x", "", `url: "ftp://x" is not an http or https URL`},
		{"http://", "", `url: "http://" is not an http or https URL`},
		{"https://u:p@x", "", "url: must not hold credentials"},
		{"https://u:p@x", "use basic_auth", "url: must not hold credentials (use basic_auth)"},
		{"https://x:8080/p", "", ""},
	} {
		_, err := CheckURL("url", tc.raw, tc.hint)
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
			t.Errorf("CheckURL(%q) = %v, want %q", tc.raw, err, tc.want)
		}
	}
}

func TestOneOfAndCheckSizes(t *testing.T) {
	v := ""
	if err := OneOf("format", &v, "a", "b"); err != nil || v != "a" {
		t.Errorf("empty: %v, %q", err, v)
	}
	v = "c"
	if err := OneOf("format", &v, "a", "b"); fmt.Sprint(err) != `format: "c" is not one of a, b` {
		t.Errorf("c: %v", err)
	}
	a, b := 0, 7
	if err := CheckSizes(Size{Key: "a", V: &a, Def: 2048, Min: 1024}, Size{Key: "b", V: &b, Def: 1}); err != nil || a != 2048 || b != 7 {
		t.Errorf("defaults: %v, %d, %d", err, a, b)
	}
	for _, tc := range []struct {
		v    int
		want string
	}{{-1, "a: must not be negative"}, {10, "a: must be at least 1024"}} {
		if err := CheckSizes(Size{Key: "a", V: &tc.v, Def: 2048, Min: 1024}); fmt.Sprint(err) != tc.want {
			t.Errorf("%d: %v, want %s", tc.v, err, tc.want)
		}
	}
}

func TestTokenAndHeaderValues(t *testing.T) {
	t.Setenv("LES_TEST_TOKEN", "abc")
	t.Setenv("LES_TEST_TOKEN_NL", "ab\r\nX-Evil: 1")
	if v, err := Token("LES_TEST_TOKEN", "", "Token"); err != nil || v != "Token abc" {
		t.Errorf("Token = %q, %v", v, err)
	}
	if v, err := Token("LES_TEST_TOKEN", "", ""); err != nil || v != "abc" {
		t.Errorf("Token without scheme = %q, %v", v, err)
	}
	if v, err := Token("", "", "Bearer"); err != nil || v != "" {
		t.Errorf("no token = %q, %v", v, err)
	}
	if _, err := Token("LES_TEST_TOKEN_NL", "", "Bearer"); err == nil || !strings.Contains(err.Error(), "LES_TEST_TOKEN_NL") || strings.Contains(err.Error(), "Evil") {
		t.Errorf("token with a line break: %v", err)
	}
	a := HTTPAuth{Headers: map[string]string{"X-A": "a\nb"}}
	if err := a.Validate(nil, ""); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Errorf("header value with a line break: %v", err)
	}
	ba := BasicAuth{Username: "u", PasswordEnv: "LES_TEST_TOKEN"}
	if v, err := ba.Value(); err != nil || v != "Basic dTphYmM=" {
		t.Errorf("basic auth = %q, %v", v, err)
	}
}

func TestGzipperRoundTripAndAllocs(t *testing.T) {
	var z Gzipper
	in := bytes.Repeat([]byte("metric.name 1 1700000000 source=fn\n"), 1000)
	for range 2 {
		zr, err := gzip.NewReader(bytes.NewReader(z.Compress(in)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("round trip: %v, %d bytes of %d", err, len(out), len(in))
		}
	}
	if n := testing.AllocsPerRun(20, func() { z.Compress(in) }); n != 0 {
		t.Errorf("%v allocations per warm Compress, want 0", n)
	}
}

func TestAccepted(t *testing.T) {
	var a Accepted
	h1, h2 := a.Hash([]byte("one")), a.Hash([]byte("two"))
	if a.Has(h1) {
		t.Fatal("empty set has one")
	}
	a.Add(h1)
	if !a.Has(h1) || a.Has(h2) || a.Hash([]byte("one")) != h1 {
		t.Fatal("after Add(one)")
	}
	a.Reset()
	if a.Has(h1) {
		t.Fatal("after Reset")
	}
}

func TestRefused(t *testing.T) {
	rules := []Refusal{{Text: "out of order", Reason: "out_of_order"}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&StatusError{Code: 400, Reason: "sample Out Of Order for series x"}, "out_of_order"},
		{fmt.Errorf("post: %w", &StatusError{Code: 413}), ReasonTooLarge},
		{&StatusError{Code: 400, Reason: "bad snappy"}, ""},
		{&StatusError{Code: 500, Reason: "out of order"}, ""},
		{errors.New("connection refused"), ""},
	} {
		if got := Refused(tc.err, rules); got != tc.want {
			t.Errorf("Refused(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestIsolate: items 3 and 6 of 8 are refused; the others are delivered,
// the refused ones end alone, and another failure stops at once.
func TestIsolate(t *testing.T) {
	bad := func(i int) bool { return i == 3 || i == 6 }
	var sent, refused []int
	var splits int
	send := func(lo, hi int, split bool) error {
		if split {
			splits++
		}
		for i := lo; i < hi; i++ {
			if bad(i) {
				return &StatusError{Code: 400, Reason: "out of order"}
			}
		}
		for i := lo; i < hi; i++ {
			sent = append(sent, i)
		}
		return nil
	}
	refusal := func(err error) string { return Refused(err, []Refusal{{"out of order", "out_of_order"}}) }
	refuse := func(lo, hi int, reason string) {
		if reason != "out_of_order" {
			t.Errorf("reason %q", reason)
		}
		for i := lo; i < hi; i++ {
			refused = append(refused, i)
		}
	}
	budget := 256
	if err := Isolate(8, &budget, send, refusal, refuse); err != nil {
		t.Fatal(err)
	}
	slices.Sort(sent)
	if !slices.Equal(sent, []int{0, 1, 2, 4, 5, 7}) || !slices.Equal(refused, []int{3, 6}) || splits != 10 || budget != 256-10 {
		t.Errorf("sent %v, refused %v, %d splits, budget left %d", sent, refused, splits, budget)
	}

	// Out of budget: the whole range is refused without a split.
	budget, refused = 0, nil
	if err := Isolate(8, &budget, send, refusal, refuse); err != nil || len(refused) != 8 {
		t.Errorf("no budget: %v, refused %v", err, refused)
	}
	// Another failure is returned as it is.
	boom := errors.New("boom")
	budget = 256
	if err := Isolate(8, &budget, func(int, int, bool) error { return boom }, refusal, refuse); err != boom {
		t.Errorf("other failure: %v", err)
	}
}

func TestClientPost(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		body, _ := io.ReadAll(r.Body)
		if string(body) != "payload" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/fail" {
			http.Error(w, "nope", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	c, err := NewClient(Deps{HTTP: srv.Client()}, TLSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"X-A": {"1"}}
	if err := c.Post(context.Background(), srv.URL, h, []byte("payload")); err != nil {
		t.Fatal(err)
	}
	if got.Get("X-A") != "1" || len(h) != 1 {
		t.Errorf("headers sent %v, shared header now %v", got, h)
	}
	if err := c.Post(context.Background(), srv.URL+"/fail", h, []byte("payload")); !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("403: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Post(ctx, srv.URL, h, []byte("payload")); !errors.Is(err, context.Canceled) || errors.Is(err, ErrPermanent) {
		t.Errorf("cancelled: %v", err)
	}
	c.CloseIdle() // the shared client: left alone
}
