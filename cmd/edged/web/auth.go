package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Identity is who made a request and what they may do.
type Identity struct {
	Name string
	Role string // viewer, publisher, operator or admin
}

// Authenticator checks credentials. Basic and Bearer return an error
// (ErrNoSuchUser or one wrapping it) for unknown users and bad
// passwords or tokens; Anonymous is the identity of a request without
// credentials, false when such requests are refused.
type Authenticator interface {
	// Basic's ctx is the request's: a check waiting for its turn ends
	// with it.
	Basic(ctx context.Context, user, pass string, remote net.Addr) (Identity, error)
	Bearer(token string, remote net.Addr) (Identity, error)
	Anonymous() (Identity, bool)
	// MayCommand narrows the role rule for commands: a user whose own
	// rules do not cover a controller may not command it here either.
	MayCommand(id Identity, anonymous bool, controller string) bool
}

// sessionCookie names the browser session cookie over plain HTTP;
// over TLS it is sessionCookieTLS, whose __Host- prefix makes browsers
// keep it to this origin (Secure, Path=/, no Domain), so an app on
// another port of the gateway can neither set nor overwrite it.
const (
	sessionCookie    = "edged_session"
	sessionCookieTLS = "__Host-edged_session"
)

// sessionCookieName is the session cookie's name for r's connection.
func sessionCookieName(r *http.Request) string {
	if r.TLS != nil {
		return sessionCookieTLS
	}
	return sessionCookie
}

// sessions are browser logins: a random 32-byte token in an HttpOnly,
// SameSite=Strict cookie, kept here by its SHA-256 (a leaked map does
// not leak cookies), bounded in count and age.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]session
}

type session struct {
	id      Identity
	expires time.Time
	ended   chan struct{} // closed when the session ends, so its event streams do
}

// drop ends the session k; the caller holds s.mu.
func (s *sessions) drop(k [32]byte) {
	if v, ok := s.m[k]; ok {
		close(v.ended)
		delete(s.m, k)
	}
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, max: max, now: now, m: map[[32]byte]session{}}
}

// create returns a new session token for id. Expired sessions go first;
// then, at maxSessionsPerUser, id's own oldest; a table still full of
// other users' sessions refuses with errSessionsFull.
func (s *sessions) create(id Identity) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest [32]byte
	var oldestAt time.Time
	mine := 0
	for k, v := range s.m {
		if !v.expires.After(now) {
			s.drop(k)
			continue
		}
		if v.id.Name != id.Name {
			continue
		}
		mine++
		if oldestAt.IsZero() || v.expires.Before(oldestAt) {
			oldest, oldestAt = k, v.expires
		}
	}
	switch {
	case mine >= maxSessionsPerUser:
		s.drop(oldest)
	case len(s.m) >= s.max:
		return "", errSessionsFull
	}
	s.m[sha256.Sum256([]byte(tok))] = session{id, now.Add(s.ttl), make(chan struct{})}
	return tok, nil
}

func (s *sessions) lookup(tok string) (Identity, bool) {
	k := sha256.Sum256([]byte(tok))
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return Identity{}, false
	}
	if !v.expires.After(s.now()) {
		s.drop(k)
		return Identity{}, false
	}
	return v.id, true
}

// watch returns a channel closed when the session tok ends by logout or
// eviction, and when it expires; false if there is no such session.
func (s *sessions) watch(tok string) (ended <-chan struct{}, expires time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[sha256.Sum256([]byte(tok))]
	if !ok || !v.expires.After(s.now()) {
		return nil, time.Time{}, false
	}
	return v.ended, v.expires, true
}

// clear ends every session (their SSE streams too).
func (s *sessions) clear() {
	s.mu.Lock()
	for k := range s.m {
		s.drop(k)
	}
	s.mu.Unlock()
}

func (s *sessions) remove(tok string) {
	s.mu.Lock()
	s.drop(sha256.Sum256([]byte(tok)))
	s.mu.Unlock()
}

// errNoCredentials is an authenticate result: none given, anonymous
// refused.
var errNoCredentials = errors.New("credentials required: HTTP Basic, a bearer token or a session from POST /api/v1/login")

