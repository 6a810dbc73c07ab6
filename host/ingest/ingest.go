// Package ingest is lkedge's HTTP front: it refuses what is not a genuine
// LiveKit webhook, records what is, answers as soon as the record is
// durable, and hands the event to the pipeline. Answering never waits for
// S3, LiveKit or outbound deliveries.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/webhook"
)

// Path is where LiveKit posts its webhooks, as in OpenVidu Meet.
const Path = "/livekit/webhook"

// mediaType is what LiveKit sends; parameters such as charset are allowed.
const mediaType = "application/webhook+json"

// Journal records accepted events durably.
type Journal interface {
	Append(ctx context.Context, id string, receivedAt time.Time, body []byte) (journal.Record, bool, error)
}

// Pipeline takes recorded events for processing.
type Pipeline interface {
	// Accept queues a just-recorded event and admits it: once it returns
	// nil, the event's place in its room's order is fixed across replicas
	// and the webhook may be answered. An error means the coordinator is
	// unreachable or did not answer in time; the event stays recorded and
	// waits.
	Accept(ctx context.Context, ev *event.Event, seq uint64) error
	// Readmit admits now an event recorded earlier and still waiting for
	// its admission (the sender's retry of a webhook answered 503).
	Readmit(ctx context.Context, eventID string) error
	// Reserve takes a backlog slot before the event is recorded, so that
	// concurrent requests cannot overshoot the bound; Unreserve gives it
	// back once the event is submitted or refused.
	Reserve() bool
	Unreserve()
}

// Handler serves the webhook endpoint.
type Handler struct {
	Verifier *webhook.Verifier
	Journal  Journal
	Pipeline Pipeline
	MaxBody  int
	Log      *slog.Logger
	Now      func() time.Time
}

// Reasons for refusals that are not about the token.
const (
	reasonMethod     = "method_not_allowed"
	reasonMediaType  = "unsupported_media_type"
	reasonTooLarge   = "body_too_large"
	reasonMalformed  = "malformed_json"
	reasonNotWebhook = "not_a_webhook"
	reasonOverloaded = "overloaded"
	reasonJournal    = "journal_error"
	reasonCoord      = "coordination_unavailable"
)

// ServeWebhook handles POST /livekit/webhook.
func (h *Handler) ServeWebhook(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	defer func() { metrics.AcceptSeconds.Observe(time.Since(start).Seconds()) }()
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		h.refuse(ctx, fasthttp.StatusMethodNotAllowed, reasonMethod, nil)
		return
	}
	ct, _, _ := bytes.Cut(ctx.Request.Header.ContentType(), []byte(";"))
	if !bytes.EqualFold(bytes.TrimSpace(ct), []byte(mediaType)) {
		h.refuse(ctx, fasthttp.StatusUnsupportedMediaType, reasonMediaType, fmt.Errorf("content type %.100q, want %s", ctx.Request.Header.ContentType(), mediaType))
		return
	}
	body := ctx.Request.Body()
	if len(body) > h.MaxBody {
		h.refuse(ctx, fasthttp.StatusRequestEntityTooLarge, reasonTooLarge, nil)
		return
	}
	if _, err := h.Verifier.Verify(string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)), body); err != nil {
		var we *webhook.Error
		reason := "unauthorized"
		if errors.As(err, &we) {
			reason = string(we.Reason)
		}
		h.refuse(ctx, fasthttp.StatusUnauthorized, reason, err)
		return
	}
	now := h.Now()
	ev, err := event.FromWebhook(body, now)
	if err != nil {
		reason := reasonMalformed
		if errors.Is(err, event.ErrNotWebhook) {
			reason = reasonNotWebhook
		}
		h.refuse(ctx, fasthttp.StatusBadRequest, reason, err)
		return
	}
	// The event's attributes are added only where a line is written: a
	// logger built with With for every request showed in profiles under
	// load (docs/benchmarks.md).
	evAttrs := func(args ...any) []any { return append([]any{"event_id", ev.ID, "event", ev.Type}, args...) }
	if !h.Pipeline.Reserve() {
		// LiveKit's sender retries 5xx; the event is not lost, only late.
		ctx.Response.Header.Set("Retry-After", "1")
		h.refuse(ctx, fasthttp.StatusServiceUnavailable, reasonOverloaded, nil)
		return
	}
	defer h.Pipeline.Unreserve()
	// Not the request's context: fasthttp cancels it when a graceful shutdown
	// starts, and a webhook already being recorded should still be answered.
	rec, dup, err := h.Journal.Append(context.WithoutCancel(ctx), ev.ID, now, body)
	if err != nil {
		h.Log.Error("recording the event failed", evAttrs("err", err)...)
		ctx.Response.Header.Set("Retry-After", "1")
		h.refuse(ctx, fasthttp.StatusServiceUnavailable, reasonJournal, err)
		return
	}
	// The pipeline bounds the wait for the coordinator (AdmitTimeout).
	actx := context.WithoutCancel(ctx)
	if dup {
		if err := h.Pipeline.Readmit(actx, ev.ID); err != nil {
			h.Log.Warn("cannot admit the event: the coordinator is unreachable; the sender retries", evAttrs("err", err)...)
			ctx.Response.Header.Set("Retry-After", "1")
			h.refuse(ctx, fasthttp.StatusServiceUnavailable, reasonCoord, err)
			return
		}
		metrics.WebhooksDuplicate.Inc()
		h.Log.Info("duplicate delivery ignored", evAttrs()...)
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	}
	// Recorded means accepted: even if the backlog filled up meanwhile, the
	// event is queued rather than refused after the fact. Only its
	// admission can still fail, and then it waits in the journal.
	// Shutting down, the event is replayed and admitted at the next start;
	// refused meanwhile, the sender retries, maybe on another replica, and
	// whichever admits it first processes it.
	if err := h.Pipeline.Accept(actx, ev, rec.Seq); err != nil {
		h.Log.Warn("event recorded but not admitted; it waits in the journal and the sender retries", evAttrs("err", err)...)
		ctx.Response.Header.Set("Retry-After", "1")
		h.refuse(ctx, fasthttp.StatusServiceUnavailable, reasonCoord, err)
		return
	}
	metrics.WebhooksReceived.WithLabelValues(ev.Type).Inc()
	if h.Log.Enabled(ctx, slog.LevelDebug) {
		h.Log.Debug("webhook accepted", evAttrs("seq", rec.Seq)...)
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
}

func (h *Handler) refuse(ctx *fasthttp.RequestCtx, status int, reason string, err error) {
	metrics.WebhooksRejected.WithLabelValues(reason).Inc()
	attrs := []any{"status", status, "reason", reason, "remote", ctx.RemoteAddr().String()}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	h.Log.Warn("webhook refused", attrs...)
	ctx.SetStatusCode(status)
	ctx.SetBodyString(reason + "\n")
}

// ServerError answers errors fasthttp raises before a handler runs, above
// all bodies over the size limit, so they are counted and logged like the
// rest.
func (h *Handler) ServerError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		h.refuse(ctx, fasthttp.StatusRequestEntityTooLarge, reasonTooLarge, err)
		return
	}
	h.refuse(ctx, fasthttp.StatusBadRequest, "bad_request", err)
}
