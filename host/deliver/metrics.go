package deliver

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Delivery outcomes counted by lkedge_deliveries_total.
const (
	outcomeDelivered = "delivered"
	outcomeRetried   = "retried"
	outcomeDead      = "dead"
	outcomeRefused   = "refused"
)

type metrics struct {
	deliveries     *prometheus.CounterVec
	attempts       *prometheus.CounterVec
	attemptSeconds prometheus.Histogram
	pending        prometheus.Gauge
	dlq            prometheus.Gauge
	breakerOpen    prometheus.Gauge
}

// newMetrics builds the outbox metrics and registers them on r if r is not
// nil. Collectors already registered by an earlier Outbox on the same
// registry (a reopen in the same process) are reused, not duplicated.
func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lkedge_deliveries_total",
			Help: "Plugin HTTP deliveries by outcome: delivered, retried (an attempt failed and will be retried), dead, refused (egress policy).",
		}, []string{"plugin", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lkedge_delivery_attempts_total", Help: "Delivery attempts, by plugin.",
		}, []string{"plugin"}),
		attemptSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lkedge_delivery_attempt_seconds",
			Help:    "Duration of one delivery HTTP attempt.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lkedge_outbox_pending", Help: "Deliveries waiting to be delivered, in-flight ones included.",
		}),
		dlq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lkedge_dlq_size", Help: "Dead-lettered deliveries stored.",
		}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lkedge_breaker_open", Help: "Destination origins whose circuit breaker is open.",
		}),
	}
	if r == nil {
		return m, nil
	}
	var err error
	if m.deliveries, err = register(r, m.deliveries); err != nil {
		return nil, err
	}
	if m.attempts, err = register(r, m.attempts); err != nil {
		return nil, err
	}
	if m.attemptSeconds, err = register(r, m.attemptSeconds); err != nil {
		return nil, err
	}
	if m.pending, err = register(r, m.pending); err != nil {
		return nil, err
	}
	if m.dlq, err = register(r, m.dlq); err != nil {
		return nil, err
	}
	if m.breakerOpen, err = register(r, m.breakerOpen); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	err := r.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// publishLocked updates the gauges from the scheduler state; o.mu is held.
func (o *Outbox) publishLocked() {
	o.m.pending.Set(float64(o.sched.pending))
	o.m.dlq.Set(float64(o.sched.dead))
	o.m.breakerOpen.Set(float64(o.sched.open))
}
