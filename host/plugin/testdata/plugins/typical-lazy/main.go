// Command typical-lazy is typical with sdk.HandleLazy: the same request,
// with the room or egress decoded only when the event has one.
package main

import (
	"github.com/lkedge/lkedge/sdk"
)

func init() { sdk.HandleLazy(handle) }

type notification struct {
	Event string `json:"event"`
	ID    string `json:"id"`
	Room  string `json:"room,omitempty"`
}

func handle(ev *sdk.LazyEvent) error {
	n := notification{Event: ev.Type, ID: ev.ID}
	room, err := ev.Room()
	if err != nil {
		return err
	}
	if room != nil {
		n.Room = room.Name
	} else {
		eg, err := ev.Egress()
		if err != nil {
			return err
		}
		if eg != nil {
			n.Room = eg.RoomName
		}
	}
	return sdk.POST(sdk.ConfigOr("url", "http://127.0.0.1:9/hook")).JSON(n).SignHMAC("key").Send()
}

func main() {}
