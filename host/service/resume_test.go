package service

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// TestResumedMeetWebhookAfterKill: openvidu-webhook's call on a failed
// recording keeps failing (its config is wrong) under failure: hold, lkedge
// is killed with SIGKILL, the config is mended, and the restarted lkedge
// resumes the call from its task file. The application then gets Meet's
// recording byte for byte as stored, with the <, > and & of LiveKit's
// error text as they are, as OpenVidu Meet sends and signs them.
func TestResumedMeetWebhookAfterKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lk := livekittest.New(t, "devkey", "secret")
	writeRoomRecord(t, dir, "meet-resume", `{"roomId":"meet-resume"}`)
	var mu sync.Mutex
	var got []string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer app.Close()
	if err := os.WriteFile(filepath.Join(dir, "openvidu-webhook.wasm"), plugintest.Build(t, "../../plugins/openvidu-webhook"), 0o644); err != nil {
		t.Fatal(err)
	}
	plugins := func(creationDate string) string {
		return writePlugins(t, dir, `plugins:
  - name: openvidu-webhook
    wasm: openvidu-webhook.wasm
    events: [egress_ended]
    config: {url: "`+app.URL+`/webhook", enabled: "true", creation_date: "`+creationDate+`"}
    secrets: {meet_api_key: {env: LKEDGE_TEST_MEET_KEY}}
    allow: ["config:url"]
    failure: hold
`)
	}
	proc := testserver.StartLKEdge(t, map[string]string{
		"LIVEKIT_URL": lk.URL(), "LKEDGE_STORE": "file://" + dir, "LKEDGE_DATA_DIR": dir,
		"LKEDGE_PLUGINS": plugins("yesterday"), "LKEDGE_TEST_MEET_KEY": "meet-key",
	})
	const why = `upload failed: <503> & "retry"`
	ended := fmt.Appendf(nil, `{"event":"egress_ended","id":"EV_resume","egressInfo":{"egressId":"EG_resume","roomName":"meet-resume",`+
		`"status":"EGRESS_FAILED","error":%q,"startedAt":"1745318182123456789","updatedAt":"1745318190000000000","endedAt":"1745318190000000000",`+
		`"fileResults":[{"filename":"openvidu-meet/recordings/meet-resume/meet-resume--rs1.mp4"}]}}`, why)
	if code := post(t, proc.URL, ended); code != http.StatusOK {
		t.Fatalf("webhook answered %d", code)
	}
	eventually(t, 20*time.Second, "the plugin's call failed", func() bool {
		return metric(t, proc.URL, `lkedge_plugin_calls_total{outcome="error",plugin="openvidu-webhook"}`) > 0
	})
	proc.Kill()
	plugins("1745318193000")
	proc.Start()
	eventually(t, 30*time.Second, "the resumed call's webhook at the application", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	stored, err := os.ReadFile(filepath.Join(dir, "openvidu", "openvidu-meet", "recordings", ".metadata", "meet-resume", "EG_resume", "rs1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stored), `<503> & \"retry\"`) {
		t.Fatalf("the stored recording escapes the error text: %s", stored)
	}
	mu.Lock()
	defer mu.Unlock()
	var body struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(got[0]), &body); err != nil {
		t.Fatalf("webhook body %s: %v", got[0], err)
	}
	if body.Event != "recordingEnded" || string(body.Data) != string(stored) {
		t.Errorf("the application got\n%s\nwant event recordingEnded with data byte for byte as stored:\n%s", got[0], stored)
	}
}
