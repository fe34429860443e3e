package localbroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"
)

// testHash is the bcrypt hash of "pw-" + name, made once per name.
var (
	hashMu sync.Mutex
	hashes = map[string]string{}
)

func testHash(t *testing.T, password string) string {
	t.Helper()
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashes[password]; ok {
		return h
	}
	h, err := HashPassword([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	hashes[password] = h
	return h
}

// loginConnect connects with user name and password and returns the
// client, or nil and the CONNACK reason code.
func loginConnect(t *testing.T, conn net.Conn, id, user, password string) (*client, byte) {
	t.Helper()
	c := &client{msgs: make(chan *paho.Publish, 100)}
	c.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	ca, err := c.Connect(ctx, cp)
	if ca != nil && ca.ReasonCode != 0 {
		return nil, ca.ReasonCode
	}
	if err != nil {
		t.Fatalf("connect %s as %q: %v", id, user, err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c, 0
}

func usersBroker(t *testing.T, mod func(*Opts)) *Broker {
	t.Helper()
	return startBroker(t, func(o *Opts) {
		o.AllowAnonymous = false
		o.Users = []User{
			{Name: "viewer", PasswordHash: testHash(t, "pw-viewer"), Role: RoleViewer},
			{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator},
			{Name: "vent-op", PasswordHash: testHash(t, "pw-vent-op"), Role: RoleOperator, Publish: []string{prefix + "/control/vent/set"}},
			{Name: "esp-3", PasswordHash: testHash(t, "pw-esp-3"), Role: RolePublisher, Publish: []string{"home/esp-3/#"}},
		}
		if mod != nil {
			mod(o)
		}
	})
}

// TestLoginMatrix: users log in with their password only; without
// credentials nobody gets in once anonymous access is off. Before issue
// 8 there were no accounts: every client was anonymous.
func TestLoginMatrix(t *testing.T) {
	b := usersBroker(t, nil)
	for _, tc := range []struct {
		name, user, password string
		code                 byte
	}{
		{"right password", "op", "pw-op", 0},
		{"wrong password", "op", "pw-viewer", 0x86},
		{"unknown user", "nobody", "pw-op", 0x86},
		{"anonymous when disabled", "", "", 0x87},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, code := loginConnect(t, dialTCP(t, b), "c-"+strings.ReplaceAll(tc.name, " ", "-"), tc.user, tc.password)
			if code != tc.code {
				t.Fatalf("CONNACK 0x%02x, want 0x%02x", code, tc.code)
			}
		})
	}
}

// TestUserRightsAndRules: a viewer's command is refused, an operator's
// accepted; publish rules narrow a role to their topics (the final
// deny), and never widen it.
func TestUserRightsAndRules(t *testing.T) {
	b := usersBroker(t, nil)
	for _, tc := range []struct {
		user, topic string
		ok          bool
	}{
		{"viewer", prefix + "/control/heat/set", false},
		{"viewer", "home/x", false},
		{"op", prefix + "/control/heat/set", true},
		{"op", "home/x", true},
		{"vent-op", prefix + "/control/vent/set", true},
		{"vent-op", prefix + "/control/heat/set", false},
		{"vent-op", "home/x", false},
		{"esp-3", "home/esp-3/temp", true},
		{"esp-3", "home/esp-4/temp", false},
		{"esp-3", prefix + "/sensor/air/temperature", false},
	} {
		c, code := loginConnect(t, dialTCP(t, b), "c-"+tc.user, tc.user, "pw-"+tc.user)
		if code != 0 {
			t.Fatalf("%s: CONNACK 0x%02x", tc.user, code)
		}
		rc, err := c.publish(tc.topic, `{"mode":"off"}`)
		if got := err == nil && rc < 0x80; got != tc.ok {
			t.Errorf("%s publishing %s: reason 0x%02x err %v, want allowed=%v", tc.user, tc.topic, rc, err, tc.ok)
		}
		id := Identity{Name: tc.user, Role: map[string]string{"viewer": RoleViewer, "op": RoleOperator, "vent-op": RoleOperator, "esp-3": RolePublisher}[tc.user]}
		if b.MayPublish(id, tc.topic) != tc.ok {
			t.Errorf("MayPublish(%v, %s) = %v", id, tc.topic, !tc.ok)
		}
		c.Disconnect(&paho.Disconnect{})
	}
	if b.MayPublish(Identity{Name: "op", Role: RoleAdmin}, "$SYS/x") {
		t.Error("an identity that is not the configured user's got its claimed role")
	}
}

// TestLoginFailuresRateLimited: after max_login_failures wrong
// passwords from one address, logins from it are refused at once
// without a bcrypt check, the right password too, and the log holds one
// line.
func TestLoginFailuresRateLimited(t *testing.T) {
	b := usersBroker(t, func(o *Opts) { o.MaxLoginFailures = 3 })
	for i := range 3 {
		if _, code := loginConnect(t, dialTCP(t, b), "x", "op", "wrong"); code != 0x86 {
			t.Fatalf("attempt %d: CONNACK 0x%02x, want 0x86", i, code)
		}
	}
	for i := range 5 {
		if _, code := loginConnect(t, dialTCP(t, b), "x", "op", "pw-op"); code != 0x9f {
			t.Fatalf("attempt %d after the limit: CONNACK 0x%02x, want 0x9f", i, code)
		}
	}
	if _, err := b.Authenticate(context.Background(), "op", "pw-op", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); !errors.Is(err, ErrTooManyFailures) {
		t.Errorf("HTTP login from the same address: %v, want ErrTooManyFailures", err)
	}
	if id, err := b.Authenticate(context.Background(), "op", "pw-op", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7)}); err != nil || id != (Identity{Name: "op", Role: RoleOperator}) {
		t.Errorf("another address: %v %v", id, err)
	}
	s := b.Stats()
	if s.LoginFailures != 3 || s.LoginsLimited != 6 {
		t.Errorf("login_failures %d, logins_limited %d; want 3 and 6", s.LoginFailures, s.LoginsLimited)
	}
}

