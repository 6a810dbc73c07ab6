package service

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// meetWebhook is what OpenVidu Meet sends for one LiveKit webhook, as
// testdata/meet-webhooks/meet.js computes it with Meet's own formulas.
type meetWebhook struct {
	Webhook     string            `json:"webhook"`
	MetadataKey string            `json:"metadataKey"`
	Metadata    string            `json:"metadata"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
}

// TestMeetWebhooksByteForByte is the whole path of OpenVidu Meet's
// outbound webhooks: each signed LiveKit webhook in testdata/meet-webhooks
// goes into lkedge, whose Meet logic stores the recording metadata and
// whose openvidu-webhook plugin (built to wasm) has the host sign and send
// the webhook to a sink. Metadata, body and X-Signature must be what
// OpenVidu Meet writes and sends, byte for byte (golden.json, from Node):
// §18's vector; <, > and & in the error, details and filename, which
// JSON.stringify leaves as they are; and egress statuses with no name in
// LiveKit's protocol (99, 42), which Meet takes as FAILED.
func TestMeetWebhooksByteForByte(t *testing.T) {
	dir := filepath.Join("testdata", "meet-webhooks")
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want []meetWebhook
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("golden.json: %v", err)
	}

	f := newFixture(t)
	f.lk.SetRoom(room, `{"createdBy":"openviduMeet"}`)
	if err := os.WriteFile(filepath.Join(f.dir, "openvidu-webhook.wasm"), plugintest.Build(t, "../../plugins/openvidu-webhook"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, 0)
	const meetAPIKey = "meet-api-key"
	t.Setenv("LKEDGE_TEST_MEET_API_KEY", meetAPIKey)
	f.cfg.PluginsFile = writePlugins(t, f.dir, `plugins:
  - name: openvidu-webhook
    wasm: openvidu-webhook.wasm
    events: [egress_started, egress_updated, egress_ended]
    rooms: meet
    config: {url: "`+s.srv.URL+`/webhook", enabled: "true", creation_date: "1745318193000"}
    secrets: {meet_api_key: {env: LKEDGE_TEST_MEET_API_KEY}}
    allow: ["config:url"]
    delivery: {backoff: 20ms}
`)
	url, _ := f.start(t, nil)

	for i, w := range want {
		t.Run(w.Webhook, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join(dir, w.Webhook))
			if err != nil {
				t.Fatal(err)
			}
			if code := post(t, url, body); code != 200 {
				t.Fatalf("lkedge answered %d", code)
			}
			reqs, bodies := s.wait(t, i+1)
			r, got := reqs[i], string(bodies[i])
			if got != w.Body {
				t.Errorf("body\n got %s\nwant %s", got, w.Body)
			}
			for k, v := range w.Headers {
				if r.Header.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, r.Header.Get(k), v)
				}
			}
			// What a Meet application checks (§8.4): the signature over the
			// bytes it received.
			mac := hmac.New(sha256.New, []byte(meetAPIKey))
			mac.Write([]byte(r.Header.Get("X-Timestamp") + "." + got))
			if !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte(hex.EncodeToString(mac.Sum(nil)))) {
				t.Errorf("X-Signature %s does not verify over the body received", r.Header.Get("X-Signature"))
			}
			md, err := os.ReadFile(filepath.Join(f.dir, "openvidu", w.MetadataKey))
			if err != nil || string(md) != w.Metadata {
				t.Errorf("stored metadata %s, %v\nwant %s", md, err, w.Metadata)
			}
		})
	}
}
