package main

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/edged/edged/configs"
	"github.com/edged/edged/localbroker"
	"github.com/edged/edged/pipeline/control"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/topics"
)

// controlRoom runs the control loops: one per controller, fed every good
// sample and availability change straight from the Poller (never through
// the broker, whose publish waits on the uplink's disk buffer, and never
// only what the rate filters publish), and their commands on
// PREFIX/control/<id>/set through a control.Inbox, which applies them in
// order and answers on the MQTT 5 response topic. A reload stops and
// starts single loops (apply); the others run on.
type controlRoom struct {
	d     *daemon
	inbox *control.Inbox
	fan   loopFan
	wg    sync.WaitGroup // the loops' Run goroutines

	// loops are the running loops; d.mu guards the map for the HTTP API,
	// only the reloads (one at a time, off the signal goroutine) and then
	// the stop change it.
	loops map[string]*runningLoop
}

type runningLoop struct {
	l    *control.Loop
	stop context.CancelFunc
	done chan struct{} // closed when Run has returned: actuator safe, state saved
}

// loopFan is the Poller's one sample observer: it hands each sample to
// the loops running now, which a reload swaps in one store.
type loopFan struct {
	loops atomic.Pointer[[]*control.Loop]
}

var _ sensors.SampleObserver = (*loopFan)(nil)

func (f *loopFan) Sample(r sensors.Reading) {
	if ls := f.loops.Load(); ls != nil {
		for _, l := range *ls {
			l.Sample(r)
		}
	}
}

func (f *loopFan) Availability(sensor string, online bool) {
	if ls := f.loops.Load(); ls != nil {
		for _, l := range *ls {
			l.Availability(sensor, online)
		}
	}
}

// startControllers starts the control room with cfg's controllers. The
// inbox and the command subscription exist even without controllers, so
// a reload can add some.
func (d *daemon) startControllers(ctx context.Context, cfg *configs.Config) error {
	r := &controlRoom{d: d, loops: map[string]*runningLoop{}}
	if err := d.poller.Observe(&r.fan); err != nil {
		return err
	}
	for _, c := range cfg.Controllers {
		l, err := control.New(c, d.actuators[c.Output], d.clock, d.broker,
			cfg.Device.TopicPrefix, cfg.StateDir, d.log) // the loop adds component and controller
		if err != nil {
			r.stopAll()
			return err
		}
		r.start(ctx, c.ID, l)
	}
	r.inbox = control.NewInbox(r.loopMap(), d.clock, d.log)
	r.publish()
	d.control = r
	tree := topics.New(cfg.Device.TopicPrefix)
	// The handler runs in the publishing client's goroutine inside the
	// broker: Submit only queues, and the reply is sent from the inbox's
	// goroutine.
	if err := d.broker.Subscribe(tree.ControlSetFilter(), 1, func(m localbroker.Inbound) {
		// The filter's '+' also matches an empty level, which the parser
		// refuses: that command goes on with controller "", which the
		// inbox answers as unknown.
		id, _ := tree.ParseControlSet(m.Topic)
		req := control.Request{
			Controller: id,
			Payload:    m.Payload,
			Client:     m.Client,
		}
		if m.ResponseTopic != "" {
			// Only what Reply needs, not the payload, waits for the answer.
			in := localbroker.Inbound{ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData, Client: m.Client, Identity: m.Identity}
			req.Reply = func(payload []byte) error { return d.broker.Reply(in, payload) }
		}
		r.inbox.Submit(req)
	}); err != nil {
		r.stopAll()
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		r.inbox.Run(ctx)
		r.wg.Wait() // the loops leave their outputs safe and their state saved when ctx ends
		for id, rl := range r.loops {
			d.log.Info("control loop stopped", "controller", id, "state_saves", rl.l.Saves())
		}
	}()
	return nil
}

// start runs l under ctx until it or the loop's own stop ends; after
// haltActuatorsNow it starts nothing.
func (r *controlRoom) start(ctx context.Context, id string, l *control.Loop) {
	lctx, stop := context.WithCancel(ctx)
	rl := &runningLoop{l: l, stop: stop, done: make(chan struct{})}
	r.d.mu.Lock()
	if r.d.halted {
		r.d.mu.Unlock()
		stop()
		return
	}
	r.loops[id] = rl
	r.d.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(rl.done)
		if err := l.Run(lctx); err != nil {
			r.d.log.Error("control loop stopped", "error", err)
		}
	}()
}

// stopAll ends every loop (a start that failed half-way).
func (r *controlRoom) stopAll() {
	for _, rl := range r.loops {
		rl.stop()
	}
	r.wg.Wait()
}

func (r *controlRoom) loopMap() map[string]*control.Loop {
	m := make(map[string]*control.Loop, len(r.loops))
	for id, rl := range r.loops {
		m[id] = rl.l
	}
	return m
}

// publish hands the running loops to the Poller's observer, in id order.
func (r *controlRoom) publish() {
	ids := slices.Sorted(maps.Keys(r.loops))
	ls := make([]*control.Loop, len(ids))
	for i, id := range ids {
		ls[i] = r.loops[id].l
	}
	r.fan.loops.Store(&ls)
}

// loop returns the running loop id, nil if none (for the HTTP API).
func (r *controlRoom) loop(id string) *control.Loop {
	r.d.mu.RLock()
	defer r.d.mu.RUnlock()
	if rl := r.loops[id]; rl != nil {
		return rl.l
	}
	return nil
}

// stop takes the loops ids out of the inbox first (a command waiting
// for one is answered, not applied to a stopped loop), then stops them
// and waits until each has put its actuator in the safe state and saved
// its state file.
func (r *controlRoom) stop(ids []string) {
	if len(ids) == 0 {
		return
	}
	keep := r.loopMap()
	for _, id := range ids {
		delete(keep, id)
	}
	r.inbox.SetLoops(keep)
	var stopped []*runningLoop
	r.d.mu.Lock()
	for _, id := range ids {
		if rl := r.loops[id]; rl != nil {
			stopped = append(stopped, rl)
			delete(r.loops, id)
		}
	}
	r.d.mu.Unlock()
	r.publish()
	for _, rl := range stopped {
		rl.stop()
		<-rl.done
	}
}
