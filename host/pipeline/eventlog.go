package pipeline

import (
	"context"
	"log/slog"
	"slices"

	"github.com/lkedge/lkedge/host/event"
)

// eventLogger returns base with the event's attributes on every line, for
// the whole of the event's work (the Meet logic and the plugins log through
// it). Most events log nothing, so the attributes are only formatted when a
// line is written: base.With formats them at once, which showed in
// profiles under load (docs/benchmarks.md).
func eventLogger(base *slog.Logger, ev *event.Event) *slog.Logger {
	return slog.New(&deferredAttrs{inner: base.Handler(), attrs: []slog.Attr{
		slog.String("event_id", ev.ID), slog.String("event", ev.Type), slog.String("room", ev.RoomName()),
	}})
}

// deferredAttrs is a slog.Handler that adds attrs to inner's output when a
// record is handled rather than when the logger is made.
type deferredAttrs struct {
	inner slog.Handler
	attrs []slog.Attr
}

// Enabled is part of slog.Handler.
func (d *deferredAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return d.inner.Enabled(ctx, level)
}

// Handle is part of slog.Handler: it formats the attributes now.
func (d *deferredAttrs) Handle(ctx context.Context, r slog.Record) error {
	return d.inner.WithAttrs(d.attrs).Handle(ctx, r)
}

// WithAttrs is part of slog.Handler; the new attributes wait too.
func (d *deferredAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &deferredAttrs{inner: d.inner, attrs: append(slices.Clip(d.attrs), attrs...)}
}

// WithGroup is part of slog.Handler. Attributes before a group belong
// outside it, so they are formatted here.
func (d *deferredAttrs) WithGroup(name string) slog.Handler {
	return d.inner.WithAttrs(d.attrs).WithGroup(name)
}