// authenticate finds the request's identity: Basic, Bearer or the
// session cookie, else the anonymous identity if allowed. Credentials
// that are given and wrong are refused even when anonymous access is
// allowed, so a typo is not silently downgraded.
func (s *Server) authenticate(r *http.Request) (Identity, bool, error) {
	remote := remoteAddr(r)
	if h := r.Header.Get("Authorization"); h != "" {
		if user, pass, ok := r.BasicAuth(); ok {
			id, err := s.deps.Auth.Basic(r.Context(), user, pass, remote)
			return id, false, err
		}
		scheme, tok, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") && tok != "" {
			id, err := s.deps.Auth.Bearer(strings.TrimSpace(tok), remote)
			return id, false, err
		}
		return Identity{}, false, errors.New("unsupported Authorization scheme (want Basic or Bearer)")
	}
	if c, err := r.Cookie(sessionCookieName(r)); err == nil {
		if id, ok := s.sessions.lookup(c.Value); ok {
			return id, false, nil
		}
		return Identity{}, false, errors.New("the session has expired or was logged out; log in again")
	}
	if id, ok := s.deps.Auth.Anonymous(); ok {
		return id, true, nil
	}
	return Identity{}, false, errNoCredentials
}

// unauthorized answers 401 with the Basic challenge, or 429 when the
// address failed too often to have its credentials checked at all.
func unauthorized(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrTooManyFailures) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, ErrTooManyFailures.Error())
		return
	}
	if errors.Is(err, ErrBusy) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, ErrBusy.Error())
		return
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="edged"`)
	msg := err.Error()
	if errors.Is(err, ErrNoSuchUser) {
		msg = "no such user, or a wrong password or token"
	}
	writeError(w, http.StatusUnauthorized, msg)
}

// ctxKey keys the identity in a request's context.
type ctxKey struct{}

type authed struct {
	id        Identity
	anonymous bool
}

// auth serves h to requests whose identity has at least role min;
// state-changing methods must also come from an allowed origin.
func (s *Server) auth(min string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.originAllowed(r) {
			writeError(w, http.StatusForbidden, "origin "+r.Header.Get("Origin")+" may not change anything here (add it to http.cors_origins to allow it)")
			return
		}
		id, anon, err := s.authenticate(r)
		if err != nil {
			unauthorized(w, err)
			return
		}
		if rank(id.Role) < rank(min) {
			writeError(w, http.StatusForbidden, "role "+id.Role+" may not do this (needs "+min+" or above)")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, authed{id, anon})))
	}
}

func identityOf(r *http.Request) authed {
	a, _ := r.Context().Value(ctxKey{}).(authed)
	return a
}

// originAllowed applies the WebSocket listener's rule to a
// state-changing request: no Origin (a program, not a page), a page of
// the gateway itself, or a configured origin. The gateway's own origin is
// the whole of it: the scheme and port of the listener the request came
// in on, and a host given to HTTPServer or the address it came in on
// (another app on another port of the Pi is another origin). The Host
// header is never trusted: a DNS-rebinding page controls it.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if _, ok := s.cors[strings.ToLower(origin)]; ok {
		return true
	}
	u, err := url.Parse(origin)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if err != nil || !ok || u.Scheme != scheme || u.Path != "" || u.User != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	if port != strconv.Itoa(la.Port) {
		return false
	}
	host := canonicalHost(u.Host)
	if _, ok := s.hosts[host]; ok {
		return true
	}
	return isConnAddr(r, host)
}

// corsHeaders adds the CORS headers for a configured origin, and
// answers its preflight (true). Other origins get no CORS headers, so a
// browser does not let their pages read the answers.
func (s *Server) corsHeaders(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if _, ok := s.cors[strings.ToLower(origin)]; !ok || origin == "" {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, PATCH, POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// remoteAddr is the client's address as a net.Addr, nil if the server
// gave none it can parse.
func remoteAddr(r *http.Request) net.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// maxSessionsPerUser bounds one user's browser sessions; past it the
// user's own oldest goes, never another user's.
const maxSessionsPerUser = 8

// errSessionsFull refuses a login (503) when the table holds only other
// users' live sessions: ending one would let any user log everyone out.
var errSessionsFull = errors.New("web: too many browser sessions; try again later, or use HTTP Basic or a token")
