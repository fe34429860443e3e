package localbroker

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/secretfile"
	"github.com/edged/edged/sensors/topics"
)

// User is one account of the top-level `users:` list. The same accounts
// log in over MQTT (user name and password in CONNECT), MQTT over
// WebSocket, and HTTP (a password, or a bearer token).
type User struct {
	Name string `yaml:"name"`
	// Password is never accepted: it exists so that a plaintext
	// password gets a clear error instead of "unknown key".
	Password string `yaml:"password"`
	// PasswordHash is a bcrypt hash ("$2a$10$..." from `edged passwd`),
	// inline or as ${ENV_VAR}; or PasswordHashFile names a file holding
	// it, refused if others may read it.
	PasswordHash     string `yaml:"password_hash" edged:"env"`
	PasswordHashFile string `yaml:"password_hash_file"`
	// Role is viewer, publisher, operator or admin.
	Role string `yaml:"role"`
	// Publish, when set, narrows what the role may publish to the topics
	// matching one of these filters; everything else is denied (the
	// explicit final deny). It never widens the role.
	Publish []string `yaml:"publish"`
	// Tokens are the SHA-256 hashes ("sha256:<64 hex>", from `edged
	// token`) of bearer tokens for the HTTP API.
	Tokens []string `yaml:"tokens"`
}

// Limits of a bcrypt hash's cost: below bcryptMinCost a stolen config
// is cracked fast, above bcryptMaxCost one login keeps a Pi 2 core busy
// for seconds (cost 10 takes 47 ms on a 2020s x86 core, 70 ms under
// qemu-arm; every step doubles it).
const (
	bcryptMinCost = 10
	bcryptMaxCost = 13
	// PasswordCost is the cost `edged passwd` hashes with.
	PasswordCost = 10
)

// Validate checks one account on its own; Opts.Validate checks them
// together (duplicate names and tokens).
func (u *User) Validate() error {
	switch {
	case u.Name == "":
		return sensors.FieldErrorf("name", "missing")
	case len(u.Name) > 64 || strings.ContainsAny(u.Name, ": \t\r\n\x00"):
		return sensors.FieldErrorf("name", "%q is not a valid user name (at most 64 characters, no spaces or ':')", u.Name)
	case u.Password != "":
		return sensors.FieldErrorf("password", "plaintext passwords are not accepted: run `edged passwd` and set password_hash to the hash it prints")
	case u.PasswordHash != "" && u.PasswordHashFile != "":
		return sensors.FieldErrorf("password_hash_file", "set password_hash or password_hash_file, not both")
	case u.PasswordHash == "" && u.PasswordHashFile == "" && len(u.Tokens) == 0:
		return sensors.FieldErrorf("password_hash", "missing: this user could never log in (set password_hash, password_hash_file or tokens)")
	}
	if u.PasswordHash != "" {
		if err := checkHash(u.PasswordHash); err != nil {
			return &sensors.FieldError{Field: "password_hash", Err: err}
		}
	}
	if !validRole(u.Role) {
		if u.Role == "" {
			return sensors.FieldErrorf("role", "missing (want viewer, publisher, operator or admin)")
		}
		return sensors.FieldErrorf("role", "unknown role %q (want viewer, publisher, operator or admin)", u.Role)
	}
	if len(u.Publish) > 0 && u.Role == RoleViewer {
		return sensors.FieldErrorf("publish", "a viewer may publish nothing, and publish rules only narrow a role: use role publisher")
	}
	for i, f := range u.Publish {
		if err := checkRule(f); err != nil {
			return sensors.FieldErrorf("publish", "[%d] %q: %v", i, f, err)
		}
	}
	for i, t := range u.Tokens {
		if _, err := parseTokenHash(t); err != nil {
			return sensors.FieldErrorf("tokens", "[%d]: %v", i, err)
		}
	}
	return nil
}

func validRole(r string) bool {
	switch r {
	case RoleViewer, RolePublisher, RoleOperator, RoleAdmin:
		return true
	}
	return false
}

// checkHash accepts bcrypt hashes of a sensible cost only. A plaintext
// password in password_hash is the mistake this catches first.
func checkHash(h string) error {
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil || !strings.HasPrefix(h, "$2") {
		return errors.New("not a bcrypt hash (want $2a$10$... as `edged passwd` prints; plaintext passwords are not accepted)")
	}
	if cost < bcryptMinCost || cost > bcryptMaxCost {
		return fmt.Errorf("bcrypt cost %d is out of range (%d..%d; `edged passwd` uses %d)", cost, bcryptMinCost, bcryptMaxCost, PasswordCost)
	}
	return nil
}