// TestTakeoverAcrossUsersRefused: identities are kept per connection,
// and a client id held by one user cannot be taken over by another (who
// would inherit its session and, for Reply, its name).
func TestTakeoverAcrossUsersRefused(t *testing.T) {
	b := usersBroker(t, nil)
	if _, code := loginConnect(t, dialTCP(t, b), "shared-id", "op", "pw-op"); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	if _, code := loginConnect(t, dialTCP(t, b), "shared-id", "viewer", "pw-viewer"); code != 0x87 {
		t.Fatalf("takeover by another user: CONNACK 0x%02x, want 0x87", code)
	}
	if _, code := loginConnect(t, dialTCP(t, b), "shared-id", "op", "pw-op"); code != 0 {
		t.Fatalf("takeover by the same user: CONNACK 0x%02x", code)
	}
}

// TestReplyPerUser: a reply goes to a response topic only if the user
// who sent the request may publish there (its rules included).
func TestReplyPerUser(t *testing.T) {
	b := usersBroker(t, nil)
	reqs := make(chan Inbound, 2)
	if err := b.Subscribe(gw.ControlSetFilter(), 7, func(m Inbound) { reqs <- m }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, topic, response string
		ok                    bool
	}{
		{"op", "heat", "app/replies", true},
		{"vent-op", "vent", "app/replies", false}, // outside its rules
	} {
		c, code := loginConnect(t, dialTCP(t, b), "c-"+tc.user, tc.user, "pw-"+tc.user)
		if code != 0 {
			t.Fatalf("CONNACK 0x%02x", code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Publish(ctx, &paho.Publish{Topic: prefix + "/control/" + tc.topic + "/set", QoS: 1, Payload: []byte(`{}`),
			Properties: &paho.PublishProperties{ResponseTopic: tc.response, CorrelationData: []byte("1")}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		req := <-reqs
		if req.Identity.Name != tc.user {
			t.Fatalf("request identity %+v, want user %s", req.Identity, tc.user)
		}
		err = b.Reply(req, []byte(`{}`))
		if (err == nil) != tc.ok {
			t.Errorf("%s: reply to %s: %v, want allowed=%v", tc.user, tc.response, err, tc.ok)
		}
	}
}

func TestAuthenticateToken(t *testing.T) {
	tok, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "edt_") || len(tok) != 4+43 || TokenHash(tok) != hash || !strings.HasPrefix(hash, "sha256:") || len(hash) != 7+64 {
		t.Fatalf("token %q hash %q", tok, hash)
	}
	b := usersBroker(t, func(o *Opts) {
		o.Users = append(o.Users, User{Name: "dash", Role: RoleViewer, Tokens: []string{hash}})
	})
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}
	if id, err := b.AuthenticateToken(tok, remote); err != nil || id != (Identity{Name: "dash", Role: RoleViewer}) {
		t.Fatalf("token login: %v %v", id, err)
	}
	if _, err := b.AuthenticateToken(tok+"x", remote); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := b.Authenticate(context.Background(), "dash", "", remote); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("password login of a token-only user: %v", err)
	}
	if id, ok := b.Anonymous(); ok || id.Role != RoleViewer || !id.Anonymous() {
		t.Fatalf("Anonymous() = %v %v", id, ok)
	}
}

// TestTokenHashIsSHA256 pins the config form of a token against a
// known vector, so `edged token` and the broker cannot drift apart.
func TestTokenHashIsSHA256(t *testing.T) {
	if got := TokenHash("abc"); got != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatal(got)
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if cost, _ := bcrypt.Cost([]byte(h)); cost != PasswordCost || checkHash(h) != nil {
		t.Fatalf("hash %q", h)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")) != nil {
		t.Fatal("hash does not match")
	}
	for _, pw := range []string{"", strings.Repeat("x", 73)} {
		if _, err := HashPassword([]byte(pw)); err == nil {
			t.Errorf("password of %d bytes accepted", len(pw))
		}
	}
}

func TestRoleAtLeast(t *testing.T) {
	for _, tc := range []struct {
		role, min string
		ok        bool
	}{
		{RoleAdmin, RoleOperator, true}, {RoleOperator, RoleOperator, true}, {RolePublisher, RoleOperator, false},
		{RoleViewer, RoleViewer, true}, {"", RoleViewer, false}, {"root", RoleViewer, false}, {RoleAdmin, "root", false},
	} {
		if RoleAtLeast(tc.role, tc.min) != tc.ok {
			t.Errorf("RoleAtLeast(%q, %q) = %v", tc.role, tc.min, !tc.ok)
		}
	}
}

func TestMatchFilter(t *testing.T) {
	for _, tc := range []struct {
		f, topic string
		ok       bool
	}{
		{"home/esp-3/#", "home/esp-3/t", true}, {"home/esp-3/#", "home/esp-3", true}, {"home/esp-3/#", "home/esp-30/t", false},
		{"home/+/t", "home/a/t", true}, {"home/+/t", "home/a/b/t", false}, {"a/b", "a/b", true}, {"a/b", "a/b/c", false},
		{"#", "x/y", true}, {"+", "x", true}, {"+", "x/y", false},
	} {
		if matchFilter(tc.f, tc.topic) != tc.ok {
			t.Errorf("matchFilter(%q, %q) = %v", tc.f, tc.topic, !tc.ok)
		}
	}
}

func TestUserValidate(t *testing.T) {
	good := testHash(t, "pw-x")
	low, _ := bcrypt.GenerateFromPassword([]byte("x"), 4)
	for _, tc := range []struct {
		u    User
		want string // "" = valid
	}{
		{User{Name: "a", PasswordHash: good, Role: RoleViewer}, ""},
		{User{Name: "a", Tokens: []string{TokenHash("t")}, Role: RoleAdmin}, ""},
		{User{Name: "a", PasswordHashFile: "/x", Role: RolePublisher, Publish: []string{"a/+/b", "c/#"}}, ""},
		{User{Name: "", PasswordHash: good, Role: RoleViewer}, "name: missing"},
		{User{Name: "a:b", PasswordHash: good, Role: RoleViewer}, "not a valid user name"},
		{User{Name: "a", Password: "hunter2", Role: RoleViewer}, "password: plaintext passwords are not accepted"},
		{User{Name: "a", PasswordHash: "hunter2", Role: RoleViewer}, "password_hash: not a bcrypt hash"},
		{User{Name: "a", PasswordHash: string(low), Role: RoleViewer}, "bcrypt cost 4 is out of range"},
		{User{Name: "a", PasswordHash: good, PasswordHashFile: "/x", Role: RoleViewer}, "not both"},
		{User{Name: "a", Role: RoleViewer}, "could never log in"},
		{User{Name: "a", PasswordHash: good}, "role: missing"},
		{User{Name: "a", PasswordHash: good, Role: "root"}, `unknown role "root"`},
		{User{Name: "a", PasswordHash: good, Role: RoleViewer, Publish: []string{"x"}}, "a viewer may publish nothing"},
		{User{Name: "a", PasswordHash: good, Role: RolePublisher, Publish: []string{"a/#/b"}}, "# must be the last level"},
		{User{Name: "a", PasswordHash: good, Role: RolePublisher, Publish: []string{"a/b+"}}, "must be a whole level"},
		{User{Name: "a", PasswordHash: good, Role: RolePublisher, Publish: []string{"$SYS/#"}}, "$ topics"},
		{User{Name: "a", PasswordHash: good, Role: RolePublisher, Publish: []string{""}}, "empty filter"},
		{User{Name: "a", Role: RoleViewer, Tokens: []string{"edt_abc"}}, "never the token itself"},
	} {
		err := tc.u.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.u, err, tc.want)
		}
	}
	dup := []User{{Name: "a", PasswordHash: good, Role: RoleViewer}, {Name: "a", PasswordHash: good, Role: RoleAdmin}}
	if err := validateUsers(dup); err == nil || !strings.Contains(err.Error(), `user "a" is defined twice`) {
		t.Errorf("duplicate user: %v", err)
	}
}

