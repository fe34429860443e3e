// Package dashboard is edged's web page: one HTML file, one script and
// one style sheet, embedded in the binary and served as they are (no
// build step, no CDN, no framework). The page reads everything it shows
// from the REST API under /api/v1 and its event stream; this package
// serves only the files.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

//go:embed static/index.html static/app.js static/app.css static/icon.svg
var files embed.FS

// Prefix is where the page's assets are served; the page itself is at /.
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every answer: only this origin's
// script, styles, images and connections (the API and its event stream),
// nothing inline, no frames, no plugins, no <base>, and forms that post
// only here.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type asset struct {
	body  []byte
	ctype string
	etag  string // quoted strong validator: a hash of body
	ver   string // ?v= value that marks a URL as this exact content
}

var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

func load(name string) asset {
	b, err := files.ReadFile("static/" + name)
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	sum := sha256.Sum256(b)
	ver := hex.EncodeToString(sum[:8])
	ext := name[strings.LastIndexByte(name, '.'):]
	return asset{body: b, ctype: types[ext], etag: `"` + ver + `"`, ver: ver}
}

// Size is the number of bytes of the embedded page: HTML, script, style
// sheet and icon together.
func Size() int {
	n := 0
	for _, a := range assets() {
		n += len(a.body)
	}
	return n
}

// assets loads the files and points the page's references to its assets
// at versioned URLs (/ui/app.js?v=<hash>), which may be cached for good:
// a new binary with a changed file links a new URL.
func assets() map[string]asset {
	m := map[string]asset{}
	for _, name := range []string{"app.js", "app.css", "icon.svg"} {
		m[Prefix+name] = load(name)
	}
	index := load("index.html")
	for path, a := range m {
		index.body = bytes.ReplaceAll(index.body, []byte(`"`+path+`"`), []byte(`"`+path+"?v="+a.ver+`"`))
	}
	sum := sha256.Sum256(index.body)
	index.ver = hex.EncodeToString(sum[:8])
	index.etag = `"` + index.ver + `"`
	m["/"] = index
	return m
}

// Handler serves the page at / and its assets under Prefix, answering
// GET and HEAD with the right Content-Type, an ETag (so a reload costs a
// 304) and the CSP above. The page is revalidated on every load; an
// asset fetched by its versioned URL is cached for a year. Any other
// path is a JSON 404 and any other method a JSON 405, so Handler can be
// mounted on "/" as the catch-all of a mux whose API routes are more
// specific.
func Handler() http.Handler {
	m := assets()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		a, ok := m[r.URL.Path]
		if !ok {
			jsonError(w, http.StatusNotFound, "no such page: "+r.URL.Path)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			jsonError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here; use GET")
			return
		}
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		if r.URL.Path != "/" && r.URL.Query().Get("v") == a.ver {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
