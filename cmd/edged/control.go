package main

import (
	"context"
	"strings"
	"sync"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
)

// commandQueue bounds the control commands waiting to be applied; a
// flood beyond it is dropped (and logged), never queued without end.
const commandQueue = 16

// startControllers opens one loop per controller, feeds it the readings
// and availability through the pipeline, and serves its commands on
// PREFIX/control/<id>/set, replying on the MQTT 5 response topic.
func (d *daemon) startControllers(ctx context.Context, cfg *configs.Config) error {
	if len(cfg.Controllers) == 0 {
		return nil
	}
	loops := map[string]*control.Loop{}
	for _, c := range cfg.Controllers {
		l, err := control.New(c, d.actuators[c.Output], sensors.SystemClock, d.broker,
			cfg.Device.TopicPrefix, cfg.StateDir, d.log) // the loop adds component and controller
		if err != nil {
			return err
		}
		loops[c.ID] = l
		d.pipe.Observe(l)
	}
	cmds := make(chan localbroker.Inbound, commandQueue)
	prefix := cfg.Device.TopicPrefix + "/control/"
	if err := d.broker.Subscribe(prefix+"+/set", 1, func(m localbroker.Inbound) {
		select {
		case cmds <- m:
		default:
			d.log.Warn("control command dropped: too many waiting", "topic", m.Topic, "client", m.Client)
		}
	}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Run(ctx); err != nil {
				d.log.Error("control loop stopped", "error", err)
			}
		}()
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer wg.Wait() // the loops leave their outputs safe when ctx ends
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-cmds:
				id := strings.TrimSuffix(strings.TrimPrefix(m.Topic, prefix), "/set")
				d.command(loops[id], id, m)
			}
		}
	}()
	return nil
}

// command applies one command and answers on the response topic, if any.
func (d *daemon) command(l *control.Loop, id string, m localbroker.Inbound) {
	var reply []byte
	if l == nil {
		reply = []byte(`{"error":"no controller ` + jsonSafe(id) + `"}`)
	} else {
		var err error
		reply, err = l.Command(m.Payload)
		if err != nil {
			d.log.Warn("control command refused", "controller", id, "client", m.Client, "error", err)
		} else {
			d.log.Info("control command applied", "controller", id, "client", m.Client, "command", string(m.Payload))
		}
	}
	if m.ResponseTopic != "" {
		if err := d.broker.Reply(m, reply); err != nil {
			d.log.Warn("control reply failed", "controller", id, "response_topic", m.ResponseTopic, "error", err)
		}
	}
}

// jsonSafe keeps an id from a topic level inside a JSON string literal.
func jsonSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 {
			return '_'
		}
		return r
	}, s)
}