// TestCredentialsIgnoredWithoutUsers: with no users configured, an app
// that sends a user name is anonymous, as with Mosquitto without a
// password file, instead of being refused.
func TestCredentialsIgnoredWithoutUsers(t *testing.T) {
	b := startBroker(t, nil)
	if _, code := loginConnect(t, dialTCP(t, b), "legacy-app", "someone", "whatever"); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
}

// TestConcurrentWrongLoginsBypassFailureLimit pins the bug where the
// failed-login budget was only peeked at before bcrypt and charged after:
// concurrent wrong logins from one address all ran bcrypt. Now each check
// takes a token first, so at most the budget runs and the rest are
// refused at once, while the checks are still in flight.
func TestConcurrentWrongLoginsBypassFailureLimit(t *testing.T) {
	const budget, n = 3, 40
	a, err := newAccounts(Opts{MaxLoginFailures: budget, Users: []User{
		{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator},
	}}, func(string, string, string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	checks := 0
	release := make(chan struct{})
	a.compare = func(hash, pw []byte) error {
		mu.Lock()
		checks++
		mu.Unlock()
		<-release
		return bcrypt.ErrMismatchedHashAndPassword
	}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 1}
	refused := make(chan struct{}, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.password(context.Background(), "op", []byte("wrong"), remote, "test"); errors.Is(err, ErrTooManyFailures) {
				refused <- struct{}{}
			}
		}()
	}
	got := 0
	timeout := time.After(10 * time.Second)
wait:
	for got < n-budget {
		select {
		case <-refused:
			got++
		case <-timeout:
			break wait
		}
	}
	close(release)
	wg.Wait()
	if got < n-budget {
		t.Errorf("while %d checks were held, only %d of %d logins were refused at once; want %d", budget, got, n, n-budget)
	}
	if checks > budget {
		t.Errorf("%d bcrypt checks ran for %d concurrent wrong logins; want at most %d", checks, n, budget)
	}
}

