//go:build !wasip1

package sdktest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lkedge/lkedge/sdk"
)

const event = `{"version":1,"id":"EV_1","type":"room_started","source":"livekit","receivedAt":1,"createdAt":1,"room":{"name":"r1"}}`

func TestRunNative(t *testing.T) {
	t.Setenv(EnvWasm, "")
	binary := []byte{0xff, 0x00, 'x'}
	tests := []struct {
		name    string
		handler func(*sdk.Event) error
		want    *Result
		wantErr string
	}{
		{
			name: "everything a request carries",
			handler: func(ev *sdk.Event) error {
				url, err := sdk.Config("url")
				if err != nil {
					return err
				}
				sdk.Info("sending", "room", ev.Room.Name, "n", 1)
				return sdk.POST(url).JSON(map[string]string{"room": ev.Room.Name}).Header("X-A", "b").
					Sign(sdk.Signature{Scheme: sdk.SchemeHMAC, Secret: "key", Timestamp: "5"}).IdempotencyKey(ev.ID).Send()
			},
			want: &Result{
				Requests: []Request{{Method: "POST", URL: "https://example.com/hook", Headers: [][2]string{{"Content-Type", "application/json"}, {"X-A", "b"}},
					Body: []byte(`{"room":"r1"}`), Sign: &sdk.Signature{Scheme: sdk.SchemeHMAC, Secret: "key", Timestamp: "5"}, IdempotencyKey: "EV_1"}},
				Logs: []Log{{Level: "INFO", Msg: "sending", Attrs: [][2]string{{"room", "r1"}, {"n", "1"}}}},
			},
		},
		{
			name: "binary body, other method",
			handler: func(*sdk.Event) error {
				return sdk.NewRequest("PUT", "http://example.com/x").Body(binary).Send()
			},
			want: &Result{Requests: []Request{{Method: "PUT", URL: "http://example.com/x", Body: binary}}},
		},
		{
			name:    "the handler's error",
			handler: func(*sdk.Event) error { return errors.New("boom") },
			want:    &Result{},
			wantErr: "boom",
		},
		{
			name: "missing config",
			handler: func(*sdk.Event) error {
				_, err := sdk.Config("nope")
				return err
			},
			want:    &Result{},
			wantErr: `config key not set: "nope"`,
		},
		{
			name: "a refused request fails the call even if ignored",
			handler: func(*sdk.Event) error {
				if err := sdk.POST("/relative").Send(); !errors.Is(err, sdk.ErrMalformed) {
					t.Errorf("Send = %v, want ErrMalformed", err)
				}
				return nil
			},
			want:    &Result{},
			wantErr: `url "/relative" is not an absolute http(s) URL`,
		},
		{
			name: "too many requests",
			handler: func(*sdk.Event) error {
				for i := 0; ; i++ {
					if err := sdk.POST("https://example.com").Send(); err != nil {
						if i != maxRequests || !errors.Is(err, sdk.ErrTooMany) {
							t.Errorf("request %d: %v", i, err)
						}
						return err
					}
				}
			},
			wantErr: "too many requests",
		},
		{
			name: "standard webhooks takes no overrides in the host, but the plugin may ask",
			handler: func(*sdk.Event) error {
				return sdk.POST("https://example.com").SignStandardWebhooks("whsec").Send()
			},
			want: &Result{Requests: []Request{{Method: "POST", URL: "https://example.com", Sign: &sdk.Signature{Scheme: sdk.SchemeStandardWebhooks, Secret: "whsec"}}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Run(tc.handler, Event(event), Config{"url": "https://example.com/hook"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one with %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(res, tc.want) {
				t.Fatalf("result\n got %+v\nwant %+v", res, tc.want)
			}
		})
	}
}

func TestRunRefusesBadEvents(t *testing.T) {
	t.Setenv(EnvWasm, "")
	called := false
	h := func(*sdk.Event) error { called = true; return nil }
	if _, err := Run(h); err == nil {
		t.Error("Run without an event succeeded")
	}
	if _, err := Run(h, Event(`{"id":`)); err == nil || !strings.Contains(err.Error(), "decode event") {
		t.Errorf("Run on broken JSON: %v", err)
	}
	if called {
		t.Error("the handler ran on a bad event")
	}
}

func TestRequestJSON(t *testing.T) {
	for _, r := range []Request{
		{Method: "POST", URL: "https://a", Body: []byte("text é")},
		{Method: "POST", URL: "https://a", Body: []byte{0xff, 0xfe}},
		{Method: "GET", URL: "https://a", Headers: [][2]string{{"A", "b"}}, Sign: &sdk.Signature{Scheme: "s", Secret: "k"}, IdempotencyKey: "i"},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back Request
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("%s reads back as %+v, want %+v", b, back, r)
		}
	}
}

func TestRunWasmReportsAMissingBinary(t *testing.T) {
	t.Setenv(EnvWasm, "plugin.wasm")
	t.Setenv(EnvBin, "/nonexistent/lkedge")
	_, err := Run(nil, Event(event))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/lkedge") {
		t.Fatalf("error = %v", err)
	}
}

func TestRunLazy(t *testing.T) {
	t.Setenv(EnvWasm, "")
	for _, tc := range []struct {
		name, event, wantErr string
		want                 []Request
	}{
		{"reads an object", `{"id":"EV_1","meet":{"roomId":"r1"}}`, "",
			[]Request{{Method: "POST", URL: "https://example.com/r1", IdempotencyKey: "EV_1"}}},
		{"the object's error fails the call", `{"id":"EV_1","meet":{"roomId":5}}`, "meet.roomId", nil},
		{"a broken top level fails before the handler", `{"id":5}`, "decode event", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := RunLazy(func(ev *sdk.LazyEvent) error {
				m, err := ev.Meet()
				if err != nil {
					return err
				}
				return sdk.POST("https://example.com/" + m.RoomID).IdempotencyKey(ev.ID).Send()
			}, Event(tc.event))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Requests, tc.want) {
				t.Fatalf("requests\n got %+v\nwant %+v", res.Requests, tc.want)
			}
		})
	}
}
