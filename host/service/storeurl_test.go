package service

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// TestStoreURLPolicy is issue 19's point 8 end to end: OpenVidu Meet's
// admin API edits global-preferences.json, so whoever holds it chooses the
// URL a store-backed plugin posts to. Through the real outbox and dialer,
// such a URL never reaches loopback or private addresses unless
// plugins.yaml says allowPrivate, and never link-local, metadata or
// lkedge's own listeners (its admin API's replay, its webhook port) at all.
func TestStoreURLPolicy(t *testing.T) {
	wasm := plugintest.Build(t, "../plugin/testdata/plugins/typical")
	tests := []struct {
		name         string
		allowPrivate bool
		url          func(s *sink, svc *Service) string
		delivered    bool   // the sink gets it
		dead         string // else: part of the dead letter's last error
	}{
		{name: "loopback receiver", url: func(s *sink, _ *Service) string { return s.srv.URL + "/hook" }, dead: "(loopback)"},
		{name: "admin API replay", url: func(_ *sink, svc *Service) string {
			return "http://" + svc.AdminAddr().String() + "/dlq/replay?since=2000-01-01T00:00:00Z"
		}, dead: "lkedge's own listener"},
		{name: "metadata", url: func(*sink, *Service) string { return "http://169.254.169.254/latest/meta-data/" }, dead: "(cloud metadata)"},
		{name: "opted in: loopback receiver", allowPrivate: true, url: func(s *sink, _ *Service) string { return s.srv.URL + "/hook" }, delivered: true},
		{name: "opted in: admin API replay", allowPrivate: true, url: func(_ *sink, svc *Service) string {
			return "http://" + svc.AdminAddr().String() + "/dlq/replay?since=2000-01-01T00:00:00Z"
		}, dead: "lkedge's own listener"},
		{name: "opted in: webhook port", allowPrivate: true, url: func(_ *sink, svc *Service) string {
			return "http://localhost:" + portOf(svc.Addr().String()) + "/livekit/webhook"
		}, dead: "lkedge's own listener"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if err := os.WriteFile(filepath.Join(f.dir, "typical.wasm"), wasm, 0o644); err != nil {
				t.Fatal(err)
			}
			s := newSink(t, 0)
			t.Setenv("LKEDGE_TEST_HOOK_KEY", "hook-secret")
			optIn := ""
			if tt.allowPrivate {
				optIn = "    allowPrivate: [url]\n"
			}
			// The operator's fallback is a loopback URL, as Meet's default
			// is: it stays allowed, and vouches for nothing else.
			f.cfg.PluginsFile = writePlugins(t, f.dir, `plugins:
  - name: typical
    wasm: typical.wasm
    events: [egress_updated]
    config:
      url: {store: global-preferences.json, field: webhooksPreferences.url, default: "http://localhost:5080/webhook"}
    secrets: {key: {env: LKEDGE_TEST_HOOK_KEY}}
    allow: ["config:url"]
`+optIn+`    delivery: {attempts: 1, timeout: 2s}
`)
			svc, err := New(t.Context(), f.cfg, Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			target := tt.url(s, svc)
			prefs := filepath.Join(f.dir, "openvidu", "openvidu-meet", "global-preferences.json")
			if err := os.WriteFile(prefs, []byte(`{"webhooksPreferences":{"enabled":true,"url":"`+target+`"}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx, 0) }()
			defer func() { cancel(); <-done }()
			if code := post(t, "http://"+svc.Addr().String(), egressBody("EV_s1", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000")); code != 200 {
				t.Fatalf("webhook answered %d", code)
			}
			if tt.delivered {
				reqs, _ := s.wait(t, 1)
				if reqs[0].URL.Path != "/hook" {
					t.Errorf("delivered to %s", reqs[0].URL.Path)
				}
				return
			}
			admin := "http://" + svc.AdminAddr().String()
			var dls []struct {
				URL       string `json:"url"`
				LastError string `json:"last_error"`
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(dls) == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				getJSON(t, admin+"/dlq", &dls)
			}
			if len(dls) != 1 || dls[0].URL != target {
				t.Fatalf("dead letters = %+v, want the request to %s", dls, target)
			}
			if !strings.Contains(dls[0].LastError, "forbidden address") || !strings.Contains(dls[0].LastError, tt.dead) {
				t.Errorf("last error %q, want a forbidden address naming %q", dls[0].LastError, tt.dead)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.attempts != 0 {
				t.Errorf("the loopback receiver saw %d requests", s.attempts)
			}
		})
	}
}

func portOf(hostport string) string {
	i := strings.LastIndexByte(hostport, ':')
	return hostport[i+1:]
}
