package market

import (
	"embed"
	"net/http"
	"path"

	"github.com/hashgrid/hashgrid"
)

// The buyers' page is one HTML page with its script and style, embedded (nothing is
// fetched from elsewhere), in the pool dashboard's style. It reads the public order
// book and, with the API key a buyer types in (kept in the tab's session storage,
// sent only as a bearer token to this API), the buyer's balance, orders and each
// order's delivered speed over time.

//go:embed web
var webFS embed.FS

var webTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
}

func (a *api) page(w http.ResponseWriter, r *http.Request) {
	b, err := webFS.ReadFile("web/index.html")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// The page runs only its own script and talks only to this API.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(b)
}

func (a *api) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	typ, ok := webTypes[path.Ext(name)]
	b, err := webFS.ReadFile("web/" + name)
	if !ok || err != nil || name == "index.html" {
		a.fail(w, r, hashgrid.Errorf(hashgrid.ENOTFOUND, "no file %q", name))
		return
	}
	w.Header().Set("Content-Type", typ)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}
