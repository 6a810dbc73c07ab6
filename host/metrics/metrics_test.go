package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
