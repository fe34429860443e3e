package dashboard

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHandlerServesPageAndAssets(t *testing.T) {
	h := Handler()
	page := get(t, h, "GET", "/", nil)
	if page.Code != 200 || page.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", page.Code, page.Header().Get("Content-Type"))
	}
	if got := page.Header().Get("Cache-Control"); got != "no-cache" {
		t.Errorf("GET /: Cache-Control %q, want no-cache (revalidate: a new binary may bring a new page)", got)
	}
	body := page.Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, "style=") || regexp.MustCompile(` on[a-z]+=`).MatchString(body) {
		t.Error("the page has inline script or style, which the CSP forbids")
	}
	refs := regexp.MustCompile(`"(/ui/[a-z.]+)\?v=([0-9a-f]{16})"`).FindAllStringSubmatch(body, -1)
	if len(refs) != 3 {
		t.Fatalf("want 3 versioned asset links in the page, have %q", refs)
	}
	want := map[string]string{"/ui/app.js": "text/javascript; charset=utf-8", "/ui/app.css": "text/css; charset=utf-8", "/ui/icon.svg": "image/svg+xml"}
	for _, ref := range refs {
		path, ver := ref[1], ref[2]
		w := get(t, h, "GET", path+"?v="+ver, nil)
		if w.Code != 200 || w.Header().Get("Content-Type") != want[path] {
			t.Errorf("GET %s: %d %q, want 200 %q", path, w.Code, w.Header().Get("Content-Type"), want[path])
		}
		if cc := w.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s?v=%s: Cache-Control %q, want immutable", path, ver, cc)
		}
		if cc := get(t, h, "GET", path+"?v=old", nil).Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s?v=old: Cache-Control %q, want no-cache", path, cc)
		}
		etag := w.Header().Get("ETag")
		if nm := get(t, h, "GET", path, map[string]string{"If-None-Match": etag}); nm.Code != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %s: %d, want 304", path, etag, nm.Code)
		}
	}
	for _, path := range []string{"/", "/ui/app.js", "/nope"} {
		w := get(t, h, "GET", path, nil)
		if csp := w.Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
	}
	if s := Size(); s < 1000 || s > 64<<10 {
		t.Errorf("Size() = %d bytes; the page should be small", s)
	}
	t.Logf("embedded page: %d bytes", Size())
}

func TestHandlerErrorsAreJSON(t *testing.T) {
	h := Handler()
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/api/v1/me", 404},
		{"GET", "/ui/", 404},
		{"GET", "/index.html", 404},
		{"POST", "/", 405},
		{"DELETE", "/ui/app.js", 405},
	} {
		w := get(t, h, c.method, c.path, nil)
		if w.Code != c.code || w.Header().Get("Content-Type") != "application/json" || !strings.HasPrefix(w.Body.String(), `{"error":`) {
			t.Errorf("%s %s: %d %q %q, want %d and a JSON error", c.method, c.path, w.Code, w.Header().Get("Content-Type"), w.Body.String(), c.code)
		}
	}
	if w := get(t, h, "HEAD", "/", nil); w.Code != 200 {
		t.Errorf("HEAD /: %d", w.Code)
	}
}
