package service

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/lkedge/lkedge/host/deliver"
)

// adminHandler is the operator API behind lkedge dlq:
//
//	GET  /dlq?since=RFC3339&limit=N  dead letters, oldest first
//	GET  /dlq/show?id=ID             one dead letter
//	POST /dlq/replay?id=ID           send one again
//	POST /dlq/replay?since=RFC3339   send again all dead since then
//	GET  /events/failed              events whose processing gave up, oldest first
//	GET  /events/failed/show?id=ID   one of them, with its webhook
//	POST /events/failed/retry?id=ID  process it again
//	GET  /debug/pprof/...            Go's profiler, for where the time goes
//	GET  /debug/pprof/trace          an execution trace, for where the waits go
func adminHandler(o *deliver.Outbox, f *failedEvents) http.Handler {
	mux := http.NewServeMux()
	f.register(mux)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /dlq", func(w http.ResponseWriter, r *http.Request) {
		since, err := sinceParam(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		limit := 0
		if l := r.URL.Query().Get("limit"); l != "" {
			if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
				http.Error(w, "limit: not a non-negative integer", http.StatusBadRequest)
				return
			}
		}
		dls, err := o.DeadLetters(since, limit)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		views := make([]deadLetterView, 0, len(dls))
		for _, dl := range dls {
			views = append(views, viewDeadLetter(dl))
		}
		writeJSON(w, views)
	})
	mux.HandleFunc("GET /dlq/show", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		dl, err := o.DeadLetter(id)
		if errors.Is(err, deliver.ErrNotFound) {
			http.Error(w, "no dead letter "+id, http.StatusNotFound)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, viewDeadLetter(dl))
	})
	mux.HandleFunc("POST /dlq/replay", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case q.Get("id") != "":
			err := o.Replay(r.Context(), q.Get("id"))
			if errors.Is(err, deliver.ErrNotFound) {
				http.Error(w, "no dead letter "+q.Get("id"), http.StatusNotFound)
				return
			} else if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			writeJSON(w, map[string]int{"replayed": 1})
		case q.Get("since") != "":
			since, err := sinceParam(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			n, err := o.ReplaySince(r.Context(), since)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			writeJSON(w, map[string]int{"replayed": n})
		default:
			http.Error(w, "replay needs id or since", http.StatusBadRequest)
		}
	})
	return mux
}

// requireToken guards next with LKEDGE_ADMIN_TOKEN when one is set: each
// request must carry "Authorization: Bearer TOKEN". Both sides are hashed
// before the constant-time compare, so neither the token's bytes nor its
// length leak through timing.
func requireToken(token string, next http.Handler, log *slog.Logger) http.Handler {
	if token == "" {
		return next // loopback only: config refuses anything else without a token
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			log.Warn("admin API: request refused without a valid LKEDGE_ADMIN_TOKEN", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="lkedge admin"`)
			http.Error(w, "unauthorized: send Authorization: Bearer LKEDGE_ADMIN_TOKEN", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func sinceParam(r *http.Request) (time.Time, error) {
	s := r.URL.Query().Get("since")
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("since: %q is not an RFC 3339 time", s)
	}
	return t, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
