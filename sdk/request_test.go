//go:build !wasip1

package sdk

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lkedge/lkedge/sdk/internal/hostcall"
)

// recorder is a host that keeps what the plugin emits and answers with a
// fixed status.
type recorder struct {
	status  int32
	emitted [][]byte
	bodies  [][]byte
	config  map[string]string
	logs    []string
}

func (r *recorder) Event() []byte { return nil }
func (r *recorder) Config(k string) (string, bool) {
	v, ok := r.config[k]
	return v, ok
}
func (r *recorder) Emit(a, body []byte) int32 {
	r.emitted = append(r.emitted, a)
	r.bodies = append(r.bodies, body)
	return r.status
}
func (r *recorder) Log(level int32, msg string, attrs []byte) {
	r.logs = append(r.logs, msg+"|"+strings.ReplaceAll(string(attrs), "\x00", "|"))
}
func (r *recorder) Fail(string) {}

func withHost(t *testing.T, h hostcall.Host) {
	hostcall.Native = h
	t.Cleanup(func() { hostcall.Native = nil })
}

func TestSendEncodesTheAction(t *testing.T) {
	tests := []struct {
		name       string
		req        *Request
		want, body string
	}{
		{"minimal", POST("https://example.com/a"), `{"type":"http","method":"POST","url":"https://example.com/a"}`, ""},
		{"everything", NewRequest("PUT", "https://example.com/a?b=\"c\"").Header("X-A", "1").Header("X-A", "2").Body([]byte("line\n\"quoted\" é \u2028")).
			Sign(Signature{Scheme: SchemeHMAC, Secret: "key", Header: "X-Sig", TimestampHeader: "X-Ts", Template: "{timestamp}:{body}", Timestamp: "17"}).IdempotencyKey("EV_1"),
			`{"type":"http","method":"PUT","url":"https://example.com/a?b=\"c\"","headers":[["X-A","1"],["X-A","2"]],"sign":{"scheme":"hmac-sha256-hex","secret":"key","header":"X-Sig","timestampHeader":"X-Ts","template":"{timestamp}:{body}","timestamp":"17"},"idempotencyKey":"EV_1"}`,
			"line\n\"quoted\" é \u2028"},
		{"binary body goes byte for byte", POST("https://example.com").Body([]byte{0xff, 0, 1}), `{"type":"http","method":"POST","url":"https://example.com"}`, "\xff\x00\x01"},
		{"json", POST("https://example.com").JSON(struct {
			A string `json:"a"`
		}{"<&>"}), `{"type":"http","method":"POST","url":"https://example.com","headers":[["Content-Type","application/json"]]}`, `{"a":"<&>"}`},
		{"a forwarded recording keeps its bytes", POST("https://example.com").JSON(map[string]any{"data": json.RawMessage(`{"error":"<pipeline> & \u003c"}`)}),
			`{"type":"http","method":"POST","url":"https://example.com","headers":[["Content-Type","application/json"]]}`, `{"data":{"error":"<pipeline> & \u003c"}}`},
		{"raw json is sent as it is", POST("https://example.com").JSON(json.RawMessage(`{"a" : 1}`)).SignStandardWebhooks("whsec"),
			`{"type":"http","method":"POST","url":"https://example.com","headers":[["Content-Type","application/json"]],"sign":{"scheme":"standard-webhooks","secret":"whsec"}}`, `{"a" : 1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &recorder{}
			withHost(t, h)
			if err := tc.req.Send(); err != nil {
				t.Fatal(err)
			}
			if len(h.emitted) != 1 || string(h.emitted[0]) != tc.want {
				t.Fatalf("emitted %s\nwant    %s", h.emitted, tc.want)
			}
			if !json.Valid(h.emitted[0]) {
				t.Fatal("not JSON")
			}
			if string(h.bodies[0]) != tc.body {
				t.Errorf("body %q, want %q", h.bodies[0], tc.body)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int32
		req    *Request
		want   error
	}{
		{"malformed", hostcall.Malformed, POST("x"), ErrMalformed},
		{"too many", hostcall.TooMany, POST("https://a"), ErrTooMany},
		{"too large", hostcall.TooLarge, POST("https://a"), ErrTooLarge},
		{"not allowed", hostcall.NotAllowed, POST("https://a"), ErrNotAllowed},
		{"bad raw json is refused before sending", hostcall.OK, POST("https://a").JSON(json.RawMessage(`{`)), nil},
		{"unencodable json", hostcall.OK, POST("https://a").JSON(func() {}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &recorder{status: tc.status}
			withHost(t, h)
			err := tc.req.Send()
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Send = %v, want %v", err, tc.want)
			}
			if tc.want == nil && len(h.emitted) != 0 {
				t.Fatalf("a broken body was emitted: %s", h.emitted)
			}
		})
	}
}

func TestOutsideAHandler(t *testing.T) {
	hostcall.Native = nil
	if err := POST("https://a").Send(); !errors.Is(err, ErrNoEvent) {
		t.Errorf("Send = %v, want ErrNoEvent", err)
	}
	if _, err := Config("url"); !errors.Is(err, ErrNoConfig) {
		t.Errorf("Config = %v, want ErrNoConfig", err)
	}
	Info("nobody listens") // must not panic
}

func TestConfigAndLog(t *testing.T) {
	h := &recorder{config: map[string]string{"url": "u", "empty": ""}}
	withHost(t, h)
	if v, err := Config("url"); v != "u" || err != nil {
		t.Errorf("Config(url) = %q, %v", v, err)
	}
	if v := ConfigOr("empty", "def"); v != "" {
		t.Errorf("ConfigOr(empty) = %q: a key set to \"\" is set", v)
	}
	if v := ConfigOr("missing", "def"); v != "def" {
		t.Errorf("ConfigOr(missing) = %q", v)
	}
	Warn("w", "k", 1, "odd")
	Log(LevelError, "e")
	want := []string{"w|k|1|!BADKEY|odd|", "e|"}
	if strings.Join(h.logs, ";") != strings.Join(want, ";") {
		t.Errorf("logs = %q, want %q", h.logs, want)
	}
}
