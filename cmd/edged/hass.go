package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/hass"
)

// hassRoom runs the Home Assistant announcer. A reload replaces the
// announcer whole (apply): the new one reads the state file the old one
// wrote, so the entities that left the config are removed by the same
// logic as at a start.
type hassRoom struct {
	d       *daemon
	httpLns []net.Listener
	cur     atomic.Pointer[hass.Announcer] // the birth handler's
	birth   string                         // the subscribed birth topic
	stop    context.CancelFunc             // ends the current announcer's Run
	done    chan struct{}                  // closed when it has returned
}

// startHomeAssistant announces the gateway to Home Assistant (MQTT
// discovery) through the local broker, and again whenever Home
// Assistant's birth message arrives. httpLns are the bound HTTP
// listeners (plain first), for the dashboard's link.
func (d *daemon) startHomeAssistant(cfg *configs.Config, httpLns []net.Listener) error {
	d.hass = &hassRoom{d: d, httpLns: httpLns}
	return d.hass.apply(cfg)
}

// gateway is what cfg announces, with the opened sensors' quantities.
func (h *hassRoom) gateway(cfg *configs.Config) hass.Gateway {
	d := h.d
	g := hass.Gateway{
		ID:               cfg.Device.ID,
		Name:             cfg.Device.Name,
		TopicPrefix:      cfg.Device.TopicPrefix,
		Version:          buildVersion(),
		ConfigurationURL: cfg.HomeAssistant.ConfigurationURL,
		Controllers:      cfg.Controllers,
		Uplink:           d.uplink != nil,
	}
	if g.ConfigurationURL == "" {
		g.ConfigurationURL = dashboardURL(cfg.HTTP, h.httpLns)
	}
	for _, sc := range cfg.Sensors {
		g.Sensors = append(g.Sensors, hass.Sensor{ID: sc.ID, Name: sc.Name, Quantities: d.sensors[sc.ID].Quantities(), Poll: sc.PollOpts})
	}
	return g
}

// apply starts an announcer for cfg in place of the running one (if
// any): at start, and at a reload that changes what is announced.
func (h *hassRoom) apply(cfg *configs.Config) error {
	d := h.d
	o := cfg.HomeAssistant
	a, err := hass.New(o, h.gateway(cfg), d.broker, cfg.StateDir, d.clock, d.log)
	if err != nil {
		return err
	}
	first := h.stop == nil
	if !first {
		h.stop()
		<-h.done
	}
	h.cur.Store(a)
	if t := o.BirthTopic(); t != h.birth {
		if h.birth != "" {
			if err := d.broker.Unsubscribe(h.birth, hassBirthSub); err != nil {
				d.log.Warn("cannot unsubscribe from Home Assistant's old birth topic", "topic", h.birth, "error", err)
			}
		}
		// The handler runs in the publishing client's goroutine inside
		// the broker: Birth only wakes the announcer.
		if err := d.broker.Subscribe(t, hassBirthSub, func(m localbroker.Inbound) { h.cur.Load().Birth(m.Payload) }); err != nil {
			return err
		}
		h.birth = t
	}
	if o.Enabled && first {
		d.log.Info("announcing to Home Assistant", "prefix", o.Prefix, "entities", len(a.Entities()), "configuration_url", h.gateway(cfg).ConfigurationURL)
	}
	// At start before READY=1: the retained configs are there for the
	// first client.
	a.Start()
	ctx, stop := context.WithCancel(d.ctx)
	h.stop, h.done = stop, make(chan struct{})
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(h.done)
		a.Run(ctx)
	}()
	return nil
}

// hassBirthSub is the id of the broker subscription to Home Assistant's
// birth topic.
const hassBirthSub = 3

// dashboardURL is the link Home Assistant shows to the gateway's
// dashboard: the HTTPS listener if there is one, else the plain one. A
// listener on all interfaces is reached as <hostname>.local (mDNS, which
// Raspberry Pi OS runs; the HTTP server accepts that name), one on a
// LAN address by that address. A listener on loopback is reachable only
// from the gateway itself, not from the browser showing Home Assistant,
// so it gives no link ("").
func dashboardURL(c configs.HTTP, lns []net.Listener) string {
	if len(lns) == 0 {
		return ""
	}
	ln, scheme := lns[0], "http"
	if c.ListenTLS != "" {
		ln, scheme = lns[len(lns)-1], "https"
	}
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return ""
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		name, err := os.Hostname()
		if err != nil || name == "" || name == "localhost" {
			return ""
		}
		host = strings.ToLower(name) + ".local"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port)) + "/"
}
