package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/plugins/internal/plugintests"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

const url = "https://receiver.example.com/hooks"

var cases = []plugintests.Case{
	{Name: "egress_ended", Event: "egress_ended.json", Config: map[string]string{"url": url}},
	{Name: "room_finished", Event: "room_finished_lkedge.json", Config: map[string]string{"url": url}},
	{Name: "filter_passes", Event: "egress_ended.json", Config: map[string]string{"url": url, "events": " roomFinished , egress_ended"}},
	{Name: "filter_blocks", Event: "participant_joined.json", Config: map[string]string{"url": url, "events": "egress_ended,roomFinished"}},
	{Name: "empty_filter_passes_all", Event: "participant_joined.json", Config: map[string]string{"url": url, "events": " , "}},
	{Name: "no_url", Event: "egress_ended.json", Config: map[string]string{}},
}

func TestHandle(t *testing.T) { plugintests.Native(t, handle, cases) }

func TestThroughHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	plugintests.Host(t, ".", cases)
}

func TestWanted(t *testing.T) {
	for _, tc := range []struct {
		typ, filter string
		want        bool
	}{
		{"a", "", true}, {"a", "a", true}, {"a", "b", false}, {"a", "b,a", true}, {"a", " b , a ", true}, {"a", ",,", true}, {"ab", "a", false},
	} {
		if got := wanted(tc.typ, tc.filter); got != tc.want {
			t.Errorf("wanted(%q, %q) = %v", tc.typ, tc.filter, got)
		}
	}
}

// TestReceiverVerifies delivers the request with the host's signing code
// to a receiver that verifies it the way the Standard Webhooks libraries
// do, and checks the envelope.
func TestReceiverVerifies(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	event := plugintests.Event(t, "egress_ended.json")
	res, err := sdktest.RunLazy(handle, sdktest.Event(event), sdktest.Config{"url": url})
	if err != nil || len(res.Requests) != 1 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	r := res.Requests[0]
	var body struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "egress_ended" || body.Timestamp != "2025-04-22T10:36:33Z" || strings.TrimSpace(string(event)) != string(body.Data) {
		t.Errorf("envelope = %s %s, data equal to the event: %v", body.Type, body.Timestamp, strings.TrimSpace(string(event)) == string(body.Data))
	}
	if r.Sign == nil || r.Sign.Scheme != "standard-webhooks" || r.Sign.Secret != "signing_secret" || r.IdempotencyKey != "EV_end" {
		t.Errorf("sign %+v, idempotency key %q", r.Sign, r.IdempotencyKey)
	}
	now := time.Now()
	var verified bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		payload, _ := io.ReadAll(req.Body)
		id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "." + string(payload)))
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		verified = id == "EV_end" && req.Header.Get("webhook-signature") == want && req.Header.Get("Content-Type") == "application/json"
	}))
	defer srv.Close()
	plugintests.Deliver(t, r, srv.URL, []byte(secret), now)
	if !verified {
		t.Error("the receiver could not verify the request")
	}
}
