package service

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
	"github.com/lkedge/lkedge/host/webhook"
)

// meetSink is an OpenVidu Meet application: it records every webhook it
// receives, checks its signature, and answers 200.
type meetSink struct {
	t      testing.TB
	secret string
	mu     sync.Mutex
	got    []meetHook
	srv    *httptest.Server
}

type meetHook struct {
	key  string // Idempotency-Key
	body []byte
	at   time.Time
}

func newMeetSink(t testing.TB, secret string) *meetSink {
	s := &meetSink{t: t, secret: secret}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(r.Header.Get("X-Timestamp") + "." + string(body)))
		if got := r.Header.Get("X-Signature"); got != hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("webhook %s: X-Signature %q does not sign its body", r.Header.Get("Idempotency-Key"), got)
		}
		s.mu.Lock()
		s.got = append(s.got, meetHook{key: r.Header.Get("Idempotency-Key"), body: body, at: time.Now()})
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *meetSink) hooks() []meetHook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// meetWebhookPlugin writes into dir the openvidu-webhook plugin, built by
// the test, and a plugins.yaml that runs it on recording events, POSTing to
// app/webhook signed with the secret in the environment variable keyEnv.
func meetWebhookPlugin(t testing.TB, dir, app, keyEnv, delivery string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "openvidu-webhook.wasm"), plugintest.Build(t, "../../plugins/openvidu-webhook"), 0o644); err != nil {
		t.Fatal(err)
	}
	return writePlugins(t, dir, `plugins:
  - name: openvidu-webhook
    wasm: openvidu-webhook.wasm
    events: [egress_started, egress_updated, egress_ended]
    config: {url: "`+app+`/webhook", enabled: "true"}
    secrets: {meet_api_key: {env: `+keyEnv+`}}
    allow: ["config:url"]
    delivery: `+delivery+`
`)
}

// liveKitSender sends webhooks as LiveKit's sender does, through a load
// balancer that picks a replica at random: a key's next webhook only once
// the previous one was answered 200; 5xx and refused connections are
// retried; and some webhooks also reach a second replica at once (a second
// LiveKit node, or a retry the first never answered).
type liveKitSender struct {
	reps   []*testserver.LKEdgeProcess
	twice  float64
	client *http.Client
	mu     sync.Mutex
	rng    *rand.Rand
	tries  int
}

func (s *liveKitSender) pick() (int, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.rng.IntN(len(s.reps))
	if len(s.reps) == 1 {
		return i, i, false // no other replica to send a duplicate to
	}
	j := (i + 1 + s.rng.IntN(len(s.reps)-1)) % len(s.reps)
	return i, j, s.rng.Float64() < s.twice
}

// postWebhook sends body to the webhook endpoint of the lkedge at url as
// LiveKit does: signed with the tests' key pair, as
// application/webhook+json.
func postWebhook(client *http.Client, url string, body []byte) (*http.Response, error) {
	tok, err := webhook.Sign(body, "devkey", "secret", time.Now())
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, url+"/livekit/webhook", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/webhook+json")
	req.Header.Set("Authorization", tok)
	return client.Do(req)
}