// TestWrongLoginFloodDelaysOtherAddresses pins the bug where the two
// bcrypt slots were a queue without bound, shared by every address: one
// host's wrong logins held both slots and a correct login from another
// address waited behind all of them. Now one address runs one check at a
// time, so the other's login completes while the flood is still held.
func TestWrongLoginFloodDelaysOtherAddresses(t *testing.T) {
	a, err := newAccounts(Opts{MaxLoginFailures: 5, Users: []User{
		{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator},
	}}, func(string, string, string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	release, entered := make(chan struct{}), make(chan struct{}, 10)
	real := a.compare
	a.compare = func(hash, pw []byte) error {
		if !strings.HasPrefix(string(pw), "wrong") {
			return real(hash, pw)
		}
		entered <- struct{}{}
		<-release
		return bcrypt.ErrMismatchedHashAndPassword
	}
	flood := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 66), Port: 1}
	var wg sync.WaitGroup
	floodDone := make(chan struct{}, 5)
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each its own guess: the same one would share one check.
			_, _ = a.password(context.Background(), "op", fmt.Appendf(nil, "wrong-%d", i), flood, "test")
			floodDone <- struct{}{}
		}()
	}
	defer wg.Wait()
	defer close(release)
	<-entered
	for i := 0; a.waiting.Load() < 5; i++ { // every flood check queued
		if i > 1e7 {
			t.Fatal("the flood's checks never all queued")
		}
		runtime.Gosched()
	}
	res := make(chan error, 1)
	go func() {
		_, err := a.password(context.Background(), "op", []byte("pw-op"), &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 1}, "test")
		res <- err
	}()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("correct login from another address during the flood: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a correct login from another address waited behind another host's wrong logins")
	}
	if len(floodDone) != 0 {
		t.Error("the flood ended before the other login; the test proves nothing")
	}
}

