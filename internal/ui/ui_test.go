package ui

import (
	"io"
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestHandler: "/" is the page with a CSP that allows only this origin,
// assets are served with their types, and unknown assets are 404.
func TestHandler(t *testing.T) {
	h := Handler()
	for path, want := range map[string]string{"/": "text/html", "/ui/app.js": "javascript", "/ui/chart.js": "javascript", "/ui/app.css": "text/css"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), want) {
			t.Errorf("%s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/ui/nope.js", nil))
	if w.Code != 404 {
		t.Errorf("unknown asset: %d", w.Code)
	}
}

// TestNoMarkupFromStrings: the UI never turns strings into markup or code
// (innerHTML, outerHTML, insertAdjacentHTML, document.write, eval, new
// Function) and loads nothing from another origin.
func TestNoMarkupFromStrings(t *testing.T) {
	bad := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|https?://`)
	allowed := "http://www.w3.org/2000/svg" // the SVG namespace name, not a URL fetched
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, _ := files.Open(p)
		b, _ := io.ReadAll(f)
		f.Close()
		for i, line := range strings.Split(string(b), "\n") {
			if m := bad.FindString(strings.ReplaceAll(line, allowed, "")); m != "" {
				t.Errorf("%s:%d uses %s: %s", p, i+1, m, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
