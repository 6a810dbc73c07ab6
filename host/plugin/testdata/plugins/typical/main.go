// Command typical is the plugin the benchmarks call: it reads the event with
// the SDK and asks for one signed JSON webhook, as a notifier does.
package main

import (
	"github.com/lkedge/lkedge/sdk"
)

func init() { sdk.Handle(handle) }

type notification struct {
	Event string `json:"event"`
	ID    string `json:"id"`
	Room  string `json:"room,omitempty"`
}

func handle(ev *sdk.Event) error {
	n := notification{Event: ev.Type, ID: ev.ID}
	switch {
	case ev.Room != nil:
		n.Room = ev.Room.Name
	case ev.Egress != nil:
		n.Room = ev.Egress.RoomName
	}
	return sdk.POST(sdk.ConfigOr("url", "http://127.0.0.1:9/hook")).JSON(n).SignHMAC("key").Send()
}

func main() {}
