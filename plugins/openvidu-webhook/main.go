// Command openvidu-webhook sends OpenVidu Meet's outbound webhooks
// (spec §8) byte for byte as OpenVidu Meet does, so that an application
// written against Meet keeps working behind lkedge.
//
// For egress_started, egress_updated and egress_ended of a Meet recording
// (meet.recording present) it POSTs
//
//	{"event":"recordingStarted|recordingUpdated|recordingEnded","creationDate":<ms>,"data":<meet.recording>}
//
// with data copied byte for byte from the event, Content-Type
// application/json, and the host signs it with hmac-sha256-hex: X-Signature
// is the hex HMAC-SHA256 of "<creationDate>.<body>" under the secret
// meet_api_key (MEET_API_KEY), X-Timestamp is creationDate. creationDate is
// the plugin's clock when it handles the event, like Meet's Date.now(); the
// host reuses body and signature on every retry, as Meet does. The event
// name follows the LiveKit event, the status is meet.recording's: an egress
// status without a name in lkedge's LiveKit protocol (written as a number,
// "status":99) is FAILED there, as Meet's extractOpenViduStatus makes it, and
// the webhook is still sent.
//
// OpenVidu Meet defined roomFinished but never sent it (§5.4, §8.1). With
// room_finished set to "true" this plugin sends it for lkedge's
// roomFinished event of a Meet room, in the same envelope, with
//
//	"data":{"roomId":"<Meet room id>","deleted":<whether lkedge deleted the room because it was marked for deletion>}
//
// Meet's sendRoomFinishedWebhook(room) would have had the LiveKit room at
// hand, but nothing shows what it meant to send; the Meet room id and the
// outcome are what a receiver can act on, and they reveal nothing of
// LiveKit's internals.
//
// Config keys:
//
//	url            where to POST (MEET_WEBHOOK_URL)
//	enabled        "true" to send; anything else sends nothing (MEET_WEBHOOK_ENABLED)
//	room_finished  "true" to also send roomFinished (default: off, as in Meet)
//	creation_date  fixes creationDate (Unix ms) instead of the clock; only for
//	               tests and for reproducing a known signature, never in production
//
// Secret: meet_api_key.
package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/lkedge/lkedge/sdk"
)

// HandleLazy: the handler decodes the event's meet object, and only for
// the event types it may send.
func init() { sdk.HandleLazy(handle) }

// secretName is the secret the host signs with: Meet's MEET_API_KEY.
const secretName = "meet_api_key"

// meetEvents maps LiveKit's egress events to Meet's outbound event names:
// by the LiveKit event, not by the recording's status (§5.1).
var meetEvents = map[string]string{
	sdk.TypeEgressStarted: "recordingStarted",
	sdk.TypeEgressUpdated: "recordingUpdated",
	sdk.TypeEgressEnded:   "recordingEnded",
}

func handle(ev *sdk.LazyEvent) error {
	if sdk.ConfigOr("enabled", "") != "true" {
		return nil
	}
	event, data, err := payload(ev)
	if err != nil || event == "" {
		return err
	}
	url, err := sdk.Config("url")
	if err != nil {
		return errors.New("openvidu-webhook: " + err.Error())
	}
	creationDate, err := creationDate()
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(creationDate, 10)
	body := make([]byte, 0, 64+len(data))
	body = append(body, `{"event":"`...)
	body = append(body, event...)
	body = append(body, `","creationDate":`...)
	body = append(body, ts...)
	body = append(body, `,"data":`...)
	body = append(body, data...)
	body = append(body, '}')
	return sdk.POST(url).
		Header("Content-Type", "application/json").
		Body(body).
		Sign(sdk.Signature{Scheme: sdk.SchemeHMAC, Secret: secretName, Timestamp: ts}).
		Send()
}

// payload picks Meet's event name and data for ev; an empty name means
// Meet would send nothing.
func payload(ev *sdk.LazyEvent) (string, []byte, error) {
	name, egress := meetEvents[ev.Type]
	if !egress && ev.Type != sdk.TypeRoomFinished {
		return "", nil, nil
	}
	m, err := ev.Meet()
	if err != nil {
		return "", nil, errors.New("openvidu-webhook: " + err.Error())
	}
	if m == nil || !m.Owned {
		return "", nil, nil
	}
	if egress {
		// A stale event (it arrived after a later state) is sent as Meet
		// sends every event, with its own state: silence would lose it, and
		// the application orders by status or creationDate, as with Meet.
		if !m.HasRecording() {
			return "", nil, nil
		}
		return name, m.Recording, nil
	}
	if ev.Type != sdk.TypeRoomFinished || sdk.ConfigOr("room_finished", "") != "true" {
		return "", nil, nil
	}
	// JSON.stringify's escaping: <, > and & stay as they are.
	data := sdk.AppendJSONString([]byte(`{"roomId":`), m.RoomID)
	data = append(data, `,"deleted":`...)
	data = strconv.AppendBool(data, m.Deleted)
	return "roomFinished", append(data, '}'), nil
}

// creationDate is now in Unix milliseconds, unless the config fixes it.
func creationDate() (int64, error) {
	v := sdk.ConfigOr("creation_date", "")
	if v == "" {
		return time.Now().UnixMilli(), nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New("openvidu-webhook: config creation_date " + strconv.Quote(v) + " is not Unix milliseconds: " + err.Error())
	}
	return ms, nil
}

func main() {}