// TestLoginWaitBoundedByContext: a check that cannot get a bcrypt slot
// ends with ErrBusy when its caller gives up, and is not charged as a
// failure; a correct password is remembered, so repeating it runs no
// second bcrypt check.
func TestLoginWaitBoundedByContext(t *testing.T) {
	a, err := newAccounts(Opts{MaxLoginFailures: 5, Users: []User{
		{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator},
	}}, func(string, string, string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	for range bcryptSlots {
		a.bcryptSlot <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 8), Port: 1}
	if _, err := a.password(ctx, "op", []byte("pw-op"), remote, "test"); !errors.Is(err, ErrBusy) {
		t.Fatalf("with every slot held and the context ended: %v, want ErrBusy", err)
	}
	if a.failed.Load() != 0 || !a.fails.take(remote) {
		t.Error("a check that never ran was charged as a failure")
	}
	for range bcryptSlots {
		<-a.bcryptSlot
	}
	checks := 0
	real := a.compare
	a.compare = func(h, p []byte) error { checks++; return real(h, p) }
	for i := range 3 {
		if id, err := a.password(context.Background(), "op", []byte("pw-op"), remote, "test"); err != nil || id.Name != "op" {
			t.Fatalf("login %d: %v %v", i, id, err)
		}
	}
	if checks != 1 {
		t.Errorf("%d bcrypt checks for 3 logins with the same password; want 1", checks)
	}
	if _, err := a.password(context.Background(), "op", []byte("wrong"), remote, "test"); !errors.Is(err, ErrBadCredentials) || checks != 2 {
		t.Errorf("a wrong password after a cached right one: %v after %d checks", err, checks)
	}
}

// TestFailedLoginLogsTypedPassword pins the bug where a failed login
// logged the user name as typed: a password typed into the name field
// landed in the journal. Only configured names are logged.
func TestFailedLoginLogsTypedPassword(t *testing.T) {
	var logged []any
	a, err := newAccounts(Opts{MaxLoginFailures: 5, Users: []User{
		{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator},
	}}, func(_, _, _ string, args ...any) { logged = append(logged, args...) })
	if err != nil {
		t.Fatal(err)
	}
	a.compare = func(h, p []byte) error { return bcrypt.ErrMismatchedHashAndPassword }
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 5), Port: 1}
	_, _ = a.password(context.Background(), "hunter2-secret", []byte("x"), remote, "test")
	_, _ = a.password(context.Background(), "op", []byte("x"), &net.TCPAddr{IP: net.IPv4(192, 0, 2, 6), Port: 1}, "test")
	s := fmt.Sprint(logged...)
	if strings.Contains(s, "hunter2-secret") {
		t.Errorf("the log holds a name that is no user: %s", s)
	}
	if !strings.Contains(s, "unknown user") || !strings.Contains(s, "op") {
		t.Errorf("the log should name configured users and say unknown user otherwise: %s", s)
	}
}

