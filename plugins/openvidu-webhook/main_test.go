package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/plugins/internal/plugintests"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

// on is the config of an enabled plugin with §18's creationDate.
func on(extra ...string) map[string]string {
	c := map[string]string{"url": "https://meet-app.example.com/webhook", "enabled": "true", "creation_date": "1745318193000"}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i]] = extra[i+1]
	}
	return c
}

var cases = []plugintests.Case{
	{Name: "recording_started", Event: "egress_started.json", Config: on()},
	{Name: "recording_updated", Event: "egress_updated.json", Config: on()},
	{Name: "recording_ended", Event: "egress_ended.json", Config: on()},
	{Name: "recording_failed", Event: "egress_ended_failed.json", Config: on()},
	// An egress status with no name in lkedge's LiveKit protocol arrives as
	// a number; Meet takes it as FAILED and still sends the event.
	{Name: "unknown_status_updated", Event: "egress_updated_unknown_status.json", Config: on()},
	{Name: "unknown_status_ended", Event: "egress_ended_unknown_status.json", Config: on()},
	{Name: "disabled", Event: "egress_ended.json", Config: on("enabled", "false")},
	{Name: "enabled_must_be_exactly_true", Event: "egress_ended.json", Config: on("enabled", "TRUE")},
	{Name: "enabled_unset", Event: "egress_ended.json", Config: map[string]string{"url": "https://meet-app.example.com/webhook"}},
	{Name: "stale", Event: "egress_updated_stale.json", Config: on()},
	{Name: "not_a_meet_recording", Event: "egress_ended_not_meet.json", Config: on()},
	{Name: "participant_joined", Event: "participant_joined.json", Config: on()},
	{Name: "livekit_room_finished", Event: "room_finished.json", Config: on("room_finished", "true")},
	{Name: "room_finished_off_by_default", Event: "room_finished_lkedge.json", Config: on()},
	{Name: "room_finished", Event: "room_finished_lkedge.json", Config: on("room_finished", "true")},
	{Name: "room_finished_escaped", Event: "room_finished_lkedge_kept.json", Config: on("room_finished", "true")},
	{Name: "no_url", Event: "egress_ended.json", Config: map[string]string{"enabled": "true"}},
	{Name: "bad_creation_date", Event: "egress_ended.json", Config: on("creation_date", "yesterday")},
}

func TestHandle(t *testing.T) { plugintests.Native(t, handle, cases) }

func TestThroughHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	plugintests.Host(t, ".", cases)
}

// The §18 test vector: OpenVidu Meet's exact body and signature.
const (
	vectorBody      = `{"event":"recordingEnded","creationDate":1745318193000,"data":{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"COMPLETE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568,"endDate":1745318192654.3218,"duration":10.530865198,"size":1048576,"details":"End reason: StopEgress API"}}`
	vectorKey       = "meet-api-key"
	vectorSignature = "273c47403083f2b8fa2f9e0856ecf24e0ba863c77e444bf1bfbb4ff6956a5eee"
)

// meetReceiver verifies requests as an OpenVidu Meet webhook consumer
// does (§8.4) and keeps what it accepted.
func meetReceiver(t *testing.T, key string) (*httptest.Server, *[]*http.Request, *[]string) {
	var got []*http.Request
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(r.Header.Get("X-Timestamp") + "." + string(body)))
		if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(r.Header.Get("X-Signature"))) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		got, bodies = append(got, r), append(bodies, string(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &got, &bodies
}

// TestSpecVector runs §18's event natively and compiled, signs the request
// with the host's signing code and has a Meet receiver check it: the body
// and the signature are the reference's, byte for byte.
func TestSpecVector(t *testing.T) {
	run := map[string]func(t *testing.T) sdktest.Request{
		"native": func(t *testing.T) sdktest.Request {
			res, err := sdktest.RunLazy(handle, sdktest.Event(plugintests.Event(t, "egress_ended.json")), sdktest.Config(on()))
			if err != nil || len(res.Requests) != 1 {
				t.Fatalf("Run = %+v, %v", res, err)
			}
			return res.Requests[0]
		},
		"wasm": func(t *testing.T) sdktest.Request {
			if testing.Short() {
				t.Skip("builds the plugin")
			}
			return plugintests.HostRequest(t, ".", "egress_ended.json", on())
		},
	}
	for name, get := range run {
		t.Run(name, func(t *testing.T) {
			r := get(t)
			if string(r.Body) != vectorBody {
				t.Errorf("body\n got %s\nwant %s", r.Body, vectorBody)
			}
			srv, got, bodies := meetReceiver(t, vectorKey)
			// Sign an hour later: Meet's timestamp is creationDate, not the send time.
			res := plugintests.Deliver(t, r, srv.URL, []byte(vectorKey), time.UnixMilli(1745318193000).Add(time.Hour))
			if res.StatusCode != http.StatusOK || len(*got) != 1 {
				t.Fatalf("receiver answered %s", res.Status)
			}
			h := (*got)[0].Header
			if h.Get("X-Signature") != vectorSignature || h.Get("X-Timestamp") != "1745318193000" || h.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v; want X-Signature %s, X-Timestamp 1745318193000, Content-Type application/json", h, vectorSignature)
			}
			if (*bodies)[0] != vectorBody {
				t.Errorf("received body %s", (*bodies)[0])
			}
		})
	}
}

// TestClock checks that without creation_date the plugin stamps the time
// it handles the event, and that X-Timestamp follows creationDate.
func TestClock(t *testing.T) {
	cfg := on()
	delete(cfg, "creation_date")
	before := time.Now().UnixMilli()
	res, err := sdktest.RunLazy(handle, sdktest.Event(plugintests.Event(t, "egress_ended.json")), sdktest.Config(cfg))
	after := time.Now().UnixMilli()
	if err != nil || len(res.Requests) != 1 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	r := res.Requests[0]
	ts := r.Sign.Timestamp
	if !strings.HasPrefix(string(r.Body), `{"event":"recordingEnded","creationDate":`+ts+`,"data":`) {
		t.Fatalf("body %s does not carry creationDate %s", r.Body, ts)
	}
	if ms, err := strconv.ParseInt(ts, 10, 64); err != nil || ms < before || ms > after {
		t.Errorf("creationDate %s not between %d and %d", ts, before, after)
	}
	srv, _, _ := meetReceiver(t, "k")
	if res := plugintests.Deliver(t, r, srv.URL, []byte("k"), time.Now()); res.StatusCode != http.StatusOK {
		t.Errorf("receiver answered %s", res.Status)
	}
}
