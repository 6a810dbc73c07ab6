package dispatch

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	calls     *prometheus.CounterVec
	seconds   *prometheus.HistogramVec
	instances *prometheus.GaugeVec
	loaded    prometheus.Gauge
	reloads   *prometheus.CounterVec

	tasks       *prometheus.CounterVec
	queued      *prometheus.GaugeVec
	running     prometheus.Gauge
	failedTasks prometheus.Gauge
	paused      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lkedge_plugin_calls_total", Help: "Plugin calls, by plugin and outcome (ok, timeout, trap, exit, error, output, init).",
		}, []string{"plugin", "outcome"})),
		seconds: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lkedge_plugin_call_seconds", Help: "Time of one plugin call, by plugin.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
		}, []string{"plugin"})),
		instances: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lkedge_plugin_instances", Help: "Live wasm instances, by plugin.",
		}, []string{"plugin"})),
		loaded: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lkedge_plugins_loaded", Help: "Plugins running.",
		})),
		reloads: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lkedge_plugin_reloads_total", Help: "Reloads of plugins.yaml or modules, by outcome (ok, partial, failed).",
		}, []string{"outcome"})),
		tasks: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lkedge_plugin_tasks_total", Help: "Plugin calls owed on events, by plugin and how they ended (done, skipped, retried, failed, dropped, refused).",
		}, []string{"plugin", "outcome"})),
		queued: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lkedge_plugin_tasks_queued", Help: "Plugin calls owed on events and not yet made, running ones included, by plugin.",
		}, []string{"plugin"})),
		running: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lkedge_plugin_calls_running", Help: "Plugin calls running now, all plugins together (at most the concurrency bound).",
		})),
		failedTasks: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lkedge_plugin_tasks_failed", Help: "Plugin calls given up under failure: hold and kept in the task file.",
		})),
		paused: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lkedge_plugin_paused", Help: "1 while a plugin is paused because its calls kept crashing or running out of time.",
		}, []string{"plugin"})),
	}
	// Zero rather than absent, so a dashboard shows "no reloads failed".
	for _, outcome := range []string{"ok", "partial", "failed"} {
		m.reloads.WithLabelValues(outcome)
	}
	return m
}

// register adds c to reg, or returns the collector a previous Dispatcher
// in this process registered (tests and restarts in one process).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c
}