// TestDummyHashCostRevealsUsers pins the bug where unknown users were
// checked against a cost-10 dummy hash whatever the configured costs: with
// a user at cost 11, a known name took twice as long as an unknown one.
// The dummy now has the highest configured cost.
func TestDummyHashCostRevealsUsers(t *testing.T) {
	h11, err := bcrypt.GenerateFromPassword([]byte("pw"), 11)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAccounts(Opts{MaxLoginFailures: 5, Users: []User{
		{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator},
		{Name: "slow", PasswordHash: string(h11), Role: RoleViewer},
	}}, func(string, string, string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost(a.dir.Load().dummy); err != nil || cost != 11 {
		t.Errorf("dummy hash cost %d (%v), want 11, the highest configured", cost, err)
	}
}

// TestSetAccountsLive is the broker's part of a live reload (issue 13):
// new accounts apply to the next login, a password check remembered
// under the old accounts does not outlive them, a connected client keeps
// its session, and a removed user's connection may no longer publish.
func TestSetAccountsLive(t *testing.T) {
	b := usersBroker(t, nil)
	op, code := loginConnect(t, dialTCP(t, b), "c-op", "op", "pw-op")
	if code != 0 {
		t.Fatalf("op: CONNACK 0x%02x", code)
	}
	defer op.Disconnect(&paho.Disconnect{})
	esp, code := loginConnect(t, dialTCP(t, b), "c-esp", "esp-3", "pw-esp-3")
	if code != 0 {
		t.Fatalf("esp-3: CONNACK 0x%02x", code)
	}
	defer esp.Disconnect(&paho.Disconnect{})
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}
	if _, err := b.Authenticate(context.Background(), "op", "pw-op", remote); err != nil {
		t.Fatal(err) // now remembered
	}

	o := b.opts
	o.AllowAnonymous = true
	o.Users = []User{
		{Name: "op", PasswordHash: testHash(t, "pw-op-2"), Role: RoleOperator},
		{Name: "new", PasswordHash: testHash(t, "pw-new"), Role: RoleViewer},
	}
	if err := b.SetAccounts(o); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate(context.Background(), "op", "pw-op", remote); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old password after the change: %v, want ErrBadCredentials", err)
	}
	for _, tc := range []struct {
		user, password string
		code           byte
	}{
		{"op", "pw-op-2", 0},
		{"new", "pw-new", 0},
		{"esp-3", "pw-esp-3", 0x86},
		{"", "", 0}, // anonymous is allowed now
	} {
		c, code := loginConnect(t, dialTCP(t, b), "c2-"+tc.user, tc.user, tc.password)
		if code != tc.code {
			t.Errorf("login %q after the change: CONNACK 0x%02x, want 0x%02x", tc.user, code, tc.code)
		}
		if c != nil {
			c.Disconnect(&paho.Disconnect{})
		}
	}
	// The connected operator is unchanged (same name and role): its
	// session goes on and it may still command.
	if rc, err := op.publish(prefix+"/control/heat/set", `{"mode":"off"}`); err != nil || rc >= 0x80 {
		t.Errorf("connected op after the change: reason 0x%02x err %v", rc, err)
	}
	// esp-3 is gone: its connection may no longer publish.
	if rc, err := esp.publish("home/esp-3/temp", "1"); err == nil && rc < 0x80 {
		t.Errorf("removed user's connection still publishes (reason 0x%02x)", rc)
	}

	bad := o
	bad.Users = []User{{Name: "x", PasswordHashFile: "/nonexistent/x.hash", Role: RoleViewer}}
	if err := b.SetAccounts(bad); err == nil {
		t.Fatal("unreadable hash file: no error")
	}
	if _, err := b.Authenticate(context.Background(), "new", "pw-new", remote); err != nil {
		t.Errorf("accounts changed by a refused SetAccounts: %v", err)
	}
}

