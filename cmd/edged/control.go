package main

import (
	"context"
	"sync"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors/topics"
)

// startControllers opens one loop per controller, feeds it every good
// sample and availability change straight from the Poller (never through
// the broker, whose publish waits on the uplink's disk buffer, and never
// only what the rate filters publish), and serves its commands on
// PREFIX/control/<id>/set through a control.Inbox, which applies them in
// order and answers on the MQTT 5 response topic.
func (d *daemon) startControllers(ctx context.Context, cfg *configs.Config) error {
	if len(cfg.Controllers) == 0 {
		return nil
	}
	loops := map[string]*control.Loop{}
	for _, c := range cfg.Controllers {
		l, err := control.New(c, d.actuators[c.Output], d.clock, d.broker,
			cfg.Device.TopicPrefix, cfg.StateDir, d.log) // the loop adds component and controller
		if err != nil {
			return err
		}
		loops[c.ID] = l
		if err := d.poller.Observe(l); err != nil {
			return err
		}
	}
	inbox := control.NewInbox(loops, d.clock, d.log)
	d.loops, d.inbox = loops, inbox
	tree := topics.New(cfg.Device.TopicPrefix)
	// The handler runs in the publishing client's goroutine inside the
	// broker: Submit only queues, and the reply is sent from the inbox's
	// goroutine.
	if err := d.broker.Subscribe(tree.ControlSetFilter(), 1, func(m localbroker.Inbound) {
		// The filter's '+' also matches an empty level, which the parser
		// refuses: that command goes on with controller "", which the
		// inbox answers as unknown.
		id, _ := tree.ParseControlSet(m.Topic)
		r := control.Request{
			Controller: id,
			Payload:    m.Payload,
			Client:     m.Client,
		}
		if m.ResponseTopic != "" {
			// Only what Reply needs, not the payload, waits for the answer.
			req := localbroker.Inbound{ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData, Client: m.Client, Identity: m.Identity}
			r.Reply = func(payload []byte) error { return d.broker.Reply(req, payload) }
		}
		inbox.Submit(r)
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
		inbox.Run(ctx)
		wg.Wait() // the loops leave their outputs safe and their state saved when ctx ends
		for id, l := range loops {
			d.log.Info("control loop stopped", "controller", id, "state_saves", l.Saves())
		}
	}()
	return nil
}
