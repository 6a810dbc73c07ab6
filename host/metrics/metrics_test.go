package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/dispatch"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// TestDashboardMetricsExist: every lkedge metric the Grafana dashboard in
// docs/ queries is one this package registers, so the two cannot drift.
func TestDashboardMetricsExist(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	// Touch the vectors so each family is gathered.
	WebhooksReceived.WithLabelValues("x")
	WebhooksRejected.WithLabelValues("x")
	EventsProcessed.WithLabelValues("x")
	LiveKitErrors.WithLabelValues("x")
	StoreErrors.WithLabelValues("x")
	ProcessSeconds.WithLabelValues("x")
	if err := Register(Registry); err != nil {
		t.Fatal(err)
	}
	registerStages(t)
	families, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
	}
	name := regexp.MustCompile(`\b(lkedge|process)_[a-z_]+`)
	seen := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
				if !known[base] {
					t.Errorf("panel %q queries %s, which lkedge does not export", p.Title, m)
				}
				seen++
			}
		}
	}
	if seen == 0 {
		t.Fatal("the dashboard queries no metric")
	}
}

// registerStages runs one event through a real plugin and outbox to a
// local receiver, the way the service wires them, so that every plugin and
// delivery metric family has been touched.
func registerStages(t *testing.T) {
	dir := t.TempDir()
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer recv.Close()
	wasm := plugintest.Build(t, "../plugin/testdata/plugins/typical")
	if err := os.WriteFile(filepath.Join(dir, "typical.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := "plugins:\n  - name: typical\n    wasm: typical.wasm\n    events: [\"*\"]\n    rooms: all\n" +
		"    config: {url: \"" + recv.URL + "\"}\n    secrets: {key: {env: LKEDGE_TEST_KEY}}\n    allow: [\"config:url\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "plugins.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LKEDGE_TEST_KEY", "k")
	var d *dispatch.Dispatcher
	o, err := deliver.Open(filepath.Join(dir, "outbox.db"), deliver.Options{Registerer: Registry,
		Secrets: secretsFunc(func(p, n string) ([]byte, error) { return d.Secret(p, n) })})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; o.Close() }()
	d, err = dispatch.New(ctx, dispatch.Options{Path: filepath.Join(dir, "plugins.yaml"), Tasks: filepath.Join(dir, "tasks.db"), Outbox: o, Registerer: Registry})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	ev, err := event.FromWebhook([]byte(`{"event":"room_started","id":"EV_m","room":{"name":"r"}}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Handle(ctx, []*event.Event{ev}, slog.Default()); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := d.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := o.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
}

type secretsFunc func(plugin, name string) ([]byte, error)

func (f secretsFunc) Secret(plugin, name string) ([]byte, error) { return f(plugin, name) }
