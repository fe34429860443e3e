package localbroker

import (
	"bytes"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// access is the auth and ACL hook. Until users and passwords arrive (a
// later issue), every client is anonymous: it is admitted only when
// AllowAnonymous is set and gets the rights of AnonymousRole.
//
// What a role may do, with P the topic prefix:
//
//	viewer     subscribe to anything; publish nothing
//	publisher  + publish outside P/ (P/ belongs to the gateway)
//	operator   + publish P/control/<id>/set
//	admin      anything
type access struct {
	mqtt.HookBase
	allowAnonymous bool
	role           string
	prefix         string // topic prefix with trailing '/'
}

func (a *access) ID() string { return "edged-access" }

func (a *access) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (a *access) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return a.allowAnonymous
}

func (a *access) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write {
		return true
	}
	return a.mayPublish(cl.ID, topic)
}

// mayPublish decides for a client by id. Every client is anonymous until
// user accounts exist, so the id does not matter yet; the signature is
// where per-user roles will be looked up.
func (a *access) mayPublish(clientID, topic string) bool {
	return mayPublish(a.role, a.prefix, topic)
}

// mayPublish decides whether role may publish to topic.
func mayPublish(role, prefix, topic string) bool {
	switch role {
	case RoleAdmin:
		return true
	case RoleOperator:
		if isControlSet(prefix, topic) {
			return true
		}
		fallthrough
	case RolePublisher:
		return !strings.HasPrefix(topic, prefix) && !strings.HasPrefix(topic, "$")
	default: // viewer, and anything unknown: deny
		return false
	}
}

// isControlSet matches P/control/<id>/set.
func isControlSet(prefix, topic string) bool {
	rest, ok := strings.CutPrefix(topic, prefix+"control/")
	if !ok {
		return false
	}
	id, tail, ok := strings.Cut(rest, "/")
	return ok && id != "" && tail == "set"
}
