package dispatch

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/lkedge/lkedge/host/event"
)

// meetAndEgress is a plugins file with a plugin on every event of Meet's
// rooms and one on egress_ended in any room.
const meetAndEgress = `plugins:
  - name: meet-only
    wasm: typical.wasm
    events: ["*"]
  - name: egress-only
    wasm: typical.wasm
    events: [egress_ended]
    rooms: all
`

// TestWhyNotCalled: a plugin not called for an event says why at debug,
// once per event: the room is not OpenVidu Meet's (rooms: meet, the
// default), the event type is not among its events, or a config key it
// requires has no value.
func TestWhyNotCalled(t *testing.T) {
	dir := setup(t, meetAndEgress+`  - name: unconfigured
    wasm: typical.wasm
    events: ["*"]
    rooms: all
    config: {url: {env: LKEDGE_TEST_UNSET_URL}}
    requires: [url]
`)
	var logs bytes.Buffer
	d := newDispatcherOpts(t, testOptions(dir, &outbox{}, slog.New(slog.NewJSONHandler(&logs, nil))))
	debug := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := d.Handle(context.Background(), []*event.Event{loadEvent(t, "participant_joined", false)}, debug); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"plugin":"meet-only","reason":"rooms: meet, and OpenVidu Meet does not own this room"`,
		`"plugin":"egress-only","reason":"not subscribed to this event type (events)"`,
		`"plugin":"unconfigured","reason":"a config key it requires has no value yet (requires)"`,
	} {
		if !strings.Contains(logs.String(), `"msg":"plugin not called",`+want) {
			t.Errorf("no line %s in:\n%s", want, logs.String())
		}
	}
}

// Receives answers for the plugin set whether any plugin would be handed an
// event: it is how an event nobody reads is finished when accepted, so a
// plugin off until configured counts, since its config may come first.
func TestReceives(t *testing.T) {
	const unconfigured = `  - name: unconfigured
    wasm: typical.wasm
    events: [room_finished]
    rooms: all
    config: {url: {env: LKEDGE_TEST_UNSET_URL}}
    requires: [url]
`
	type ask struct {
		typ   string
		owned bool
		want  bool
	}
	for _, tt := range []struct {
		name string
		file string
		asks []ask
	}{
		{"no plugins", "plugins: []\n", []ask{{"participant_joined", true, false}, {"egress_ended", false, false}}},
		{"rooms and events", meetAndEgress, []ask{
			{"participant_joined", false, false}, {"participant_joined", true, true},
			{"egress_ended", false, true}, {"room_finished", false, false},
		}},
		{"a plugin off until configured", meetAndEgress + unconfigured, []ask{
			{"room_finished", false, true}, {"participant_joined", false, false},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDispatcher(t, setup(t, tt.file), &outbox{})
			for _, a := range tt.asks {
				if got := d.Receives(a.typ, a.owned); got != a.want {
					t.Errorf("Receives(%s, Meet's: %v) = %v, want %v", a.typ, a.owned, got, a.want)
				}
			}
		})
	}
}
