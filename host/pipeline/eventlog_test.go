package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/event"
)

// TestEventLogger: a line logged through eventLogger reads exactly as one
// logged through base.With with the same attributes, whatever is added to
// it later, and nothing is written below the base's level.
func TestEventLogger(t *testing.T) {
	ev, err := event.FromWebhook([]byte(`{"event":"room_started","id":"EV_1","room":{"name":"r1"}}`), time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		log  func(*slog.Logger)
	}{
		{"plain line", func(l *slog.Logger) { l.Warn("w", "k", 1) }},
		{"with more attributes", func(l *slog.Logger) { l.With("plugin", "p").With("n", 2).Error("e") }},
		{"in a group", func(l *slog.Logger) { l.WithGroup("g").With("a", "b").Warn("w", "k", "v") }},
		{"below the level", func(l *slog.Logger) { l.Debug("d") }},
	}
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, want bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: noTime}
			base := slog.New(slog.NewJSONHandler(&got, opts)).With("component", "pipeline")
			tt.log(eventLogger(base, ev))
			ref := slog.New(slog.NewJSONHandler(&want, opts)).With("component", "pipeline")
			tt.log(ref.With("event_id", "EV_1", "event", "room_started", "room", "r1"))
			if got.String() != want.String() {
				t.Fatalf("got  %s\nwant %s", got.String(), want.String())
			}
			if !eventLogger(base, ev).Enabled(context.Background(), slog.LevelWarn) || eventLogger(base, ev).Enabled(context.Background(), slog.LevelDebug) {
				t.Fatal("levels are not the base's")
			}
		})
	}
}
