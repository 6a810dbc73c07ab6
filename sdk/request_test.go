//go:build !wasip1

package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

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
		msg    string
	}{
		{"malformed", hostcall.Malformed, POST("x"), ErrMalformed, ""},
		{"too many", hostcall.TooMany, POST("https://a"), ErrTooMany, ""},
		{"too large", hostcall.TooLarge, POST("https://a"), ErrTooLarge, ""},
		{"not allowed", hostcall.NotAllowed, POST("https://a"), ErrNotAllowed, "destination not in the plugin's allow-list: https://a"},
		{"unknown status", 99, POST("https://a"), nil, "lkedge refused the request (status 99)"},
		{"bad raw json is refused before sending", hostcall.OK, POST("https://a").JSON(json.RawMessage(`{`)), nil, ""},
		{"unencodable json", hostcall.OK, POST("https://a").JSON(func() {}), nil, "encode body: json: unsupported type: func()"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &recorder{status: tc.status}
			withHost(t, h)
			err := tc.req.Send()
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Send = %v, want %v", err, tc.want)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("Send = %q, want %q", err, tc.msg)
			}
			if tc.status == hostcall.OK && len(h.emitted) != 0 {
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
	if _, err := Config("missing \"key\""); !errors.Is(err, ErrNoConfig) || err.Error() != `config key not set: "missing \"key\""` {
		t.Errorf("Config(missing) = %v", err)
	}
	Warn("w", "k", 1, "odd")
	Log(LevelError, "e")
	want := []string{"w|k|1|!BADKEY|odd|", "e|"}
	if strings.Join(h.logs, ";") != strings.Join(want, ";") {
		t.Errorf("logs = %q, want %q", h.logs, want)
	}
}

type stringer struct{ s string }

func (s *stringer) String() string { return s.s }

type both struct{}

func (both) Error() string  { return "as error" }
func (both) String() string { return "as string" }

// TestLogValues checks Log's formatting against fmt's %v, the oracle, for
// every kind it formats, and the marker for the rest.
func TestLogValues(t *testing.T) {
	var nilStringer *stringer
	for _, v := range []any{
		nil, "", "text with spaces", true, false,
		0, -7, int8(-8), int16(1600), int32(-32), int64(-1 << 63),
		uint(7), uint8(255), uint16(16), uint32(1 << 31), uint64(1<<64 - 1), uintptr(9),
		float32(1.5), float32(0.1), 1e21, 0.000001, -0.0, math.Inf(1), math.NaN(), 3.0,
		errors.New("an error"), both{}, &stringer{"a stringer"}, time.Duration(1500) * time.Millisecond,
		time.Date(2026, 12, 6, 15, 4, 5, 0, time.UTC),
	} {
		want := fmt.Sprintf("%v", v)
		if got := string(appendValue(nil, v)); got != want {
			t.Errorf("appendValue(%#v) = %q, want %q (fmt)", v, got, want)
		}
	}
	for _, v := range []any{struct{ A int }{1}, []int{1}, []byte("x"), map[string]int{}, 1 + 2i, nilStringer} {
		want := unsupported
		if v == any(nilStringer) {
			want = "!PANIC"
		}
		if got := string(appendValue(nil, v)); got != want {
			t.Errorf("appendValue(%#v) = %q, want %q", v, got, want)
		}
	}
}