// checkRule accepts MQTT topic filters outside $ topics.
func checkRule(f string) error {
	switch {
	case f == "":
		return errors.New("empty filter")
	case strings.HasPrefix(f, "$"):
		return errors.New("$ topics belong to the broker")
	case strings.ContainsRune(f, 0):
		return errors.New("contains a NUL character")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return errors.New("# must be the last level")
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return errors.New("a wildcard (+ or #) must be a whole level")
		}
	}
	return nil
}

// matchFilter reports whether topic matches the MQTT filter f.
func matchFilter(f, topic string) bool {
	fl, tl := strings.Split(f, "/"), strings.Split(topic, "/")
	for i, l := range fl {
		switch {
		case l == "#":
			return true
		case i >= len(tl):
			return false
		case l != "+" && l != tl[i]:
			return false
		}
	}
	return len(fl) == len(tl)
}

// tokenHashPrefix starts a token hash in the config.
const tokenHashPrefix = "sha256:"

func parseTokenHash(s string) ([32]byte, error) {
	var h [32]byte
	hexPart, ok := strings.CutPrefix(s, tokenHashPrefix)
	b, err := hex.DecodeString(hexPart)
	if !ok || err != nil || len(b) != len(h) {
		return h, fmt.Errorf("want %s followed by 64 hex digits, as `edged token` prints (never the token itself)", tokenHashPrefix)
	}
	copy(h[:], b)
	return h, nil
}

// tokenPrefix starts every token, so secret scanners and people can
// tell one apart.
const tokenPrefix = "edt_"

// NewToken returns a new random bearer token (32 bytes from
// crypto/rand) and the hash to put in a user's tokens list.
func NewToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("localbroker: token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, TokenHash(token), nil
}

// TokenHash is the config form of token: "sha256:" and the hex SHA-256
// of the token's text. A token has 256 random bits, so a fast hash is
// enough: there is nothing to guess.
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return tokenHashPrefix + hex.EncodeToString(h[:])
}

// HashPassword returns the bcrypt hash of password at PasswordCost, the
// form of password_hash.
func HashPassword(password []byte) (string, error) {
	if len(password) == 0 {
		return "", errors.New("localbroker: empty password")
	}
	if len(password) > 72 {
		return "", errors.New("localbroker: password longer than 72 bytes (bcrypt ignores the rest)")
	}
	h, err := bcrypt.GenerateFromPassword(password, PasswordCost)
	if err != nil {
		return "", fmt.Errorf("localbroker: %w", err)
	}
	return string(h), nil
}

// Identity is who a client is: a user's name and role, or the anonymous
// identity (Name "") with broker.anonymous_role. The zero Identity may
// do nothing.
type Identity struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Anonymous reports whether id is the identity of clients without
// credentials.
func (id Identity) Anonymous() bool { return id.Name == "" }

// Errors of Authenticate and AuthenticateToken, for callers to branch on
// (HTTP: 401 and 429).
var (
	ErrBadCredentials = errors.New("localbroker: wrong user name, password or token")
	// ErrTooManyFailures is returned without checking the credentials
	// when the source address failed too often in the last minute.
	ErrTooManyFailures = errors.New("localbroker: too many failed logins from this address; wait a minute")
	// ErrBusy is returned, without charging the address, when a password
	// check could not get a bcrypt slot in time (or its caller gave up).
	ErrBusy = errors.New("localbroker: too many logins being checked; try again shortly")
)

// RoleAtLeast reports whether role has at least the rights of min, in
// the order viewer < publisher < operator < admin. Unknown roles have
// none, and no role reaches an unknown min.
func RoleAtLeast(role, min string) bool {
	rank := func(r string) int {
		return slices.Index([]string{RoleViewer, RolePublisher, RoleOperator, RoleAdmin}, r)
	}
	return rank(role) >= 0 && rank(min) >= 0 && rank(role) >= rank(min)
}

// account is a User ready for logins.
type account struct {
	id      Identity
	hash    []byte // nil: no password login
	publish []string
}

