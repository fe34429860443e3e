package localbroker

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestSetAccountsRevokesAnonymous: a reload that turns
// allow_anonymous off (or lowers anonymous_role) must stop a connected
// anonymous client from commanding, as it does for a removed user.
func TestSetAccountsRevokesAnonymous(t *testing.T) {
	b := usersBroker(t, func(o *Opts) {
		o.AllowAnonymous = true
		o.AnonymousRole = RoleOperator
	})
	anon, code := loginConnect(t, dialTCP(t, b), "c-anon", "", "")
	if code != 0 {
		t.Fatalf("anonymous: CONNACK 0x%02x", code)
	}
	defer anon.Disconnect(&paho.Disconnect{})
	if rc, err := anon.publish(prefix+"/control/heat/set", `{"mode":"off"}`); err != nil || rc >= 0x80 {
		t.Fatalf("anonymous operator before the reload: reason 0x%02x err %v", rc, err)
	}
	o := b.opts
	o.AllowAnonymous = false
	if err := b.SetAccounts(o); err != nil {
		t.Fatal(err)
	}
	if rc, err := anon.publish(prefix+"/control/heat/set", `{"mode":"heat","setpoint":30}`); err == nil && rc < 0x80 {
		t.Errorf("allow_anonymous is now false, yet the connected anonymous client still commands the heater (reason 0x%02x)", rc)
	}
}
