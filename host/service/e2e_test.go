package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/pipeline"
	"github.com/lkedge/lkedge/host/store"
	"github.com/lkedge/lkedge/host/store/s3store"
)

// received is one data message a participant got.
type received struct{ topic, payload string }

// TestEndToEnd runs lkedge against a real S3 server and a real LiveKit
// server: LiveKit's own webhooks (room_started, participant_joined,
// room_finished) and the egress webhooks LiveKit Egress would send.
func TestEndToEnd(t *testing.T) {
	_, s3, env := startS3(t)
	redis := testserver.StartRedis(t)
	port := testserver.FreePort(t)
	lk := testserver.StartLiveKit(t, fmt.Sprintf("http://127.0.0.1:%d/livekit/webhook", port), redis)
	env["LIVEKIT_URL"], env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"] = lk.URL, lk.Key, lk.Secret
	env["LKEDGE_LISTEN"] = "127.0.0.1:" + strconv.Itoa(port)
	env["LKEDGE_ADMIN_LISTEN"] = "127.0.0.1:0"
	ctx := context.Background()
	const roomID = "e2e-room"
	roomKey := "openvidu-meet/rooms/" + roomID + "/" + roomID + ".json"
	roomRecord := `{"roomId":"e2e-room","creationDate":1745318100000,"preferences":{"recordingPreferences":{"enabled":true},"chatPreferences":{"enabled":true},"virtualBackgroundPreferences":{"enabled":true}},"moderatorRoomUrl":"http://127.0.0.1:6080/room/e2e-room?secret=0a1b2c3d4e","publisherRoomUrl":"http://127.0.0.1:6080/room/e2e-room?secret=5f6a7b8c9d","markedForDeletion":true}`
	if _, err := s3.Put(ctx, roomKey, []byte(roomRecord), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	url, _ := serve(t, loadConfig(t, env), Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Sink: rec.sink})

	rooms := lksdk.NewRoomServiceClient(lk.URL, lk.Key, lk.Secret)
	if _, err := rooms.CreateRoom(ctx, &livekit.CreateRoomRequest{Name: roomID, Metadata: `{"createdBy":"openviduMeet"}`, EmptyTimeout: 1, DepartureTimeout: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, rec, "room_started", roomID, "")

	var mu sync.Mutex
	var got []received
	cb := lksdk.NewRoomCallback()
	cb.OnDataPacket = func(p lksdk.DataPacket, _ lksdk.DataReceiveParams) {
		if u, ok := p.(*lksdk.UserDataPacket); ok {
			mu.Lock()
			got = append(got, received{u.Topic, string(u.Payload)})
			mu.Unlock()
		}
	}
	wsURL := "ws" + strings.TrimPrefix(lk.URL, "http")
	participant, err := lksdk.ConnectToRoom(wsURL, lksdk.ConnectInfo{APIKey: lk.Key, APISecret: lk.Secret, RoomName: roomID, ParticipantIdentity: "alice"}, cb)
	if err != nil {
		t.Fatal(err)
	}
	joined := waitFor(t, rec, "participant_joined", roomID, "")
	if !joined.Meet.Owned {
		t.Error("participant_joined of a Meet room must be owned")
	}

	mdKey := "openvidu-meet/recordings/.metadata/e2e-room/EG_e2e/u1v2w3x4y5.json"
	info := `{"recordingId":"e2e-room--EG_e2e--u1v2w3x4y5","roomId":"e2e-room","status":"%s","filename":"e2e-room--u1v2w3x4y5.mp4","startDate":1745318182123.4568%s}`
	steps := []struct {
		id, typ, status string
		extra           string // egressInfo fields after fileResults
		wantStatus      string
		wantTail        string
		topic, payload  string
	}{
		{"EV_e1", "egress_started", "EGRESS_STARTING", ``, "STARTING", ``, "recordingStarting",
			`{"id":"e2e-room--EG_e2e--u1v2w3x4y5","roomName":"e2e-room","roomId":"e2e-room","status":"STARTING","filename":"e2e-room--u1v2w3x4y5.mp4","startedAt":1745318182123.4568}`},
		{"EV_e2", "egress_updated", "EGRESS_ACTIVE", ``, "ACTIVE", ``, "recordingStarted",
			`{"id":"e2e-room--EG_e2e--u1v2w3x4y5","roomName":"e2e-room","roomId":"e2e-room","status":"STARTED","filename":"e2e-room--u1v2w3x4y5.mp4","startedAt":1745318182123.4568}`},
		{"EV_e3", "egress_updated", "EGRESS_ENDING", ``, "ENDING", ``, "recordingStopping",
			`{"id":"e2e-room--EG_e2e--u1v2w3x4y5","roomName":"e2e-room","roomId":"e2e-room","status":"STOPPING","filename":"e2e-room--u1v2w3x4y5.mp4","startedAt":1745318182123.4568}`},
		{"EV_e4", "egress_ended", "EGRESS_COMPLETE", `,"endedAt":"1745318192654321987","details":"End reason: StopEgress API"`, "COMPLETE",
			`,"endDate":1745318192654.3218,"duration":10.530865198,"size":1048576,"details":"End reason: StopEgress API"`, "recordingStopped",
			`{"id":"e2e-room--EG_e2e--u1v2w3x4y5","roomName":"e2e-room","roomId":"e2e-room","status":"READY","filename":"e2e-room--u1v2w3x4y5.mp4","startedAt":1745318182123.4568,"endedAt":1745318192654.3218,"duration":10.530865198,"size":1048576}`},
	}
	for i, s := range steps {
		file := `{"filename":"openvidu-meet/recordings/e2e-room/e2e-room--u1v2w3x4y5.mp4"}`
		if s.typ == "egress_ended" {
			file = `{"filename":"openvidu-meet/recordings/e2e-room/e2e-room--u1v2w3x4y5.mp4","duration":"10530865198","size":"1048576"}`
		}
		body := []byte(`{"event":"` + s.typ + `","id":"` + s.id + `","createdAt":"1745318182","egressInfo":{"egressId":"EG_e2e","roomName":"e2e-room","status":"` + s.status + `","startedAt":"1745318182123456789","updatedAt":"` + strconv.Itoa(1745318182200000000+i) + `","fileResults":[` + file + `]` + s.extra + `}}`)
		if code := postAs(t, url, body, lk.Key, lk.Secret); code != http.StatusOK {
			t.Fatalf("%s: status %d", s.id, code)
		}
		waitFor(t, rec, s.typ, roomID, s.id)
		obj, err := s3.Get(ctx, mdKey)
		if err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
		if want := fmt.Sprintf(info, s.wantStatus, s.wantTail); string(obj.Body) != want {
			t.Errorf("%s: S3 metadata\n got %s\nwant %s", s.id, obj.Body, want)
		}
		if s.typ == "egress_started" {
			md, err := s3.Get(ctx, "openvidu-meet/recordings/.metadata/e2e-room/room_metadata.json")
			want := `{"publisherSecret":"5f6a7b8c9d","moderatorSecret":"0a1b2c3d4e","preferences":{"recordingPreferences":{"enabled":true}}}`
			if err != nil || string(md.Body) != want {
				t.Errorf("room_metadata.json = %s, %v; want %s", md.Body, err, want)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(steps) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	if len(got) != len(steps) {
		t.Errorf("participant received %d data messages, want %d: %v", len(got), len(steps), got)
	}
	for i := range min(len(got), len(steps)) {
		if got[i].topic != steps[i].topic || got[i].payload != steps[i].payload {
			t.Errorf("data message %d = %s %s\nwant %s %s", i, got[i].topic, got[i].payload, steps[i].topic, steps[i].payload)
		}
	}
	mu.Unlock()

	// The last participant leaves: LiveKit closes the room and posts
	// room_finished; the room was marked for deletion, so lkedge deletes it.
	participant.Disconnect()
	finished := waitFor(t, rec, event.TypeRoomFinished, roomID, "")
	if !finished.Meet.Deleted {
		t.Error("roomFinished should report the deletion")
	}
	if _, err := s3.Get(ctx, roomKey); err == nil {
		t.Error("the Meet room record is still in S3")
	}
	res, err := rooms.ListRooms(ctx, &livekit.ListRoomsRequest{Names: []string{roomID}})
	if err != nil || len(res.Rooms) != 0 {
		t.Errorf("LiveKit still lists the room: %v, %v", res, err)
	}
}

// recordingSteps are the egress webhooks of one successful recording.
var recordingSteps = []struct{ typ, status string }{
	{"egress_started", "EGRESS_STARTING"}, {"egress_updated", "EGRESS_ACTIVE"},
	{"egress_updated", "EGRESS_ENDING"}, {"egress_ended", "EGRESS_COMPLETE"},
}

// recordingStep is the webhook body of step of the recording in room
// <prefix>-<r> (egress EG_<prefix>_<r>).
func recordingStep(prefix string, r, step int) []byte {
	return fmt.Appendf(nil, `{"event":"%s","id":"EV_%s_%d_%d","egressInfo":{"egressId":"EG_%s_%d","roomName":"%s-%d","status":"%s","startedAt":"1745318182123456789","updatedAt":"%d","fileResults":[{"filename":"openvidu-meet/recordings/%s-%d/%s-%d--abc%d.mp4"}]}}`,
		recordingSteps[step].typ, prefix, r, step, prefix, r, prefix, r, recordingSteps[step].status, 1745318182200000000+step, prefix, r, prefix, r, r)
}

// putRooms writes the Meet room records of rooms <prefix>-0 .. <prefix>-<n-1>.
func putRooms(t testing.TB, s store.Store, prefix string, n int) {
	t.Helper()
	for r := range n {
		id := fmt.Sprintf("%s-%d", prefix, r)
		if _, err := s.Put(context.Background(), "openvidu-meet/rooms/"+id+"/"+id+".json", []byte(`{"roomId":"`+id+`"}`), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRecordings asserts that the n rooms' recording metadata exist once
// each in the store, in their final state.
func checkRecordings(t *testing.T, s store.Store, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	keys, err := s.List(ctx, "openvidu-meet/recordings/.metadata/"+prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for r := range n {
		want = append(want, fmt.Sprintf("openvidu-meet/recordings/.metadata/%s-%d/EG_%s_%d/abc%d.json", prefix, r, prefix, r, r))
	}
	slices.Sort(want)
	if strings.Join(keys, "\n") != strings.Join(want, "\n") {
		t.Errorf("recording metadata keys:\n%s\nwant\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}
	for _, k := range want {
		obj, err := s.Get(ctx, k)
		if err != nil || !strings.Contains(string(obj.Body), `"status":"COMPLETE"`) {
			t.Errorf("%s = %s, %v; want COMPLETE", k, obj.Body, err)
		}
	}
}

// startS3 starts an S3 server holding the reference's bucket and returns it,
// a client of that bucket, and the environment that points lkedge at it.
func startS3(t testing.TB) (*testserver.S3, store.Store, map[string]string) {
	t.Helper()
	srv := testserver.StartS3(t)
	srv.CreateBucket(t, "openvidu")
	s3, err := s3store.New(context.Background(), s3store.Options{
		Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1", PathStyle: true, Bucket: "openvidu",
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv, s3, map[string]string{
		"LKEDGE_DATA_DIR": t.TempDir(), "LKEDGE_STORE": "s3", "MEET_S3_SERVICE_ENDPOINT": srv.Endpoint,
		"MEET_S3_ACCESS_KEY": srv.AccessKey, "MEET_S3_SECRET_KEY": srv.SecretKey,
	}
}

// waitFor waits until an event of type typ for room reached the sink; id,
// if not empty, must match too.
func waitFor(t *testing.T, rec *recorder, typ, room, id string) *event.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		rec.mu.Lock()
		for _, ev := range rec.events {
			if ev.Type == typ && ev.RoomName() == room && (id == "" || ev.ID == id) {
				rec.mu.Unlock()
				return ev
			}
		}
		rec.mu.Unlock()
		select {
		case <-rec.got:
		case <-deadline:
			t.Fatalf("no %s event for room %s reached the sink", typ, room)
		}
	}
}

// TestS3Outage: the S3 server stops for 30 s while webhooks keep
// arriving. They are all accepted (the journal is local), processing
// retries until S3 is back, and afterwards every recording's metadata is in
// S3 exactly once, final.
func TestS3Outage(t *testing.T) {
	t.Parallel()
	s3srv, s3, env := startS3(t)
	lk := livekittest.New(t, "devkey", "secret")
	env["LIVEKIT_URL"], env["LKEDGE_LISTEN"], env["LKEDGE_ADMIN_LISTEN"] = lk.URL(), "127.0.0.1:0", "127.0.0.1:0"
	const rooms = 5
	putRooms(t, s3, "outage", rooms)
	rec := newRecorder()
	url, _ := serve(t, loadConfig(t, env), Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sink: rec.sink,
		Pipeline: pipeline.Options{Backoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, MaxAttempts: 1000},
	})

	send := func(r, step int) {
		if code := post(t, url, recordingStep("outage", r, step)); code != http.StatusOK {
			t.Errorf("room %d step %d: status %d", r, step, code)
		}
	}
	for r := range rooms {
		send(r, 0)
	}
	rec.wait(t, rooms)
	retriedBefore := testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("retried"))
	s3srv.Stop()
	if code, body := readyz(url); code != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
		t.Errorf("/readyz with S3 down = %d %q, want 503 naming the store", code, body)
	}
	for step := 1; step < len(recordingSteps); step++ {
		for r := range rooms {
			send(r, step)
		}
	}
	// Far longer than the S3 client's own retries (about 1.5 s), so
	// processing fails and the pipeline retries for the whole outage.
	time.Sleep(30 * time.Second)
	s3srv.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("S3 server log:\n%s", s3srv.Log())
		}
	})
	rec.wait(t, rooms*len(recordingSteps))
	if testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("retried")) == retriedBefore {
		t.Error("no event was retried: the outage was not exercised")
	}

	checkRecordings(t, s3, "outage", rooms)
	if code, body := readyz(url); code != http.StatusOK {
		t.Errorf("/readyz after the outage = %d %q", code, body)
	}
	if n := len(lk.SentData()); n != rooms*len(recordingSteps) {
		t.Errorf("%d data messages, want one per event (%d): a retry must not repeat them", n, rooms*len(recordingSteps))
	}
}