// accounts checks credentials for every listener and the HTTP API. A
// failed login costs the source address one of maxFailures tokens,
// refilled over a minute; with none left, logins from there are refused
// at once, without running bcrypt. At most bcryptSlots checks run at
// once, so a login storm cannot take every core from sampling and the
// control loops.
//
// The users themselves sit in a directory that a live reload replaces
// whole (set); the failure budgets, bcrypt slots and counters stay.
type accounts struct {
	dir        atomic.Pointer[directory]
	fails      *gate // per-address failure buckets; only its token buckets are used
	bcryptSlot chan struct{}
	compare    func(hash, password []byte) error // bcrypt; tests count the checks
	waiting    atomic.Int32                      // checks waiting for or holding a slot
	now        func() time.Time

	mu       sync.Mutex
	addrSlot map[string]*addrSlot // one check at a time per source address
	cacheKey [32]byte             // HMAC key of cache: a leaked map does not give fast-hashed passwords
	cache    map[[32]byte]cached  // recent successful password checks
	// running holds the password checks under way by cacheKeyOf: a
	// login with the same name and password (a user's devices coming back
	// together after a reload forgot the cache) waits for that check
	// instead of running its own.
	running map[[32]byte]*runningCheck
	warn    func(kind, key, msg string, args ...any)

	failed  atomic.Uint64 // credentials checked and wrong
	limited atomic.Uint64 // refused without a check
}

// Bounds of the bcrypt queue: bcryptSlots checks run at once, at most
// bcryptQueue more wait, each at most bcryptWait; one source address
// runs one check at a time, so one host holds at most one slot and
// others still get theirs. Successful checks are remembered for
// cacheTTL (at most cacheMax of them), so HTTP Basic on every request
// costs one bcrypt check, not one per request.
const (
	bcryptSlots = 2
	bcryptQueue = 16
	bcryptWait  = 3 * time.Second
	cacheTTL    = 30 * time.Second
	cacheMax    = 256
)

// runningCheck is a password check others may wait for: done is closed
// once ok and err are set.
type runningCheck struct {
	d      *directory // checked against this directory's hash
	joined int        // logins waiting for it (guarded by accounts.mu)
	done   chan struct{}
	ok     bool
	err    error
}

type addrSlot struct {
	ch   chan struct{}
	refs int
}

type cached struct {
	id      Identity
	expires time.Time
}

// dummyHashes holds one dummy hash per cost, made on first use.
var (
	dummyMu     sync.Mutex
	dummyHashes = map[int][]byte{}
)

// dummyHash returns a hash of cost to check unknown users against. Its
// cost must be the highest configured one: a cheaper dummy lets timing
// tell a user name that exists from one that does not.
func dummyHash(cost int) []byte {
	dummyMu.Lock()
	defer dummyMu.Unlock()
	if h, ok := dummyHashes[cost]; ok {
		return h
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("edged dummy password"), cost)
	dummyHashes[cost] = h
	return h
}

// newAccounts loads the users (reading every password_hash_file now, so
// a bad file fails the start).
// directory is the users and the anonymous rights of one config; it is
// never changed once made.
type directory struct {
	byName    map[string]*account
	byToken   map[[32]byte]*account
	anonymous bool
	anonRole  string
	dummy     []byte // a hash to check unknown users against, so they take as long
}

func newAccounts(o Opts, warn func(kind, key, msg string, args ...any)) (*accounts, error) {
	a := &accounts{
		fails:      newGate(1<<30, o.MaxLoginFailures, o.MaxLoginFailures, time.Now),
		bcryptSlot: make(chan struct{}, bcryptSlots),
		compare:    bcrypt.CompareHashAndPassword,
		now:        time.Now,
		addrSlot:   map[string]*addrSlot{},
		cache:      map[[32]byte]cached{},
		running:    map[[32]byte]*runningCheck{},
		warn:       warn,
	}
	if _, err := rand.Read(a.cacheKey[:]); err != nil {
		return nil, fmt.Errorf("localbroker: %w", err)
	}
	return a, a.set(o)
}

// set replaces the users and the anonymous rights with o's (Users,
// AllowAnonymous, AnonymousRole), reading password hash files now. On
// error nothing changes. Remembered password checks are forgotten, so a
// changed or removed password stops working at once.
func (a *accounts) set(o Opts) error {
	d, err := newDirectory(o)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.dir.Store(d)
	clear(a.cache)
	a.mu.Unlock()
	return nil
}

