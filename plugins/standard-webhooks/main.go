// Command standard-webhooks forwards lkedge's events as Standard Webhooks
// (https://www.standardwebhooks.com), which receivers can verify with the
// specification's libraries in any language.
//
// Each event becomes a POST with Content-Type application/json and the body
//
//	{"type":"<event type>","timestamp":"<receivedAt, RFC 3339>","data":<the event JSON as lkedge sent it>}
//
// signed by the host with the standard-webhooks scheme under the secret
// signing_secret (a whsec_ value): webhook-id is the event id, which is
// also the Idempotency-Key, so a receiver drops the duplicates that
// at-least-once delivery can bring; webhook-timestamp and
// webhook-signature are computed at each attempt, as the specification
// requires.
//
// Config keys:
//
//	url     where to POST
//	events  comma-separated event types to forward (e.g.
//	        "egress_ended,roomFinished"); empty or unset forwards all
//
// Secret: signing_secret.
package main

import (
	"bytes"
	"strings"
	"time"

	"github.com/lkedge/lkedge/sdk"
)

// The handler reads only the event's top level, so HandleLazy spares it
// decoding the rest.
func init() { sdk.HandleLazy(handle) }

// secretName is the whsec_ secret the host signs with.
const secretName = "signing_secret"

func handle(ev *sdk.LazyEvent) error {
	if !wanted(ev.Type, sdk.ConfigOr("events", "")) {
		return nil
	}
	url := sdk.ConfigOr("url", "")
	if url == "" {
		// No URL is how plugins.yaml leaves this plugin off: it is listed
		// by default, and configured by setting its URL.
		sdk.Log(sdk.LevelDebug, "no url configured; nothing sent")
		return nil
	}
	data := bytes.TrimSpace(ev.Raw)
	body := make([]byte, 0, 96+len(ev.Type)+len(data))
	body = append(body, `{"type":`...)
	body = sdk.AppendJSONString(body, ev.Type)
	body = append(body, `,"timestamp":"`...)
	body = time.UnixMilli(ev.ReceivedAt).UTC().AppendFormat(body, time.RFC3339Nano)
	body = append(body, `","data":`...)
	body = append(body, data...)
	body = append(body, '}')
	return sdk.POST(url).
		Header("Content-Type", "application/json").
		Body(body).
		SignStandardWebhooks(secretName).
		IdempotencyKey(ev.ID).
		Send()
}

// wanted tells whether the events filter lets typ through.
func wanted(typ, filter string) bool {
	all := true
	for _, f := range strings.Split(filter, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if f == typ {
			return true
		}
		all = false
	}
	return all
}

func main() {}
