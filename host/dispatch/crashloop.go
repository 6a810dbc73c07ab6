package dispatch

import (
	"errors"
	"log/slog"
	"time"

	"github.com/lkedge/lkedge/host/plugin"
)

// A plugin whose calls keep crashing or running out of time costs its host
// a fresh instance, and a slot held for its whole time limit, on every
// event. After crashLoopThreshold such calls in a row it is paused: its
// calls are not made for Options.PauseFor (default 30 s, doubling while it
// keeps failing, at most 10 minutes), then one call tries it again.
const (
	crashLoopThreshold   = 5
	crashLoopCooldown    = 30 * time.Second
	crashLoopMaxCooldown = 10 * time.Minute
)

// health is one plugin's run of costly failures, under Dispatcher.mu.
type health struct {
	fails    int
	until    time.Time // paused until then
	cooldown time.Duration
}

// costly reports whether a failed call cost the host an instance or a
// whole time limit: a trap, an exit, a timeout, or no instance in time.
func costly(err error) bool {
	var ce *plugin.CallError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Kind {
	case plugin.KindTrap, plugin.KindExit, plugin.KindTimeout, plugin.KindBusy:
		return true
	}
	return false
}

// paused reports until when the plugin's calls are not made (zero: they
// are).
func (d *Dispatcher) paused(name string, now time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h := d.health[name]; h != nil && now.Before(h.until) {
		return h.until
	}
	return time.Time{}
}

// judged records a call's outcome; a pause starts at the threshold, and
// again, longer, when the call after a pause fails too.
func (d *Dispatcher) judged(name string, err error, log *slog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.health[name]
	if err == nil || !costly(err) {
		if h != nil && h.fails > 0 {
			if !h.until.IsZero() {
				d.m.paused.WithLabelValues(name).Set(0)
				log.Info("plugin resumed: its call succeeded after a pause", "plugin", name)
			}
			delete(d.health, name)
		}
		return
	}
	if h == nil {
		h = &health{}
		d.health[name] = h
	}
	h.fails++
	if h.fails < crashLoopThreshold {
		return
	}
	switch {
	case h.cooldown == 0:
		h.cooldown = d.opts.PauseFor
	case !h.until.IsZero():
		h.cooldown = min(2*h.cooldown, max(crashLoopMaxCooldown, d.opts.PauseFor))
	}
	h.until = time.Now().Add(h.cooldown)
	d.m.paused.WithLabelValues(name).Set(1)
	log.Error("plugin paused: its calls keep crashing or running out of time; its calls are not made until then",
		"plugin", name, "failures_in_a_row", h.fails, "paused_for", h.cooldown.String(), "err", err)
}
