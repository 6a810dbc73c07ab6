package service

import (
	"testing"

	"github.com/lkedge/lkedge/host/internal/testserver"
)

// TestGCPercentOfTheBinary: lkedge serve runs its collector at 50 % unless
// the operator's GOGC says otherwise, as the runtime reports it.
func TestGCPercentOfTheBinary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want float64
	}{
		{"no GOGC", nil, 50},
		{"GOGC=150", map[string]string{"GOGC": "150"}, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"LKEDGE_DATA_DIR": t.TempDir()}
			for k, v := range tc.env {
				env[k] = v
			}
			proc := testserver.StartLKEdge(t, env)
			if got := metric(t, proc.URL, "go_gc_gogc_percent"); got != tc.want {
				t.Errorf("go_gc_gogc_percent = %v, want %v", got, tc.want)
			}
		})
	}
}
