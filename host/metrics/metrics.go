// Package metrics holds lkedge's Prometheus metrics, so every stage counts
// into one registry that /metrics serves.
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry is what /metrics exposes.
var Registry = prometheus.NewRegistry()

var (
	// WebhooksReceived counts accepted webhooks by LiveKit event name.
	WebhooksReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lkedge_webhooks_received_total", Help: "Verified webhooks accepted, by event.",
	}, []string{"event"})
	// WebhooksRejected counts refused requests by reason.
	WebhooksRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lkedge_webhooks_rejected_total", Help: "Webhook requests refused, by reason.",
	}, []string{"reason"})
	// WebhooksDuplicate counts deliveries of an event id already accepted.
	WebhooksDuplicate = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lkedge_webhooks_duplicate_total", Help: "Deliveries of an already accepted event id.",
	})
	// EventsProcessed counts events whose processing ended, by outcome
	// (done, retried, failed, late, fenced, and skipped: finished when
	// accepted, because neither Meet nor any plugin reads them).
	EventsProcessed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lkedge_events_processed_total", Help: "Processing attempts of accepted events, by outcome.",
	}, []string{"outcome"})
	// Backlog is the number of accepted events not yet processed.
	Backlog = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lkedge_backlog_events", Help: "Accepted events waiting to be processed.",
	})
	// BacklogReadBack counts waiting events read back from the journal:
	// those admitted while more than the pipeline's InMemory waited.
	BacklogReadBack = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lkedge_backlog_read_back_total", Help: "Waiting events read back from the journal, kept there while the backlog was long.",
	})
	// LiveKitErrors counts failed LiveKit server API calls by call.
	LiveKitErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lkedge_livekit_errors_total", Help: "Failed LiveKit server API calls, by call.",
	}, []string{"call"})
	// AcceptSeconds is how long answering a webhook takes, refusals included:
	// what LiveKit's sender waits for.
	AcceptSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "lkedge_accept_seconds", Help: "Time to answer a webhook request.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	// ProcessSeconds is how long one attempt at an event's stages takes, by
	// stage (admit, turn, meet, sink, settle).
	ProcessSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "lkedge_process_seconds", Help: "Time of one processing attempt, by stage.",
		Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1, 5},
	}, []string{"stage"})
	// CoordinationErrors counts failed admissions and turns (the coordinator
	// unreachable).
	CoordinationErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lkedge_coordination_errors_total", Help: "Failed admissions and turns: the coordinator was unreachable.",
	})
	// StoreErrors counts failed storage operations by operation.
	StoreErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lkedge_store_errors_total", Help: "Failed storage operations, by operation.",
	}, []string{"op"})
	// MeetCache counts lookups in the Meet logic's caches by cache
	// (ownership: Meet room records found; recording: stored recording
	// states) and result: hit when the cache saved a store read, miss when
	// the store was read (a cached write that failed its condition included).
	MeetCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lkedge_meet_cache_total", Help: "Lookups in the Meet logic's caches, by cache and result.",
	}, []string{"cache", "result"})
)

// Register registers the collectors of this package, Go's and the
// process's with r. Every stage's metrics are registered the same way, by
// the service into the registry it serves (deliver and dispatch take a
// Registerer too); registering again, as tests that start several services
// in one process do, keeps the collectors already there.
func Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		WebhooksReceived, WebhooksRejected, WebhooksDuplicate, EventsProcessed, Backlog, BacklogReadBack, LiveKitErrors, StoreErrors, MeetCache,
		AcceptSeconds, ProcessSeconds, CoordinationErrors,
	} {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return nil
}