func newDirectory(o Opts) (*directory, error) {
	a := &directory{
		byName:    map[string]*account{},
		byToken:   map[[32]byte]*account{},
		anonymous: o.AllowAnonymous,
		anonRole:  o.AnonymousRole,
	}
	for _, u := range o.Users {
		acc := &account{id: Identity{Name: u.Name, Role: u.Role}, publish: u.Publish}
		hash := u.PasswordHash
		if u.PasswordHashFile != "" {
			b, err := secretfile.Read("password_hash_file", u.PasswordHashFile)
			if err != nil {
				return nil, fmt.Errorf("localbroker: user %s: %w", u.Name, err)
			}
			hash = strings.TrimSpace(string(b))
			if err := checkHash(hash); err != nil {
				return nil, fmt.Errorf("localbroker: user %s: password_hash_file %s: %w", u.Name, u.PasswordHashFile, err)
			}
		}
		if hash != "" {
			acc.hash = []byte(hash)
		}
		a.byName[u.Name] = acc
		for _, t := range u.Tokens {
			h, _ := parseTokenHash(t) // validated
			a.byToken[h] = acc
		}
	}
	if len(a.byName) > 0 {
		cost := PasswordCost
		for _, acc := range a.byName {
			if c, err := bcrypt.Cost(acc.hash); err == nil {
				cost = max(cost, c)
			}
		}
		a.dummy = dummyHash(cost)
	}
	return a, nil
}

// users reports whether any user is configured: with none, credentials
// are ignored and every client is anonymous.
func (a *accounts) users() bool { return len(a.dir.Load().byName) > 0 }

// anonymousIdentity is the identity of clients without credentials, and
// whether they are admitted at all.
func (a *accounts) anonymousIdentity() (Identity, bool) {
	d := a.dir.Load()
	return Identity{Role: d.anonRole}, d.anonymous
}

// admitted takes one of remote's login tokens before a check, or
// reports false (and counts and logs the refusal) when none is left. A
// check that succeeds gives its token back (see succeeded); a failed one
// keeps it.
func (a *accounts) admitted(remote net.Addr) bool {
	if a.fails.take(remote) {
		return true
	}
	a.limited.Add(1)
	a.warn("login", sourceOf(remote), "refusing logins from an address that failed too often", "remote", remote.String())
	return false
}

// succeeded refunds the token admitted took.
func (a *accounts) succeeded(remote net.Addr) { a.fails.refund(remote) }

// failure counts and logs a failed login (at most once a minute per
// address, with the login kind's budget); admitted already charged it.
// Only a configured user name is logged: a password typed into the name
// field must not land in the journal.
func (a *accounts) failure(remote net.Addr, user, via string) {
	a.failed.Add(1)
	if _, ok := a.dir.Load().byName[user]; !ok && user != "" {
		user = "unknown user"
	}
	a.warn("login", sourceOf(remote), "refused a login: wrong user name, password or token", "remote", remote.String(), "user", user, "via", via)
}

// password checks a user name and password; ctx bounds the wait for a
// bcrypt slot.
func (a *accounts) password(ctx context.Context, user string, password []byte, remote net.Addr, via string) (Identity, error) {
	if !a.admitted(remote) {
		return Identity{}, ErrTooManyFailures
	}
	key := a.cacheKeyOf(user, password)
	if id, ok := a.cached(key); ok {
		a.succeeded(remote)
		return id, nil
	}
	d := a.dir.Load()
	acc := d.byName[user]
	hash := d.dummy
	if acc != nil && acc.hash != nil {
		hash = acc.hash
	}
	ok := false
	if hash != nil {
		var err error
		if ok, err = a.checkOnce(ctx, d, key, sourceOf(remote), hash, password); err != nil {
			a.succeeded(remote) // not checked: no failure to charge
			return Identity{}, err
		}
	}
	if !ok || acc == nil || acc.hash == nil {
		a.failure(remote, user, via)
		return Identity{}, ErrBadCredentials
	}
	a.succeeded(remote)
	a.remember(d, key, acc.id)
	return acc.id, nil
}

