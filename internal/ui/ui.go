// Package ui is les' web UI: static HTML, CSS and JavaScript embedded in
// the binary (no build step, nothing loaded from elsewhere), served on the
// API listener. The pages call only the documented API (docs/api.md);
// docs/adr/0007-ui-history.md records the choices.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the UI: "/" is the single page, "/ui/…" its assets.
// Responses carry a Content-Security-Policy that allows nothing but this
// origin, so no data can load or run anything from elsewhere.
func Handler() http.Handler {
	static, _ := fs.Sub(files, "static") // cannot fail: the directory is embedded
	assets := http.StripPrefix("/ui/", http.FileServerFS(static))
	index, _ := fs.ReadFile(static, "index.html")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/" {
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			_, _ = w.Write(index)
			return
		}
		h.Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	})
}
