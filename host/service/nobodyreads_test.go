package service

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/metrics"
)

// TestWebhooksNobodyReads: webhooks of a room lkedge does not own, of types
// no plugin subscribed to, are answered, finished when accepted (counted as
// skipped) and left done in the journal; the same room's event a plugin
// subscribed to, and a Meet room's event, still go the whole way.
func TestWebhooksNobodyReads(t *testing.T) {
	f, s := withTypical(t, 0, "    events: [room_finished]\n    rooms: all\n")
	skipped0 := testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("skipped"))
	done0 := testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("done"))
	url, stop := f.start(t, nil)
	for _, body := range []string{
		`{"event":"participant_joined","id":"EV_nr_1","room":{"sid":"RM_pc","name":"pottery-club"},"participant":{"sid":"PA_1","identity":"ines"}}`,
		`{"event":"track_published","id":"EV_nr_2","room":{"sid":"RM_pc","name":"pottery-club","metadata":"{\"createdBy\":\"a-calendar-app\"}"},"participant":{"sid":"PA_1","identity":"ines"},"track":{"sid":"TR_1","type":"AUDIO"}}`,
		`{"event":"participant_joined","id":"EV_nr_3","room":{"sid":"RM_123","name":"` + room + `","metadata":"{\"createdBy\":\"openviduMeet\"}"},"participant":{"sid":"PA_2","identity":"zoe"}}`,
		`{"event":"room_finished","id":"EV_nr_4","room":{"sid":"RM_pc","name":"pottery-club"}}`,
	} {
		if code := post(t, url, []byte(body)); code != http.StatusOK {
			t.Fatalf("webhook answered %d: %s", code, body)
		}
	}
	_, bodies := s.wait(t, 1)
	if want := `{"event":"room_finished","id":"EV_nr_4","room":"pottery-club"}`; len(bodies) != 1 || string(bodies[0]) != want {
		t.Errorf("the sink got %q, want only %s", bodies, want)
	}
	if got := testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("skipped")) - skipped0; got != 2 {
		t.Errorf("%v events skipped, want 2 (EV_nr_1, EV_nr_2)", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("done"))-done0 < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("done")) - done0; got != 2 {
		t.Errorf("%v events processed, want 2 (the Meet room's join, the room_finished)", got)
	}
	stop()
	j, err := journal.Open(JournalPath(f.dir), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if pending, err := j.Pending(); err != nil || len(pending) != 0 {
		t.Errorf("journal after a clean stop: pending %v, %v; want none", pending, err)
	}
}