// checkOnce is check, shared: while a check of the same name and password
// against d runs, it waits for that one's answer (bounded by ctx and
// bcryptWait) instead of taking a bcrypt slot of its own.
func (a *accounts) checkOnce(ctx context.Context, d *directory, key [32]byte, source string, hash, password []byte) (bool, error) {
	a.mu.Lock()
	if r := a.running[key]; r != nil && r.d == d {
		r.joined++
		a.mu.Unlock()
		t := time.NewTimer(bcryptWait)
		defer t.Stop()
		select {
		case <-r.done:
			if r.err == nil {
				return r.ok, nil
			}
			return a.check(ctx, source, hash, password) // that one did not run (no slot, its caller gave up)
		case <-ctx.Done():
			return false, ErrBusy
		case <-t.C:
			return false, ErrBusy
		}
	}
	r := &runningCheck{d: d, done: make(chan struct{})}
	a.running[key] = r
	a.mu.Unlock()
	r.ok, r.err = a.check(ctx, source, hash, password)
	a.mu.Lock()
	if a.running[key] == r {
		delete(a.running, key)
	}
	a.mu.Unlock()
	close(r.done)
	return r.ok, r.err
}

// check runs one bcrypt comparison when source's turn and a slot come,
// or returns ErrBusy when the queue is full, the wait is over bcryptWait
// or ctx ends first.
func (a *accounts) check(ctx context.Context, source string, hash, password []byte) (bool, error) {
	if a.waiting.Add(1) > bcryptSlots+bcryptQueue {
		a.waiting.Add(-1)
		return false, ErrBusy
	}
	defer a.waiting.Add(-1)
	a.mu.Lock()
	s := a.addrSlot[source]
	if s == nil {
		s = &addrSlot{ch: make(chan struct{}, 1)}
		a.addrSlot[source] = s
	}
	s.refs++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if s.refs--; s.refs == 0 {
			delete(a.addrSlot, source)
		}
		a.mu.Unlock()
	}()
	t := time.NewTimer(bcryptWait)
	defer t.Stop()
	for _, slot := range []chan struct{}{s.ch, a.bcryptSlot} {
		select {
		case slot <- struct{}{}:
			defer func() { <-slot }()
		case <-ctx.Done():
			return false, ErrBusy
		case <-t.C:
			return false, ErrBusy
		}
	}
	return a.compare(hash, password) == nil, nil
}

func (a *accounts) cacheKeyOf(user string, password []byte) [32]byte {
	m := hmac.New(sha256.New, a.cacheKey[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(password)
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func (a *accounts) cached(key [32]byte) (Identity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[key]
	if !ok || !c.expires.After(a.now()) {
		return Identity{}, false
	}
	return c.id, true
}

// remember keeps a successful check made against directory d, unless a
// reload replaced d meanwhile.
func (a *accounts) remember(d *directory, key [32]byte, id Identity) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dir.Load() != d {
		return
	}
	if len(a.cache) >= cacheMax {
		for k, c := range a.cache {
			if !c.expires.After(now) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= cacheMax {
			clear(a.cache)
		}
	}
	a.cache[key] = cached{id, now.Add(cacheTTL)}
}

// token checks a bearer token.
func (a *accounts) token(token string, remote net.Addr) (Identity, error) {
	if !a.admitted(remote) {
		return Identity{}, ErrTooManyFailures
	}
	h := sha256.Sum256([]byte(token))
	for k, acc := range a.dir.Load().byToken {
		if subtle.ConstantTimeCompare(k[:], h[:]) == 1 {
			a.succeeded(remote)
			return acc.id, nil
		}
	}
	a.failure(remote, "", "token")
	return Identity{}, ErrBadCredentials
}

// mayPublish decides for an identity: its role, then its publish rules.
func (a *accounts) mayPublish(id Identity, tree topics.Tree, topic string) bool {
	if !mayPublish(id.Role, tree, topic) {
		return false
	}
	d := a.dir.Load()
	if id.Anonymous() {
		// A reload may have turned anonymous access off or changed its
		// role: a connected anonymous client keeps the rights of now.
		return d.anonymous && d.anonRole == id.Role
	}
	acc := d.byName[id.Name]
	if acc == nil || acc.id != id {
		return false // not one of ours (any more: a reload removed or changed the user)
	}
	if len(acc.publish) == 0 {
		return true
	}
	for _, f := range acc.publish {
		if matchFilter(f, topic) {
			return true
		}
	}
	return false // the explicit final deny
}
