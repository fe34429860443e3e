package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/hass"
)

// startHomeAssistant announces the gateway to Home Assistant (MQTT
// discovery) through the local broker, and again whenever Home
// Assistant's birth message arrives. httpLns are the bound HTTP
// listeners (plain first), for the dashboard's link.
func (d *daemon) startHomeAssistant(ctx context.Context, cfg *configs.Config, httpLns []net.Listener) error {
	o := cfg.HomeAssistant
	g := hass.Gateway{
		ID:               cfg.Device.ID,
		Name:             cfg.Device.Name,
		TopicPrefix:      cfg.Device.TopicPrefix,
		Version:          buildVersion(),
		ConfigurationURL: o.ConfigurationURL,
		Controllers:      cfg.Controllers,
		Uplink:           d.uplink != nil,
	}
	if g.ConfigurationURL == "" {
		g.ConfigurationURL = dashboardURL(cfg.HTTP, httpLns)
	}
	for i, sc := range cfg.Sensors {
		g.Sensors = append(g.Sensors, hass.Sensor{ID: sc.ID, Name: sc.Name, Quantities: d.sensors[i].Quantities(), Poll: sc.PollOpts})
	}
	a, err := hass.New(o, g, d.broker, cfg.StateDir, d.clock, d.log)
	if err != nil {
		return err
	}
	// The handler runs in the publishing client's goroutine inside the
	// broker: Birth only wakes the announcer.
	if err := d.broker.Subscribe(o.BirthTopic(), 3, func(m localbroker.Inbound) { a.Birth(m.Payload) }); err != nil {
		return err
	}
	if o.Enabled {
		d.log.Info("announcing to Home Assistant", "prefix", o.Prefix, "entities", len(a.Entities()), "configuration_url", g.ConfigurationURL)
	}
	// Before READY=1: the retained configs are there for the first
	// client.
	a.Start()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		a.Run(ctx)
	}()
	return nil
}

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
