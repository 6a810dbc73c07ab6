package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/pipeline"
)

// failedEvents is the operator API over the journal's failed records:
// events whose processing used up its attempts.
type failedEvents struct {
	journal  *journal.Journal
	pipeline *pipeline.Pipeline
}

// failedEvent is how the API shows a failed record.
type failedEvent struct {
	Seq        uint64    `json:"seq"`
	ID         string    `json:"id"`
	Event      string    `json:"event"`
	ReceivedAt time.Time `json:"received_at"`
	FailedAt   time.Time `json:"failed_at"`
	Reason     string    `json:"reason"`
	// Webhook is the LiveKit webhook as lkedge decoded it (show only),
	// without the secrets FromWebhook drops (TURN password, stream key).
	// A body that no longer decodes is not shown, since those secrets
	// could not be taken out of it: DecodeError says why.
	Webhook     json.RawMessage `json:"webhook,omitempty"`
	DecodeError string          `json:"decode_error,omitempty"`
}

func (f *failedEvents) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /events/failed", func(w http.ResponseWriter, r *http.Request) {
		recs, err := f.journal.Failed()
		if err != nil && recs == nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out := make([]failedEvent, 0, len(recs))
		for _, rec := range recs {
			out = append(out, describeFailed(rec, false))
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /events/failed/show", func(w http.ResponseWriter, r *http.Request) {
		rec, status, err := f.find(r.URL.Query().Get("id"))
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		writeJSON(w, describeFailed(rec, true))
	})
	mux.HandleFunc("POST /events/failed/retry", func(w http.ResponseWriter, r *http.Request) {
		rec, status, err := f.find(r.URL.Query().Get("id"))
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		ev, err := event.FromWebhook(rec.Body, rec.ReceivedAt)
		if err == nil {
			_, err = ev.LiveKit()
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("event %s no longer decodes, not retried: %v", rec.ID, err), http.StatusUnprocessableEntity)
			return
		}
		back, err := f.journal.Retry(r.Context(), rec.Seq)
		if errors.Is(err, journal.ErrNotFailed) {
			http.Error(w, fmt.Sprintf("event %s is no longer failed", rec.ID), http.StatusConflict)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// Pending in the journal now: if the pipeline is shutting down,
		// the next start replays it.
		if err := f.pipeline.Submit(ev, back.Seq, true); err != nil {
			http.Error(w, fmt.Sprintf("event %s is pending again but not queued (%v); it is processed at the next start", rec.ID, err), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]any{"retried": rec.ID, "seq": back.Seq})
	})
}

// find returns the failed record of event id (the latest, should the id
// have failed twice), with the HTTP status to answer when there is none.
func (f *failedEvents) find(id string) (journal.FailedRecord, int, error) {
	if id == "" {
		return journal.FailedRecord{}, http.StatusBadRequest, errors.New("id: the event id is missing")
	}
	recs, err := f.journal.Failed()
	if err != nil && recs == nil {
		return journal.FailedRecord{}, http.StatusInternalServerError, err
	}
	for _, rec := range slices.Backward(recs) {
		if rec.ID == id {
			return rec, http.StatusOK, nil
		}
	}
	return journal.FailedRecord{}, http.StatusNotFound, fmt.Errorf("no failed event %s", id)
}

func describeFailed(rec journal.FailedRecord, full bool) failedEvent {
	fe := failedEvent{Seq: rec.Seq, ID: rec.ID, ReceivedAt: rec.ReceivedAt, FailedAt: rec.FailedAt, Reason: rec.Reason}
	ev, err := event.FromWebhook(rec.Body, rec.ReceivedAt)
	if err == nil {
		fe.Event = ev.Type
	}
	if !full {
		return fe
	}
	if err == nil {
		var b []byte
		var wh *livekit.WebhookEvent
		if wh, err = ev.LiveKit(); err == nil {
			b, err = protojson.Marshal(wh)
		}
		if err == nil {
			fe.Webhook = b
			return fe
		}
	}
	fe.DecodeError = err.Error()
	return fe
}