func (s *liveKitSender) post(url string, body []byte) int {
	res, err := postWebhook(s.client, url, body)
	if err != nil {
		return 0 // refused, reset: retried
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// send delivers one webhook until a replica answers 200, and reports
// whether one did within the deadline.
func (s *liveKitSender) send(body []byte, deadline time.Time) bool {
	wait := 100 * time.Millisecond
	for time.Now().Before(deadline) {
		i, j, twice := s.pick()
		if twice {
			go s.post(s.reps[j].URL, body)
		}
		s.mu.Lock()
		s.tries++
		s.mu.Unlock()
		if s.post(s.reps[i].URL, body) == http.StatusOK {
			return true
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
	return false
}

// processedOrder reads, from the replicas' own logs, the order in which
// the events of each room were finished across all replicas.
func processedOrder(t *testing.T, reps []*testserver.LKEdgeProcess) map[string][]string {
	t.Helper()
	type line struct {
		Time  time.Time `json:"time"`
		Msg   string    `json:"msg"`
		Event string    `json:"event_id"`
		Room  string    `json:"room"`
	}
	var all []line
	for _, rep := range reps {
		sc := bufio.NewScanner(strings.NewReader(rep.Log()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l line
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "event finished" {
				all = append(all, l)
			}
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].Time.Before(all[b].Time) })
	order := map[string][]string{}
	for _, l := range all {
		order[l.Room] = append(order[l.Room], l.Event)
	}
	return order
}

// TestReplicasKeepLiveKitsOrder is issue 16's trial: three real replicas on
// one Consul and S3, behind a load balancer that picks a replica at random,
// fed by a LiveKit-like sender. Recording lifecycles run in many Meet rooms
// while the leader is killed with SIGKILL and restarted, and Consul is
// stopped for 8 s. Every webhook OpenVidu Meet would send reaches the
// application exactly once by idempotency key, in order per egress, signed
// and byte for byte; every recording ends COMPLETE; and the replicas'
// records show each room's events processed in the order LiveKit's sender
// saw them answered.
func TestReplicasKeepLiveKitsOrder(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	app := newMeetSink(t, "order-secret")
	c.env["LKEDGE_PLUGINS"] = meetWebhookPlugin(t, t.TempDir(), app.srv.URL, "ORDER_TEST_MEET_KEY", "{backoff: 50ms}")
	c.env["ORDER_TEST_MEET_KEY"] = "order-secret"
	reps := []*testserver.LKEdgeProcess{c.replica(t, "a"), c.replica(t, "b"), c.replica(t, "c")}
	eventually(t, 15*time.Second, "a leader", func() bool { return c.leader() != "" })

	const rooms = 12
	putRooms(t, c.s3, "ord", rooms)
	sender := &liveKitSender{reps: reps, twice: 0.3, client: &http.Client{Timeout: 10 * time.Second}, rng: rand.New(rand.NewPCG(16, 2026))}

	// Each room runs recordings one after another until the load stops.
	var mu sync.Mutex
	sent := map[string][]string{}  // room -> event ids in the order answered 200
	recordings := map[string]int{} // egress id -> steps answered
	var lost []string
	stopLoad := time.Now().Add(28 * time.Second)
	var wg sync.WaitGroup
	for r := range rooms {
		wg.Go(func() {
			room := fmt.Sprintf("ord-%d", r)
			for rec := 0; time.Now().Before(stopLoad); rec++ {
				for step := range recordingSteps {
					body, id, egress := orderedStep(room, rec, step)
					if !sender.send(body, time.Now().Add(60*time.Second)) {
						mu.Lock()
						lost = append(lost, id)
						mu.Unlock()
						return
					}
					mu.Lock()
					sent[room] = append(sent[room], id)
					recordings[egress]++
					mu.Unlock()
				}
			}
		})
	}

	// Faults: the leader is killed and comes back 3 s later; then Consul
	// stops for 8 s.
	time.Sleep(7 * time.Second)
	leader := c.leader()
	var killed *testserver.LKEdgeProcess
	for i, id := range []string{"a", "b", "c"} {
		if id == leader {
			killed = reps[i]
		}
	}
	if killed == nil {
		t.Fatalf("no replica leads (leader %q)", leader)
	}
	killed.Kill()
	killedAt := time.Now()
	time.Sleep(3 * time.Second)
	killed.Start()
	eventually(t, 20*time.Second, "a leader after the restart", func() bool { return c.leader() != "" })
	t.Logf("leadership after the kill of %s: %s, %s later", leader, c.leader(), time.Since(killedAt).Round(time.Second))
	time.Sleep(3 * time.Second)
	c.consul.Stop()
	time.Sleep(8 * time.Second)
	c.consul.Start()
	wg.Wait()
	if len(lost) > 0 {
		t.Fatalf("%d webhooks never answered 200 within a minute: %v", len(lost), lost)
	}

	// What OpenVidu Meet would send: one webhook per egress event answered.
	want := 0
	for _, n := range recordings {
		want += n
	}
	keyOf := func(id string) string { return id + "/openvidu-webhook/0" }
	missing := func() []string {
		seen := map[string]bool{}
		for _, h := range app.hooks() {
			seen[h.key] = true
		}
		var out []string
		for _, ids := range sent {
			for _, id := range ids {
				if !seen[keyOf(id)] {
					out = append(out, id)
				}
			}
		}
		return out
	}
	for deadline := time.Now().Add(90 * time.Second); len(missing()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d webhooks never reached the application: %v", len(missing()), want, missing())
		}
	}
	time.Sleep(time.Second) // a duplicate would arrive by now
	hooks := app.hooks()
	first := map[string]meetHook{}
	dups := 0
	for _, h := range hooks {
		if _, ok := first[h.key]; ok {
			dups++
			continue
		}
		first[h.key] = h
	}
	sender.mu.Lock()
	t.Logf("%d recordings, %d webhooks expected, %d received (%d repeated with the same idempotency key), %d sends", len(recordings), want, len(hooks), dups, sender.tries)
	sender.mu.Unlock()
	if len(first) != want {
		t.Errorf("%d distinct webhooks at the application, want %d", len(first), want)
	}

	// Per recording: each step's webhook, in order, byte for byte.
	names := []string{"recordingStarted", "recordingUpdated", "recordingUpdated", "recordingEnded"}
	statuses := []string{"STARTING", "ACTIVE", "ENDING", "COMPLETE"}
	for room, ids := range sent {
		for i := 0; i+len(recordingSteps) <= len(ids); i += len(recordingSteps) {
			var prev time.Time
			for step := range recordingSteps {
				h, ok := first[keyOf(ids[i+step])]
				if !ok {
					t.Errorf("room %s: no webhook for %s", room, ids[i+step])
					continue
				}
				var env struct {
					Event        string          `json:"event"`
					CreationDate int64           `json:"creationDate"`
					Data         json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal(h.body, &env); err != nil {
					t.Errorf("%s: body %q: %v", ids[i+step], h.body, err)
					continue
				}
				wantBody := fmt.Sprintf(`{"event":"%s","creationDate":%d,"data":%s}`, names[step], env.CreationDate, env.Data)
				if string(h.body) != wantBody || !strings.Contains(string(env.Data), `"status":"`+statuses[step]+`"`) {
					t.Errorf("%s: webhook %s, want %s with status %s", ids[i+step], h.body, names[step], statuses[step])
				}
				if h.at.Before(prev) {
					t.Errorf("room %s: %s reached the application before the recording's previous step", room, ids[i+step])
				}
				prev = h.at
				if step == len(recordingSteps)-1 {
					rec := i / len(recordingSteps)
					key := fmt.Sprintf("openvidu-meet/recordings/.metadata/%s/EG_%s_r%d/rec%d.json", room, room, rec, rec)
					obj, err := c.s3.Get(context.Background(), key)
					if err != nil {
						t.Errorf("%s: %v", key, err)
					} else if !bytes.Equal(obj.Body, env.Data) {
						t.Errorf("%s = %s; recordingEnded carried %s", key, obj.Body, env.Data)
					}
				}
			}
		}
	}

	// The replicas' own records: each room's events in the order answered.
	// SIGKILL may cut the killed replica's last lines: an event without a
	// line is accepted only if its webhook had reached the application
	// before the kill, so it was processed before it.
	order := processedOrder(t, reps)
	outOfOrder := 0
	for room, ids := range sent {
		got := slices.DeleteFunc(slices.Clone(order[room]), func(id string) bool { return !slices.Contains(ids, id) })
		got = slices.Compact(got) // a replay after the kill finishes an event again
		want := slices.DeleteFunc(slices.Clone(ids), func(id string) bool {
			h, ok := first[keyOf(id)]
			return !slices.Contains(got, id) && ok && h.at.Before(killedAt)
		})
		if len(want) != len(ids) {
			t.Logf("room %s: %d events processed just before the kill have no line in the killed replica's log", room, len(ids)-len(want))
		}
		if !slices.Equal(got, want) {
			outOfOrder++
			t.Errorf("room %s processed in the order\n%v\nwant\n%v", room, got, want)
		}
	}
	t.Logf("%d of %d rooms processed out of order", outOfOrder, len(sent))
}

// orderedStep is step of recording rec in room: its body, event id and
// egress id. The egress's updatedAt grows with the step, as LiveKit's does.
func orderedStep(room string, rec, step int) ([]byte, string, string) {
	egress := fmt.Sprintf("EG_%s_r%d", room, rec)
	id := fmt.Sprintf("EV_%s_r%d_%d", room, rec, step)
	body := fmt.Appendf(nil, `{"event":"%s","id":"%s","egressInfo":{"egressId":"%s","roomName":"%s","status":"%s","startedAt":"1745318182123456789","updatedAt":"%d","fileResults":[{"filename":"openvidu-meet/recordings/%s/%s--rec%d.mp4"}]}}`,
		recordingSteps[step].typ, id, egress, room, recordingSteps[step].status, 1745318182200000000+int64(rec)*1000+int64(step), room, room, rec)
	return body, id, egress
}

// TestLateEventStillNotifies: LiveKit itself delivers a recording's ACTIVE
// update after its end (or a replica that lost its session processes it
// late). The stored metadata keeps the final state, and the application
// still receives the late event's webhook, as OpenVidu Meet would send it,
// with the event's own state: nothing is silently dropped.
func TestLateEventStillNotifies(t *testing.T) {
	f := newFixture(t)
	app := newMeetSink(t, "late-secret")
	t.Setenv("LATE_TEST_MEET_KEY", "late-secret")
	f.cfg.PluginsFile = meetWebhookPlugin(t, f.dir, app.srv.URL, "LATE_TEST_MEET_KEY", "{backoff: 20ms}")
	url, _ := f.start(t, nil)
	for _, b := range [][]byte{
		egressBody("EV_late_end", "egress_ended", "EGRESS_COMPLETE", "1745318192654321800"),
		egressBody("EV_late_active", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000"),
	} {
		if code := post(t, url, b); code != http.StatusOK {
			t.Fatalf("webhook answered %d", code)
		}
	}
	eventually(t, 10*time.Second, "two webhooks at the application", func() bool { return len(app.hooks()) >= 2 })
	hooks := app.hooks()
	if got := hooks[1].key; got != "EV_late_active/openvidu-webhook/0" {
		t.Fatalf("second webhook is %s, want the late event's", got)
	}
	late := string(hooks[1].body)
	if !strings.HasPrefix(late, `{"event":"recordingUpdated","creationDate":`) || !strings.Contains(late, `"status":"ACTIVE"`) {
		t.Errorf("late webhook = %s, want recordingUpdated with the event's own status ACTIVE", late)
	}
	stored, err := os.ReadFile(filepath.Join(f.dir, mdKey))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stored), `"status":"COMPLETE"`) || !strings.Contains(string(hooks[0].body), string(stored)) {
		t.Errorf("stored metadata %s regressed or differs from the recordingEnded data %s", stored, hooks[0].body)
	}
}