// TestConcurrentSameLoginsShareOneCheck: after a reload forgot the
// remembered checks, one user's devices logging in at once with the same
// password (from different addresses) run one bcrypt check, not one
// each (at most two at a time: on a Pi 2 about a second per check); a
// wrong password shares the answer and is charged to each; after the
// next reload a login checks against the new hash.
func TestConcurrentSameLoginsShareOneCheck(t *testing.T) {
	users := []User{{Name: "op", PasswordHash: testHash(t, "pw-op"), Role: RoleOperator}}
	a, err := newAccounts(Opts{MaxLoginFailures: 50, Users: users}, func(string, string, string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	var checks atomic.Int32
	release := make(chan struct{})
	real := a.compare
	a.compare = func(hash, pw []byte) error {
		checks.Add(1)
		<-release
		return real(hash, pw)
	}
	const n = 8
	for _, pw := range []string{"pw-op", "wrong"} {
		checks.Store(0)
		release = make(chan struct{})
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := a.password(context.Background(), "op", []byte(pw), &net.TCPAddr{IP: net.IPv4(192, 0, 2, byte(10+i)), Port: 1}, "test")
				errs <- err
			}()
		}
		// One login runs the check, the others have joined it.
		for i := 0; ; i++ {
			a.mu.Lock()
			joined := -1
			if r := a.running[a.cacheKeyOf("op", []byte(pw))]; r != nil {
				joined = r.joined
			}
			a.mu.Unlock()
			if joined == n-1 {
				break
			}
			if i > 1e7 {
				t.Fatalf("%s: %d of %d logins joined the check under way, %d bcrypt checks", pw, joined, n-1, checks.Load())
			}
			runtime.Gosched()
		}
		close(release)
		for range n {
			err := <-errs
			if pw == "pw-op" && err != nil || pw == "wrong" && !errors.Is(err, ErrBadCredentials) {
				t.Errorf("%s: %v", pw, err)
			}
		}
		if c := checks.Load(); c != 1 {
			t.Errorf("%s: %d logins ran %d bcrypt checks, want 1", pw, n, c)
		}
		if err := a.set(Opts{MaxLoginFailures: 50, Users: users}); err != nil { // forgets the remembered check
			t.Fatal(err)
		}
	}
	if got := a.failed.Load(); got != n {
		t.Errorf("%d failures counted for %d wrong logins", got, n)
	}
}
