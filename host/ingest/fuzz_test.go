package ingest_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/ingest"
	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/webhook"
)

const fuzzMaxBody = 64 << 10

// leanJournal is a fakeJournal that keeps nothing but a bounded set of ids,
// so long fuzz runs do not grow.
type leanJournal struct {
	mu   sync.Mutex
	seq  uint64
	seen map[string]bool
}

func (j *leanJournal) Append(_ context.Context, id string, at time.Time, _ []byte) (journal.Record, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.seen == nil || len(j.seen) > 10000 {
		j.seen = map[string]bool{}
	}
	if j.seen[id] {
		return journal.Record{}, true, nil
	}
	j.seen[id] = true
	j.seq++
	return journal.Record{Seq: j.seq, ID: id, ReceivedAt: at}, false, nil
}

type leanPipeline struct{}

func (leanPipeline) Accept(context.Context, *event.Event, uint64) error { return nil }
func (leanPipeline) Readmit(context.Context, string) error              { return nil }
func (leanPipeline) Reserve() bool                                      { return true }
func (leanPipeline) Unreserve()                                         {}

func fuzzSeeds(f *testing.F) {
	f.Helper()
	for _, name := range capturedNames {
		auth, b := readCaptured(f, name)
		f.Add(b, auth, mediaType, false) // the real token, valid at fixedNow
		f.Add(b, "", mediaType, true)
		f.Add(b, "Bearer "+auth, mediaType, false)
		f.Add(b, auth, "application/json", false)
		tampered := bytes.Clone(b)
		tampered[len(tampered)-3]++
		f.Add(tampered, auth, mediaType, false)
	}
	egress := []string{
		`{"event":"egress_started","id":"EV_eg1","egressInfo":{"egressId":"EG_1","roomId":"RM_1","roomName":"r1","status":"EGRESS_STARTING","startedAt":"1795755624000000000","roomComposite":{"roomName":"r1","layout":"grid"},"file":{"filename":"r1.mp4"}},"createdAt":"1795755624"}`,
		`{"event":"egress_ended","id":"EV_eg2","egressInfo":{"egressId":"EG_1","roomName":"r1","status":"EGRESS_COMPLETE","endedAt":"1795755700000000000","fileResults":[{"filename":"r1.mp4","location":"s3://bucket/r1.mp4","size":"1234","duration":"5000000000"}]},"createdAt":"1795755700"}`,
		`{"event":"egress_ended","id":"EV_eg3","egressInfo":{"egressId":"EG_2","status":"EGRESS_FAILED","error":"boom"}}`,
		`{"event":"egress_updated","egressInfo":{"egressId":"EG_3","status":"EGRESS_NEW_STATUS"}}`,
	}
	for _, b := range egress {
		f.Add([]byte(b), "", "application/webhook+json; charset=utf-8", true)
	}
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for _, b := range []string{
		"", "{", "}", "null", "[]", "{}", `""`, "0", "\xff\xfe",
		`{"event":"room_started","id":"EV_1","room":{"name":"r1"}}`,
		`{"event":"room_started","room":{"name":"r1"}}`, // no id: derived from the body
		`{"event":"room_started","id":"EV_1","room":null}`,
		`{"event":"room_started","id":"EV_1","room":{"name":"r1"},"unknownField":{"a":[1,2,3]}}`,
		`{"event":"room_started","id":"EV_1","id":"EV_2"}`,
		`{"event":1}`,
		`{"x":` + deep + `}`,
		`{"room":{"name":"r","x":` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + `}}`,
		strings.Repeat("{", 10000),
	} {
		f.Add([]byte(b), "", mediaType, true)
	}
	f.Add(bytes.Repeat([]byte("a"), fuzzMaxBody+1), "", mediaType, true) // 413
	f.Add([]byte("{}"), "not.a.jwt", mediaType, false)
	f.Add([]byte("{}"), "", "", false)
}

// FuzzIngest feeds arbitrary requests to ServeWebhook directly (no network).
// With sign set, the body is signed with a key the verifier knows, at the
// verifier's fixed clock, so the input gets past authentication into JSON
// decoding.
func FuzzIngest(f *testing.F) {
	fuzzSeeds(f)
	h := &ingest.Handler{
		Verifier: webhook.NewVerifier(keys, 0, fixedClock),
		Journal:  &leanJournal{},
		Pipeline: leanPipeline{},
		MaxBody:  fuzzMaxBody,
		Log:      quiet,
		Now:      fixedClock,
	}
	f.Fuzz(func(t *testing.T, body []byte, authorization, contentType string, sign bool) {
		if sign {
			tok, err := webhook.Sign(body, "devkey", "secret", fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			authorization = tok
		}
		var req fasthttp.Request
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(ingest.Path)
		req.Header.SetContentType(contentType)
		if authorization != "" {
			req.Header.Set(fasthttp.HeaderAuthorization, authorization)
		}
		req.SetBody(body)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)

		h.ServeWebhook(&ctx) // a panic fails the fuzz run

		status := ctx.Response.StatusCode()
		switch status {
		case 200, 400, 401, 413, 415, 503:
		default:
			t.Fatalf("status %d", status)
		}

		ct, _, _ := strings.Cut(contentType, ";")
		mediaOK := strings.EqualFold(strings.TrimSpace(ct), mediaType)
		sizeOK := len(body) <= fuzzMaxBody
		_, decodeErr := event.FromWebhook(body, fixedNow)

		if status == 200 && (!mediaOK || !sizeOK || decodeErr != nil) {
			t.Fatalf("accepted: media type ok %v, size ok %v, decode error %v", mediaOK, sizeOK, decodeErr)
		}
		if sign && mediaOK && sizeOK {
			want := 200
			if decodeErr != nil {
				want = 400
			}
			if status != want {
				t.Fatalf("signed request (decode error %v): status %d %q, want %d", decodeErr, status, ctx.Response.Body(), want)
			}
		}
		if !mediaOK && status != 415 {
			t.Fatalf("content type %q: status %d, want 415", contentType, status)
		}
	})
}
