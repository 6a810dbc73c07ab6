package meet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/livekitapi"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
	"github.com/lkedge/lkedge/host/store"
)

const (
	lkKey    = "devkey"
	lkSecret = "devsecret-devsecret-devsecret-devsecret"
	meetID   = "openviduMeet"
	sub      = "openvidu-meet"

	room      = "room-123"
	egressID  = "EG_abc123XYZ"
	recID     = "room-123--EG_abc123XYZ--a1b2c3d4e5"
	mdKey     = "openvidu-meet/recordings/.metadata/room-123/EG_abc123XYZ/a1b2c3d4e5.json"
	roomMDKey = "openvidu-meet/recordings/.metadata/room-123/room_metadata.json"
	roomKey   = "openvidu-meet/rooms/room-123/room-123.json"
	fullFile  = "openvidu-meet/recordings/room-123/room-123--a1b2c3d4e5.mp4"
	meetMD    = `{"createdBy":"openviduMeet"}`
)

// env is one Handler wired to a real file store, the in-process coordinator
// and a real livekitapi.Client talking Twirp to a fake LiveKit.
type env struct {
	t     *testing.T
	fake  *livekittest.Server
	store *store.File
	coord *coord.InProcess
	h     *Handler
}

func newEnv(t *testing.T, mods ...func(*Options)) *env {
	t.Helper()
	return newEnvWith(t, nil, mods...)
}

// newEnvWith builds an env whose Handler uses wrap(file store) when wrap is
// not nil.
func newEnvWith(t *testing.T, wrap func(store.Store) store.Store, mods ...func(*Options)) *env {
	t.Helper()
	fs, err := store.NewFile(t.TempDir(), "openvidu")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fake: livekittest.New(t, lkKey, lkSecret), store: fs, coord: coord.NewInProcess(nil)}
	opts := Options{NameID: meetID, Subbucket: sub}
	for _, m := range mods {
		m(&opts)
	}
	var s store.Store = fs
	if wrap != nil {
		s = wrap(fs)
	}
	e.h = New(s, e.coord, livekitapi.New(e.fake.URL(), lkKey, lkSecret, 5*time.Second), opts)
	return e
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// decode turns a LiveKit webhook body into an event the way production does.
func decode(t *testing.T, body []byte) *event.Event {
	t.Helper()
	ev, err := event.FromWebhook(body, time.UnixMilli(1745318193000))
	if err != nil {
		t.Fatalf("FromWebhook(%s): %v", body, err)
	}
	return ev
}

func (e *env) handle(body []byte) (*event.Event, []*event.Event, error) {
	e.t.Helper()
	ev := decode(e.t, body)
	derived, err := e.h.Handle(context.Background(), ev, discard)
	return ev, derived, err
}

// mustHandle handles body and fails the test on an error.
func (e *env) mustHandle(body []byte) (*event.Event, []*event.Event) {
	e.t.Helper()
	ev, derived, err := e.handle(body)
	if err != nil {
		e.t.Fatalf("Handle: %v", err)
	}
	return ev, derived
}

// get returns the stored body under key, or nil if there is none.
func (e *env) get(key string) []byte {
	e.t.Helper()
	obj, err := e.store.Get(context.Background(), key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return obj.Body
}

func (e *env) put(key, body string) {
	e.t.Helper()
	if _, err := e.store.Put(context.Background(), key, []byte(body), store.PutOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) keys() []string {
	e.t.Helper()
	keys, err := e.store.List(context.Background(), sub+"/")
	if err != nil {
		e.t.Fatal(err)
	}
	return keys
}

// lockHeld reports whether the room's recording lock is held, by trying to
// take it (and giving it back if that worked).
func (e *env) lockHeld(roomID string) bool {
	e.t.Helper()
	ctx := context.Background()
	ok, err := e.coord.Acquire(ctx, RecordingLockName(roomID), time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	if ok {
		if _, err := e.coord.Release(ctx, RecordingLockName(roomID)); err != nil {
			e.t.Fatal(err)
		}
	}
	return !ok
}

func (e *env) takeLock(roomID string) {
	e.t.Helper()
	ok, err := e.coord.Acquire(context.Background(), RecordingLockName(roomID), time.Hour)
	if err != nil || !ok {
		e.t.Fatalf("Acquire(%s) = %v, %v", RecordingLockName(roomID), ok, err)
	}
}

// roomRecord is a MeetRoom as the reference stores it (§9.1).
func roomRecord(id string, marked bool, prefs string) string {
	s := `{"roomId":"` + id + `","creationDate":1745318000000`
	if prefs != "" {
		s += `,"preferences":` + prefs
	}
	s += `,"moderatorRoomUrl":"http://localhost:6080/room/` + id + `?secret=abcdef0123","publisherRoomUrl":"http://localhost:6080/room/` + id + `?secret=0123abcdef"`
	if marked {
		s += `,"markedForDeletion":true`
	}
	return s + "}"
}

const allPrefs = `{"recordingPreferences":{"enabled":true},"chatPreferences":{"enabled":true},"virtualBackgroundPreferences":{"enabled":true}}`

// eg describes an egress for an egress webhook; zero fields are left out of
// the protojson, as LiveKit does.
type eg struct {
	id, room                      string // defaults egressID, room
	status                        any    // enum name or number; nil leaves it out
	startedAt, updatedAt, endedAt string
	file                          string // defaults fullFile
	noFile                        bool
	duration, size                string
	details                       string
	stream                        bool
}

func (g eg) info() map[string]any {
	m := map[string]any{"egressId": g.id, "roomId": "RM_r1", "roomName": g.room}
	if g.id == "" {
		m["egressId"] = egressID
	}
	if g.room == "" {
		m["roomName"] = room
	}
	if g.room == "-" {
		m["roomName"] = ""
	}
	if g.status != nil {
		m["status"] = g.status
	}
	for k, v := range map[string]string{"startedAt": g.startedAt, "updatedAt": g.updatedAt, "endedAt": g.endedAt, "details": g.details} {
		if v != "" {
			m[k] = v
		}
	}
	if !g.noFile {
		f := map[string]any{"filename": g.file}
		if g.file == "" {
			f["filename"] = fullFile
		}
		if g.duration != "" {
			f["duration"] = g.duration
		}
		if g.size != "" {
			f["size"] = g.size
		}
		m["fileResults"] = []any{f}
	}
	if g.stream {
		m["streamResults"] = []any{map[string]any{"url": "rtmp://example.com/live"}}
	}
	return m
}

func webhook(t *testing.T, typ, id string, fields map[string]any) []byte {
	t.Helper()
	m := map[string]any{"event": typ, "id": id, "createdAt": "1745318182"}
	maps.Copy(m, fields)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func egressEvent(t *testing.T, typ, id string, g eg) []byte {
	return webhook(t, typ, id, map[string]any{"egressInfo": g.info()})
}

// roomEvent builds a room-carrying webhook; participant may be nil.
func roomEvent(t *testing.T, typ, id, name, metadata string, participant map[string]any) []byte {
	fields := map[string]any{"room": map[string]any{"sid": "RM_" + name, "name": name, "metadata": metadata}}
	if participant != nil {
		fields["participant"] = participant
	}
	return webhook(t, typ, id, fields)
}

func activeEgress(id, roomName string, stream bool) *livekit.EgressInfo {
	e := &livekit.EgressInfo{EgressId: id, RoomName: roomName, Status: livekit.EgressStatus_EGRESS_ACTIVE}
	if stream {
		e.StreamResults = []*livekit.StreamInfo{{Url: "rtmp://example.com/live"}}
	} else {
		e.FileResults = []*livekit.FileInfo{{Filename: roomName + "--x.mp4"}}
	}
	return e
}

// The four webhooks of a successful recording, with the stored metadata and
// data message each must produce.
var (
	// §18's inbound example, verbatim.
	updatedActiveBody = `{"event":"egress_updated","id":"EV_x1","createdAt":"1745318182",
 "egressInfo":{"egressId":"EG_abc123XYZ","roomId":"RM_r1","roomName":"room-123","status":"EGRESS_ACTIVE",
  "startedAt":"1745318182123456789","updatedAt":"1745318182200000000",
  "roomComposite":{"roomName":"room-123","layout":"speaker","fileOutputs":[{"filepath":"openvidu-meet/recordings/room-123/room-123--a1b2c3d4e5","disableManifest":true}]},
  "fileResults":[{"filename":"openvidu-meet/recordings/room-123/room-123--a1b2c3d4e5.mp4","startedAt":"1745318182123456789"}]}}`

	startedInfo = `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"STARTING","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318180000}`
	activeInfo  = `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"ACTIVE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568}`
	endingInfo  = `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"ENDING","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568}`
)

func startedEvent(t *testing.T) []byte {
	return egressEvent(t, "egress_started", "EV_s", eg{status: "EGRESS_STARTING", updatedAt: "1745318180000000000"})
}

func endingEvent(t *testing.T) []byte {
	return egressEvent(t, "egress_updated", "EV_u2", eg{status: "EGRESS_ENDING", startedAt: "1745318182123456789", updatedAt: "1745318192000000000"})
}

func endedEvent(t *testing.T) []byte {
	return egressEvent(t, "egress_ended", "EV_e", eg{
		status: "EGRESS_COMPLETE", startedAt: "1745318182123456789", updatedAt: "1745318192700000000", endedAt: "1745318192654321987",
		duration: "10530865198", size: "1048576", details: "End reason: StopEgress API",
	})
}

func signalPayload(status string, tail string) string {
	return `{"id":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomName":"room-123","roomId":"room-123","status":"` + status + `","filename":"room-123--a1b2c3d4e5.mp4",` + tail + `}`
}

func TestRecordingFlow(t *testing.T) {
	e := newEnv(t)
	e.fake.SetRoom(room, meetMD)
	e.put(roomKey, roomRecord(room, false, allPrefs))
	active, err := e.coord.Subscribe(t.Context(), EventRecordingActive)
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name      string
		body      []byte
		wantMD    string
		topic     string
		payload   string
		published bool
	}{
		{"started/STARTING", startedEvent(t), startedInfo,
			"recordingStarting", signalPayload("STARTING", `"startedAt":1745318180000`), false},
		{"updated/ACTIVE", []byte(updatedActiveBody), activeInfo,
			"recordingStarted", signalPayload("STARTED", `"startedAt":1745318182123.4568`), true},
		{"updated/ENDING", endingEvent(t), endingInfo,
			"recordingStopping", signalPayload("STOPPING", `"startedAt":1745318182123.4568`), false},
		{"ended/COMPLETE", endedEvent(t), vectorInfo, "recordingStopped", vectorSignal, false},
	}
	for i, st := range steps {
		ev, derived := e.mustHandle(st.body)
		if derived != nil {
			t.Errorf("%s: derived events %v, want none", st.name, derived)
		}
		if ev.Meet == nil || !ev.Meet.Owned || ev.Meet.RoomID != room || ev.Meet.Stale || ev.Meet.Deleted {
			t.Fatalf("%s: Meet view %+v", st.name, ev.Meet)
		}
		got := e.get(mdKey)
		if string(got) != st.wantMD {
			t.Errorf("%s: stored metadata\n got %s\nwant %s", st.name, got, st.wantMD)
		}
		if string(ev.Meet.Recording) != string(got) {
			t.Errorf("%s: ev.Meet.Recording %s differs from the stored %s", st.name, ev.Meet.Recording, got)
		}
		sent := e.fake.SentData()
		if len(sent) != i+1 {
			t.Fatalf("%s: %d data messages, want %d", st.name, len(sent), i+1)
		}
		d := sent[i]
		if d.Room != room || d.Topic != st.topic || string(d.Data) != st.payload || len(d.DestinationIdentities) != 0 {
			t.Errorf("%s: data message room %q topic %q sids %v\n payload %s\nwant topic %q broadcast\n payload %s",
				st.name, d.Room, d.Topic, d.DestinationIdentities, d.Data, st.topic, st.payload)
		}
		select {
		case pub := <-active:
			if !st.published {
				t.Errorf("%s: unexpected recording_active %s", st.name, pub.Payload)
			} else if pub.Type != EventRecordingActive || string(pub.Payload) != activeInfo {
				t.Errorf("%s: recording_active %q %s, want payload %s", st.name, pub.Type, pub.Payload, activeInfo)
			}
		default:
			if st.published {
				t.Errorf("%s: recording_active not published", st.name)
			}
		}
	}
	wantRoomMD := `{"publisherSecret":"0123abcdef","moderatorSecret":"abcdef0123","preferences":{"recordingPreferences":{"enabled":true}}}`
	if got := e.get(roomMDKey); string(got) != wantRoomMD {
		t.Errorf("room_metadata.json\n got %s\nwant %s", got, wantRoomMD)
	}
	wantKeys := []string{mdKey, roomMDKey, roomKey}
	if got := e.keys(); !slices.Equal(got, wantKeys) {
		t.Errorf("stored keys %v, want %v", got, wantKeys)
	}
}

// TestRecordingActiveOnlyFromUpdated: an egress_started already carrying
// ACTIVE does not publish recording_active (§5.1 note).
func TestRecordingActiveOnlyFromUpdated(t *testing.T) {
	e := newEnv(t)
	e.fake.SetRoom(room, meetMD)
	ch, err := e.coord.Subscribe(t.Context(), EventRecordingActive)
	if err != nil {
		t.Fatal(err)
	}
	e.mustHandle(egressEvent(t, "egress_started", "EV_1", eg{status: "EGRESS_ACTIVE", startedAt: "1745318182000000000"}))
	e.mustHandle(egressEvent(t, "egress_ended", "EV_2", eg{status: "EGRESS_ACTIVE", startedAt: "1745318182000000000", updatedAt: "1"}))
	if len(ch) != 0 {
		t.Errorf("recording_active published %d times, want 0", len(ch))
	}
	if got := e.fake.SentData(); len(got) != 2 || got[0].Topic != "recordingStarted" {
		t.Errorf("data messages %+v", got)
	}
}

func TestRoomMetadataFile(t *testing.T) {
	tests := []struct {
		name   string
		record string // "" stores no room record
		want   string // "" means no room_metadata.json
	}{
		{"all preferences", roomRecord(room, false, allPrefs),
			`{"publisherSecret":"0123abcdef","moderatorSecret":"abcdef0123","preferences":{"recordingPreferences":{"enabled":true}}}`},
		{"recording preferences only, spaced", roomRecord(room, false, `{ "recordingPreferences" : { "enabled" : false } }`),
			`{"publisherSecret":"0123abcdef","moderatorSecret":"abcdef0123","preferences":{"recordingPreferences":{"enabled":false}}}`},
		{"no preferences", roomRecord(room, false, ""),
			`{"publisherSecret":"0123abcdef","moderatorSecret":"abcdef0123","preferences":{}}`},
		{"preferences without recordingPreferences", roomRecord(room, false, `{"chatPreferences":{"enabled":true}}`),
			`{"publisherSecret":"0123abcdef","moderatorSecret":"abcdef0123","preferences":{}}`},
		{"null preferences", roomRecord(room, false, "null"),
			`{"publisherSecret":"0123abcdef","moderatorSecret":"abcdef0123","preferences":{}}`},
		{"URL without secret", `{"roomId":"room-123","moderatorRoomUrl":"http://h/room/room-123","publisherRoomUrl":"http://h/room/room-123?x=1"}`,
			`{"publisherSecret":"","moderatorSecret":"","preferences":{}}`},
		{"invalid URL: not written", `{"roomId":"room-123","moderatorRoomUrl":"not a url","publisherRoomUrl":"http://h/room/room-123?secret=1"}`, ""},
		{"no room record: not written", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.SetRoom(room, meetMD)
			if tc.record != "" {
				e.put(roomKey, tc.record)
			}
			e.mustHandle(startedEvent(t))
			if got := e.get(roomMDKey); string(got) != tc.want {
				t.Errorf("room_metadata.json\n got %s\nwant %s", got, tc.want)
			}
			if got := e.get(mdKey); string(got) != startedInfo {
				t.Errorf("recording metadata %s, want %s", got, startedInfo)
			}
		})
	}

	t.Run("only egress_started writes it", func(t *testing.T) {
		e := newEnv(t)
		e.fake.SetRoom(room, meetMD)
		e.put(roomKey, roomRecord(room, false, allPrefs))
		e.mustHandle([]byte(updatedActiveBody))
		e.mustHandle(endedEvent(t))
		if got := e.get(roomMDKey); got != nil {
			t.Errorf("room_metadata.json written by updated/ended: %s", got)
		}
	})

	t.Run("never rewritten", func(t *testing.T) {
		e := newEnv(t)
		e.fake.SetRoom(room, meetMD)
		e.put(roomKey, roomRecord(room, false, allPrefs))
		e.mustHandle(startedEvent(t))
		want := `{"publisherSecret":"0123abcdef","moderatorSecret":"abcdef0123","preferences":{"recordingPreferences":{"enabled":true}}}`
		if got := e.get(roomMDKey); string(got) != want {
			t.Fatalf("room_metadata.json %s, want %s", got, want)
		}
		// The room changes, then a second recording starts.
		e.put(roomKey, `{"roomId":"room-123","preferences":{"recordingPreferences":{"enabled":false}},"moderatorRoomUrl":"http://h/room/room-123?secret=ffffffffff","publisherRoomUrl":"http://h/room/room-123?secret=eeeeeeeeee"}`)
		e.mustHandle(egressEvent(t, "egress_started", "EV_s2", eg{id: "EG_second", status: "EGRESS_STARTING", file: "room-123--bbbbbbbbbb.mp4", updatedAt: "1745318300000000000"}))
		if got := e.get(roomMDKey); string(got) != want {
			t.Errorf("room_metadata.json rewritten:\n got %s\nwant %s", got, want)
		}
		if got := e.get("openvidu-meet/recordings/.metadata/room-123/EG_second/bbbbbbbbbb.json"); got == nil {
			t.Error("second recording's metadata not written")
		}
	})
}

func TestOwnership(t *testing.T) {
	type setup func(*env)
	withRecord := func(e *env) { e.put(roomKey, roomRecord(room, false, "")) }
	withLKRoom := func(md string) setup { return func(e *env) { e.fake.SetRoom(room, md) } }
	joined := func(t *testing.T, md string) []byte {
		return roomEvent(t, "participant_joined", "EV_p", room, md, map[string]any{"sid": "PA_1", "identity": "alice"})
	}
	updated := func(t *testing.T) []byte { return []byte(updatedActiveBody) }

	tests := []struct {
		name  string
		setup []setup
		body  func(*testing.T) []byte
		owned bool
	}{
		{"room metadata {}", nil, func(t *testing.T) []byte { return joined(t, `{}`) }, false},
		{"room metadata other createdBy", nil, func(t *testing.T) []byte { return joined(t, `{"createdBy":"other"}`) }, false},
		{"room metadata not JSON", nil, func(t *testing.T) []byte { return joined(t, `{createdBy: openviduMeet`) }, false},
		{"room metadata null", nil, func(t *testing.T) []byte { return joined(t, `null`) }, false},
		{"room metadata empty", nil, func(t *testing.T) []byte { return joined(t, ``) }, false},
		{"room metadata createdBy number", nil, func(t *testing.T) []byte { return joined(t, `{"createdBy":42}`) }, false},
		{"room metadata JSON string", nil, func(t *testing.T) []byte { return joined(t, `"openviduMeet"`) }, false},
		{"room metadata createdBy case differs", nil, func(t *testing.T) []byte { return joined(t, `{"createdBy":"OpenviduMeet"}`) }, false},
		{"room metadata Meet", nil, func(t *testing.T) []byte { return joined(t, meetMD) }, true},
		{"room metadata Meet with roomOptions", nil, func(t *testing.T) []byte {
			return joined(t, `{"createdBy":"openviduMeet","roomOptions":{"roomIdPrefix":"room"}}`)
		}, true},
		// A room object in the event decides alone, whatever the store says.
		{"room event not Meet despite record", []setup{withRecord}, func(t *testing.T) []byte { return joined(t, `{}`) }, false},
		{"egress with empty room name", []setup{withRecord, withLKRoom(meetMD)}, func(t *testing.T) []byte {
			return egressEvent(t, "egress_updated", "EV_u", eg{room: "-", status: "EGRESS_ACTIVE", startedAt: "1"})
		}, false},
		{"egress, LiveKit room Meet, no record", []setup{withLKRoom(meetMD)}, updated, true},
		{"egress, LiveKit room not Meet, no record", []setup{withLKRoom(`{"createdBy":"other"}`)}, updated, false},
		{"egress, LiveKit room bad metadata, no record", []setup{withLKRoom(`nope`)}, updated, false},
		{"egress, no LiveKit room, no record", nil, updated, false},
		{"egress, LiveKit room gone, record exists (QUIRK 1 fixed)", []setup{withRecord}, updated, true},
		{"egress, LiveKit room not Meet, record exists", []setup{withRecord, withLKRoom(`{}`)}, updated, true},
		{"egress, LiveKit failing, record exists", []setup{withRecord, func(e *env) {
			e.fake.SetRoom(room, meetMD)
			e.fake.Fail(livekittest.MethodListRooms, errors.New("livekit down"))
		}}, updated, true},
		{"egress, LiveKit failing, no record", []setup{func(e *env) {
			e.fake.SetRoom(room, meetMD)
			e.fake.Fail(livekittest.MethodListRooms, errors.New("livekit down"))
		}}, updated, false},
		{"ingress, LiveKit room Meet", []setup{withLKRoom(meetMD)}, func(t *testing.T) []byte {
			return webhook(t, "ingress_started", "EV_i", map[string]any{"ingressInfo": map[string]any{"ingressId": "IN_1", "roomName": room}})
		}, true},
		{"no room at all", nil, func(t *testing.T) []byte { return webhook(t, "room_started", "EV_r", nil) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			// An active egress, so an owned participant_joined sends roomStatus.
			e.fake.AddEgress(activeEgress("EG_other", room, false))
			for _, s := range tc.setup {
				s(e)
			}
			before := e.keys()
			ev, derived, err := e.handle(tc.body(t))
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if derived != nil {
				t.Errorf("derived events %v", derived)
			}
			if ev.Meet == nil || ev.Meet.Owned != tc.owned {
				t.Fatalf("Meet view %+v, want owned %v", ev.Meet, tc.owned)
			}
			sent := e.fake.SentData()
			after := e.keys()
			if !tc.owned {
				if !slices.Equal(before, after) {
					t.Errorf("not owned, yet the store changed: %v → %v", before, after)
				}
				if len(sent) != 0 {
					t.Errorf("not owned, yet data messages were sent: %+v", sent)
				}
				if ev.Meet.Recording != nil {
					t.Errorf("not owned, yet Meet.Recording = %s", ev.Meet.Recording)
				}
				return
			}
			// An owned ingress event has nothing to do; the others send one message.
			if want := map[bool]int{true: 0, false: 1}[ev.Type == "ingress_started"]; len(sent) != want {
				t.Errorf("owned: %d data messages, want %d", len(sent), want)
			}
			if ev.Type == "egress_updated" && string(e.get(mdKey)) != activeInfo {
				t.Errorf("owned: metadata %s, want %s", e.get(mdKey), activeInfo)
			}
		})
	}
}

// TestOwnershipSlowLiveKit: a LiveKit that does not answer cannot hold up
// the decision for long (Options.OwnershipTimeout, 1 s by default).
func TestOwnershipSlowLiveKit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fake.SetRoom(room, meetMD)
	e.fake.Delay(3 * time.Second)
	start := time.Now()
	ev, _, err := e.handle([]byte(updatedActiveBody))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("ownership decided after %v, want within ~1.5s", took)
	}
	if ev.Meet == nil || ev.Meet.Owned {
		t.Errorf("Meet view %+v, want not owned", ev.Meet)
	}
	if keys := e.keys(); len(keys) != 0 {
		t.Errorf("store written: %v", keys)
	}
	if n := e.fake.Calls(livekittest.MethodListRooms); n != 1 {
		t.Errorf("ListRooms called %d times, want 1", n)
	}
	e.fake.Delay(0)
	if sent := e.fake.SentData(); len(sent) != 0 {
		t.Errorf("data messages sent: %+v", sent)
	}
}

// TestNoRegression: stored recording metadata only moves forward (§13's
// regression, prevented), and within a rank the later updatedAt wins.
func TestNoRegression(t *testing.T) {
	active := func(id, startedAt, updatedAt string) []byte {
		return egressEvent(t, "egress_updated", id, eg{status: "EGRESS_ACTIVE", startedAt: startedAt, updatedAt: updatedAt})
	}
	activeAt := func(startDate string) string {
		return `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"ACTIVE","filename":"room-123--a1b2c3d4e5.mp4","startDate":` + startDate + `}`
	}
	type step struct {
		body  []byte
		stale bool
	}
	tests := []struct {
		name  string
		steps []step
		want  string // final stored metadata
		sent  int    // data messages in total
	}{
		{"late updated/ACTIVE after ended/COMPLETE", []step{
			{endedEvent(t), false},
			{[]byte(updatedActiveBody), true},
		}, vectorInfo, 1},
		{"late updated/ACTIVE with a newer updatedAt after ended/COMPLETE", []step{
			{endedEvent(t), false},
			{active("EV_a", "1745318182123456789", "1745318199000000000"), true},
		}, vectorInfo, 1},
		{"late started/STARTING after updated/ENDING", []step{
			{endingEvent(t), false},
			{startedEvent(t), true},
		}, endingInfo, 1},
		{"equal rank, older updatedAt kept", []step{
			{active("EV_a2", "1745318182000000000", "1745318182500000000"), false},
			{active("EV_a1", "1745318181000000000", "1745318182400000000"), true},
		}, activeAt("1745318182000"), 1},
		{"equal rank, newer updatedAt replaces", []step{
			{active("EV_a1", "1745318181000000000", "1745318182400000000"), false},
			{active("EV_a2", "1745318182000000000", "1745318182500000000"), false},
		}, activeAt("1745318182000"), 2},
		{"final status replaced by a newer final status", []step{
			{endedEvent(t), false},
			{egressEvent(t, "egress_ended", "EV_f", eg{status: "EGRESS_FAILED", startedAt: "1745318182123456789", updatedAt: "1745318192800000000"}), false},
		}, `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"FAILED","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568}`, 2},
		{"forward in order", []step{
			{startedEvent(t), false},
			{[]byte(updatedActiveBody), false},
			{endingEvent(t), false},
			{endedEvent(t), false},
		}, vectorInfo, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.fake.SetRoom(room, meetMD)
			ch, err := e.coord.Subscribe(t.Context(), EventRecordingActive)
			if err != nil {
				t.Fatal(err)
			}
			var published int
			for i, st := range tc.steps {
				before := e.get(mdKey)
				sentBefore := len(e.fake.SentData())
				ev, _ := e.mustHandle(st.body)
				if ev.Meet.Stale != st.stale {
					t.Errorf("step %d: Stale = %v, want %v", i, ev.Meet.Stale, st.stale)
				}
				if st.stale {
					if after := e.get(mdKey); string(after) != string(before) {
						t.Errorf("step %d: stale event changed the metadata\n%s\n→ %s", i, before, after)
					}
					if n := len(e.fake.SentData()); n != sentBefore {
						t.Errorf("step %d: stale event sent a data message", i)
					}
					if len(ch) != 0 {
						t.Errorf("step %d: stale event published recording_active", i)
					}
				}
				for len(ch) > 0 {
					<-ch
					published++
				}
			}
			if got := e.get(mdKey); string(got) != tc.want {
				t.Errorf("final metadata\n got %s\nwant %s", got, tc.want)
			}
			if n := len(e.fake.SentData()); n != tc.sent {
				t.Errorf("%d data messages, want %d", n, tc.sent)
			}
		})
	}
}

// TestLockRelease covers §10.2 on egress_ended.
func TestLockRelease(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*env)
		body    func(*testing.T) []byte
		release bool
	}{
		{"no egress at all", nil, endedEvent, true},
		{"only ended or starting egresses", func(e *env) {
			e.fake.AddEgress(&livekit.EgressInfo{EgressId: egressID, RoomName: room, Status: livekit.EgressStatus_EGRESS_COMPLETE})
			e.fake.AddEgress(&livekit.EgressInfo{EgressId: "EG_s", RoomName: room, Status: livekit.EgressStatus_EGRESS_STARTING})
			e.fake.AddEgress(&livekit.EgressInfo{EgressId: "EG_n", RoomName: room, Status: livekit.EgressStatus_EGRESS_ENDING})
		}, endedEvent, true},
		{"active egress in another room", func(e *env) { e.fake.AddEgress(activeEgress("EG_o", "other-room", false)) }, endedEvent, true},
		{"another active recording in the room", func(e *env) { e.fake.AddEgress(activeEgress("EG_2", room, false)) }, endedEvent, false},
		{"an active stream in the room (QUIRK 9)", func(e *env) { e.fake.AddEgress(activeEgress("EG_2", room, true)) }, endedEvent, false},
		{"ListEgress failing", func(e *env) { e.fake.Fail(livekittest.MethodListEgress, errors.New("egress down")) }, endedEvent, false},
		{"ended with FAILED also releases", nil, func(t *testing.T) []byte {
			return egressEvent(t, "egress_ended", "EV_f", eg{status: "EGRESS_FAILED", startedAt: "1745318182123456789", updatedAt: "1745318192800000000"})
		}, true},
		{"updated does not release", nil, endingEvent, false},
		{"stream egress_ended does not release", nil, func(t *testing.T) []byte {
			return egressEvent(t, "egress_ended", "EV_x", eg{status: "EGRESS_COMPLETE", noFile: true, stream: true})
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.fake.SetRoom(room, meetMD)
			e.takeLock(room)
			if tc.setup != nil {
				tc.setup(e)
			}
			ev, _ := e.mustHandle(tc.body(t))
			if held := e.lockHeld(room); held == tc.release {
				t.Errorf("lock held = %v, want released %v", held, tc.release)
			}
			wh, err := ev.LiveKit()
			if err != nil {
				t.Fatal(err)
			}
			if IsRecordingEgress(wh.EgressInfo) && string(e.get(mdKey)) != string(ev.Meet.Recording) {
				t.Errorf("metadata %s not written (want %s)", e.get(mdKey), ev.Meet.Recording)
			}
		})
	}
}

// TestNotRecordingEgress: stream-only and file+stream egresses are ignored.
func TestNotRecordingEgress(t *testing.T) {
	tests := []struct {
		name string
		g    eg
	}{
		{"stream only", eg{status: "EGRESS_ACTIVE", noFile: true, stream: true}},
		{"file and stream", eg{status: "EGRESS_ACTIVE", stream: true}},
		{"no results", eg{status: "EGRESS_ACTIVE", noFile: true}},
		{"filename without --", eg{status: "EGRESS_ACTIVE", file: "openvidu-meet/recordings/room-123/plain.mp4"}},
	}
	for _, tc := range tests {
		for _, typ := range []string{"egress_started", "egress_updated", "egress_ended"} {
			t.Run(tc.name+"/"+typ, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				e.fake.SetRoom(room, meetMD)
				e.put(roomKey, roomRecord(room, false, allPrefs))
				ch, err := e.coord.Subscribe(t.Context(), EventRecordingActive)
				if err != nil {
					t.Fatal(err)
				}
				ev, derived := e.mustHandle(egressEvent(t, typ, "EV_1", tc.g))
				if !ev.Meet.Owned || ev.Meet.Recording != nil || derived != nil {
					t.Errorf("Meet view %+v, derived %v", ev.Meet, derived)
				}
				if keys := e.keys(); !slices.Equal(keys, []string{roomKey}) {
					t.Errorf("store written: %v", keys)
				}
				if sent := e.fake.SentData(); len(sent) != 0 {
					t.Errorf("data messages: %+v", sent)
				}
				if len(ch) != 0 {
					t.Error("recording_active published")
				}
			})
		}
	}
}

// TestParticipantJoined covers §5.3.
func TestParticipantJoined(t *testing.T) {
	tests := []struct {
		name        string
		participant map[string]any
		egresses    []*livekit.EgressInfo
		send        bool
		listEgress  int // expected ListEgress calls
	}{
		{"normal participant, active recording",
			map[string]any{"sid": "PA_1", "identity": "alice"},
			[]*livekit.EgressInfo{activeEgress("EG_1", room, false)}, true, 1},
		{"normal participant, active stream counts too",
			map[string]any{"sid": "PA_1", "identity": "alice"},
			[]*livekit.EgressInfo{activeEgress("EG_1", room, true)}, true, 1},
		{"normal participant, no active egress",
			map[string]any{"sid": "PA_1", "identity": "alice"},
			[]*livekit.EgressInfo{
				{EgressId: "EG_1", RoomName: room, Status: livekit.EgressStatus_EGRESS_COMPLETE},
				{EgressId: "EG_2", RoomName: room, Status: livekit.EgressStatus_EGRESS_STARTING},
				activeEgress("EG_3", "other-room", false),
			}, false, 1},
		{"egress recorder participant",
			map[string]any{"sid": "PA_1", "identity": "EG_x", "permission": map[string]any{"recorder": true}},
			[]*livekit.EgressInfo{activeEgress("EG_1", room, false)}, false, 0},
		{"EG_ identity without recorder permission",
			map[string]any{"sid": "PA_1", "identity": "EG_x", "permission": map[string]any{"canPublish": true}},
			[]*livekit.EgressInfo{activeEgress("EG_1", room, false)}, true, 1},
		{"EG_ identity without permission",
			map[string]any{"sid": "PA_1", "identity": "EG_x"},
			[]*livekit.EgressInfo{activeEgress("EG_1", room, false)}, true, 1},
		{"recorder permission without EG_ identity",
			map[string]any{"sid": "PA_1", "identity": "bob", "permission": map[string]any{"recorder": true}},
			[]*livekit.EgressInfo{activeEgress("EG_1", room, false)}, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			for _, eg := range tc.egresses {
				e.fake.AddEgress(eg)
			}
			ev, derived := e.mustHandle(roomEvent(t, "participant_joined", "EV_p", room, meetMD, tc.participant))
			if !ev.Meet.Owned || derived != nil {
				t.Errorf("Meet view %+v, derived %v", ev.Meet, derived)
			}
			sent := e.fake.SentData()
			if !tc.send {
				if len(sent) != 0 {
					t.Errorf("data messages: %+v", sent)
				}
			} else if len(sent) != 1 || sent[0].Room != room || sent[0].Topic != "roomStatus" ||
				string(sent[0].Data) != `{"isRecordingStarted":true}` || !slices.Equal(sent[0].DestinationIdentities, []string{tc.participant["identity"].(string)}) {
				t.Errorf("data messages %+v, want one roomStatus {\"isRecordingStarted\":true} to %s", sent, tc.participant["identity"])
			}
			if n := e.fake.Calls(livekittest.MethodListEgress); n != tc.listEgress {
				t.Errorf("ListEgress called %d times, want %d", n, tc.listEgress)
			}
			if keys := e.keys(); len(keys) != 0 {
				t.Errorf("store written: %v", keys)
			}
		})
	}

	t.Run("failures are not errors", func(t *testing.T) {
		t.Parallel()
		for _, method := range []string{livekittest.MethodListEgress, livekittest.MethodSendData} {
			e := newEnv(t)
			e.fake.AddEgress(activeEgress("EG_1", room, false))
			e.fake.Fail(method, errors.New("down"))
			if _, _, err := e.handle(roomEvent(t, "participant_joined", "EV_p", room, meetMD, map[string]any{"sid": "PA_1", "identity": "alice"})); err != nil {
				t.Errorf("%s failing: Handle = %v, want nil", method, err)
			}
		}
	})
}

// TestRoomFinished covers §5.4 (with QUIRKs 3 and 4 fixed).
func TestRoomFinished(t *testing.T) {
	tests := []struct {
		name       string
		record     string // "" stores none
		lkRoom     bool
		failDelete bool
		active     bool // an active egress keeps the lock
		deleted    bool // record and LiveKit room deleted
		deletes    int  // DeleteRoom calls
		release    bool
	}{
		{"marked for deletion", roomRecord(room, true, allPrefs), true, false, false, true, 1, true},
		{"marked, LiveKit room already gone", roomRecord(room, true, ""), false, false, false, true, 1, true},
		{"not marked", roomRecord(room, false, allPrefs), true, false, false, false, 0, true},
		{"no record", "", true, false, false, false, 0, true},
		{"marked, DeleteRoom failing", roomRecord(room, true, ""), true, true, false, true, 5, true},
		{"marked, active egress keeps the lock", roomRecord(room, true, ""), true, false, true, true, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *Options) { o.DeleteBackoff = time.Millisecond })
			if tc.record != "" {
				e.put(roomKey, tc.record)
			}
			// Recording metadata is never deleted with the room.
			e.put(roomMDKey, `{"publisherSecret":"a","moderatorSecret":"b","preferences":{}}`)
			if tc.lkRoom {
				e.fake.SetRoom(room, meetMD)
			}
			if tc.failDelete {
				e.fake.Fail(livekittest.MethodDeleteRoom, errors.New("livekit down"))
			}
			if tc.active {
				e.fake.AddEgress(activeEgress("EG_1", room, false))
			}
			e.takeLock(room)
			ev, derived, err := e.handle(roomEvent(t, "room_finished", "EV_rf", room, meetMD, nil))
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if ev.Meet == nil || !ev.Meet.Owned || ev.Meet.Deleted {
				t.Errorf("Meet view of the LiveKit event %+v", ev.Meet)
			}
			if len(derived) != 1 {
				t.Fatalf("derived %d events, want 1", len(derived))
			}
			d := derived[0]
			dwh, derr := d.LiveKit()
			wh, err := ev.LiveKit()
			if derr != nil || err != nil || dwh != wh {
				t.Errorf("the derived event's webhook %p (%v) is not its source's %p (%v)", dwh, derr, wh, err)
			}
			if d.Type != event.TypeRoomFinished || d.ID != "EV_rf:roomFinished" || d.Source != event.SourceLKEdge {
				t.Errorf("derived event %q %q %q", d.ID, d.Type, d.Source)
			}
			if d.Meet == nil || !d.Meet.Owned || d.Meet.RoomID != room || d.Meet.Deleted != tc.deleted {
				t.Errorf("derived Meet view %+v, want deleted %v", d.Meet, tc.deleted)
			}
			if got := e.get(roomKey); (got == nil) != (tc.deleted || tc.record == "") {
				t.Errorf("room record after: %s (deleted expected %v)", got, tc.deleted)
			}
			if e.get(roomMDKey) == nil {
				t.Error("room_metadata.json deleted with the room")
			}
			if got := e.fake.DeletedRooms(); len(got) != tc.deletes || (tc.deletes > 0 && got[0] != room) {
				t.Errorf("DeleteRoom calls %v, want %d for %s", got, tc.deletes, room)
			}
			if tc.deleted && !tc.failDelete && e.fake.HasRoom(room) {
				t.Error("LiveKit room still exists")
			}
			if held := e.lockHeld(room); held == tc.release {
				t.Errorf("lock held = %v, want released %v", held, tc.release)
			}
		})
	}

	t.Run("room_finished of a foreign room", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.put(roomKey, roomRecord(room, true, ""))
		e.takeLock(room)
		ev, derived, err := e.handle(roomEvent(t, "room_finished", "EV_rf", room, `{"createdBy":"other"}`, nil))
		if err != nil || derived != nil || ev.Meet.Owned {
			t.Errorf("Handle = %v, %v; Meet %+v", derived, err, ev.Meet)
		}
		if e.get(roomKey) == nil || !e.lockHeld(room) || len(e.fake.DeletedRooms()) != 0 {
			t.Error("foreign room_finished had effects")
		}
	})
}

// failPut is a store whose writes fail.
type failPut struct{ store.Store }

func (failPut) Put(context.Context, string, []byte, store.PutOptions) (string, error) {
	return "", errors.New("disk on fire")
}

// failGet is a store whose reads fail with something other than ErrNotFound.
type failGet struct{ store.Store }

func (failGet) Get(context.Context, string) (store.Object, error) {
	return store.Object{}, errors.New("store unreachable")
}

func TestStoreFailure(t *testing.T) {
	tests := []struct {
		name string
		wrap func(store.Store) store.Store
		body func(*testing.T) []byte
	}{
		{"put fails on started", func(s store.Store) store.Store { return failPut{s} }, startedEvent},
		{"put fails on updated", func(s store.Store) store.Store { return failPut{s} }, func(*testing.T) []byte { return []byte(updatedActiveBody) }},
		{"put fails on ended", func(s store.Store) store.Store { return failPut{s} }, endedEvent},
		{"get fails on updated", func(s store.Store) store.Store { return failGet{s} }, func(*testing.T) []byte { return []byte(updatedActiveBody) }},
		{"get fails on room_finished", func(s store.Store) store.Store { return failGet{s} }, func(t *testing.T) []byte {
			return roomEvent(t, "room_finished", "EV_rf", room, meetMD, nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, tc.wrap)
			e.fake.SetRoom(room, meetMD)
			e.takeLock(room)
			ch, err := e.coord.Subscribe(t.Context(), EventRecordingActive)
			if err != nil {
				t.Fatal(err)
			}
			_, derived, err := e.handle(tc.body(t))
			if err == nil {
				t.Fatal("Handle succeeded despite the store failure")
			}
			if derived != nil {
				t.Errorf("derived events %v on failure", derived)
			}
			// Nothing visible happened, so a retry repeats nothing.
			if sent := e.fake.SentData(); len(sent) != 0 {
				t.Errorf("data messages sent before the write: %+v", sent)
			}
			if len(ch) != 0 {
				t.Error("recording_active published before the write")
			}
			if !e.lockHeld(room) {
				t.Error("lock released despite the failure")
			}
		})
	}
}

func TestSendDataFailure(t *testing.T) {
	for _, body := range [][]byte{startedEvent(t), []byte(updatedActiveBody), endedEvent(t)} {
		e := newEnv(t)
		e.fake.SetRoom(room, meetMD)
		e.fake.Fail(livekittest.MethodSendData, errors.New("livekit down"))
		ch, err := e.coord.Subscribe(t.Context(), EventRecordingActive)
		if err != nil {
			t.Fatal(err)
		}
		ev, _, err := e.handle(body)
		if err != nil {
			t.Fatalf("%s: Handle = %v, want nil", ev.Type, err)
		}
		if got := e.get(mdKey); got == nil || string(got) != string(ev.Meet.Recording) {
			t.Errorf("%s: metadata %s, want %s", ev.Type, got, ev.Meet.Recording)
		}
		if n := e.fake.Calls(livekittest.MethodSendData); n != 1 {
			t.Errorf("%s: SendData called %d times, want 1", ev.Type, n)
		}
		if want := ev.Type == "egress_updated"; (len(ch) == 1) != want {
			t.Errorf("%s: recording_active published %d times", ev.Type, len(ch))
		}
	}
}

// TestFromWebhookStatus checks, through the production decoding, the
// status cases of §6.2: a missing status is STARTING, an unknown number FAILED.
func TestFromWebhookStatus(t *testing.T) {
	tests := []struct {
		status any
		want   string
	}{
		{nil, "STARTING"},
		{42, "FAILED"},
		{"EGRESS_LIMIT_REACHED", "LIMIT_REACHED"},
		{6, "LIMIT_REACHED"},
		{"EGRESS_ABORTED", "ABORTED"},
	}
	for _, tc := range tests {
		e := newEnv(t)
		e.fake.SetRoom(room, meetMD)
		ev, _ := e.mustHandle(egressEvent(t, "egress_ended", "EV_1", eg{status: tc.status, startedAt: "1745318182000000000"}))
		want := `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"` + tc.want + `","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182000}`
		if got := e.get(mdKey); string(got) != want || string(ev.Meet.Recording) != want {
			t.Errorf("status %v: stored %s, want %s", tc.status, got, want)
		}
	}
}

// TestConcurrentDeliveries: the four webhooks of one recording, each
// delivered several times and all at once (duplicates, several replicas),
// still leave the final state stored and the lock released.
func TestConcurrentDeliveries(t *testing.T) {
	e := newEnv(t)
	e.fake.SetRoom(room, meetMD)
	e.put(roomKey, roomRecord(room, false, allPrefs))
	bodies := [][]byte{startedEvent(t), []byte(updatedActiveBody), endingEvent(t), endedEvent(t)}
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(bodies))
	for range 3 {
		for _, b := range bodies {
			wg.Go(func() {
				ev, err := event.FromWebhook(b, time.Now())
				if err == nil {
					_, err = e.h.Handle(context.Background(), ev, discard)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Handle: %v", err)
	}
	if got := e.get(mdKey); string(got) != vectorInfo {
		t.Errorf("final metadata\n got %s\nwant %s", got, vectorInfo)
	}
	if e.get(roomMDKey) == nil {
		t.Error("room_metadata.json missing, whatever order the events came in")
	}
	if e.lockHeld(room) {
		t.Error("recording lock held")
	}
}

// TestRegressions pins bugs found in review: case-sensitive JSON keys,
// late egress_started, unreadable room records, room names that are not
// store keys, and events missing their room object.
func TestRegressions(t *testing.T) {
	type regression struct {
		name, bug string
		// check returns "" when the behaviour is right, else what went wrong.
		check func(t *testing.T) string
	}
	var tests []regression
	for _, md := range []string{`{"CreatedBy":"openviduMeet"}`, `{"createdby":"openviduMeet"}`, `{"createdBy":"other","CREATEDBY":"openviduMeet"}`} {
		tests = append(tests, regression{
			"room metadata " + md + " is not Meet",
			"meet.go createdByMeet: encoding/json matches the createdBy key case-insensitively; the reference (metadata?.createdBy) is case-sensitive",
			func(t *testing.T) string {
				e := newEnv(t)
				e.fake.AddEgress(activeEgress("EG_1", room, false))
				ev, _, err := e.handle(roomEvent(t, "participant_joined", "EV_p", room, md, map[string]any{"sid": "PA_1", "identity": "alice"}))
				if err != nil || ev.Meet.Owned || len(e.fake.SentData()) != 0 {
					return fmt.Sprintf("owned=%v err=%v data messages=%d", ev.Meet.Owned, err, len(e.fake.SentData()))
				}
				return ""
			},
		})
	}
	tests = append(tests, []regression{
		{"LiveKit room metadata with CreatedBy is not Meet",
			"meet.go createdByMeet: case-insensitive key match (egress path)",
			func(t *testing.T) string {
				e := newEnv(t)
				e.fake.SetRoom(room, `{"CreatedBy":"openviduMeet"}`)
				ev, _, err := e.handle([]byte(updatedActiveBody))
				if err != nil || ev.Meet.Owned {
					return fmt.Sprintf("owned=%v err=%v", ev.Meet.Owned, err)
				}
				return ""
			}},
		{"egress_started delivered after egress_updated still writes room_metadata.json",
			"meet.go recordingEgress: a stale egress_started returns before saveRoomMetadata, so room_metadata.json is never written (reference: written on every egress_started if absent)",
			func(t *testing.T) string {
				e := newEnv(t)
				e.fake.SetRoom(room, meetMD)
				e.put(roomKey, roomRecord(room, false, allPrefs))
				e.mustHandle([]byte(updatedActiveBody))
				ev, _ := e.mustHandle(startedEvent(t))
				if got := e.get(roomMDKey); got == nil {
					return fmt.Sprintf("stale=%v, room_metadata.json missing", ev.Meet.Stale)
				}
				return ""
			}},
		{"corrupt Meet room record on room_finished",
			"meet.go roomFinished/getRoom: a record that is not JSON makes Handle fail on every retry and skips the lock release (reference: error logged, lock release still attempted)",
			func(t *testing.T) string {
				e := newEnv(t)
				e.put(roomKey, "not json")
				e.takeLock(room)
				_, _, err := e.handle(roomEvent(t, "room_finished", "EV_rf", room, meetMD, nil))
				if held := e.lockHeld(room); err != nil || held {
					return fmt.Sprintf("err=%v lock held=%v", err, held)
				}
				return ""
			}},
		{"egress of a non-Meet room whose name is not a valid file-store key",
			"meet.go owned: a store key error (not ErrNotFound) for room names like \"a//b\", \"x/\", \"..\" is taken as a storage outage, so the event of a foreign room fails forever",
			func(t *testing.T) string {
				var fails []string
				for _, name := range []string{"a//b", "x/", "..", "a/./b"} {
					e := newEnv(t)
					e.fake.SetRoom(name, `{}`)
					ev, _, err := e.handle(egressEvent(t, "egress_updated", "EV", eg{room: name, status: "EGRESS_ACTIVE", file: "f/" + "r--u.mp4"}))
					if err != nil || (ev.Meet != nil && ev.Meet.Owned) {
						fails = append(fails, fmt.Sprintf("%q: err=%v", name, err))
					}
				}
				if fails != nil {
					return fmt.Sprint(fails)
				}
				return ""
			}},
		{"room_finished and participant_joined without a room object",
			"meet.go Handle: owned() falls back to egressInfo/ingressInfo when the room is missing, then roomFinished (ev.LiveKit.Room.Name) and participantJoined (room.Name) dereference a nil room",
			func(t *testing.T) string {
				var fails []string
				for _, typ := range []string{"room_finished", "participant_joined"} {
					func() {
						defer func() {
							if r := recover(); r != nil {
								fails = append(fails, fmt.Sprintf("%s: panic %v", typ, r))
							}
						}()
						e := newEnv(t)
						e.fake.SetRoom(room, meetMD)
						e.fake.AddEgress(activeEgress("EG_1", room, false))
						if _, _, err := e.handle(webhook(t, typ, "EV", map[string]any{
							"egressInfo": eg{status: "EGRESS_ACTIVE"}.info(), "participant": map[string]any{"sid": "PA_1", "identity": "a"},
						})); err != nil {
							fails = append(fails, fmt.Sprintf("%s: %v", typ, err))
						}
					}()
				}
				if fails != nil {
					return fmt.Sprint(fails)
				}
				return ""
			}},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if msg := tc.check(t); msg != "" {
				t.Errorf("%s\nobserved: %s", tc.bug, msg)
			}
		})
	}
}

// NotMeet tells from an event's own body that it is no Meet room's; every
// event it says so of, Handle finds not owned. What needs a look-up or has
// metadata Handle must log is left to Handle.
func TestNotMeet(t *testing.T) {
	roomEv := func(typ, metadata string) []byte {
		md := ""
		if metadata != "" {
			md = fmt.Sprintf(`,"metadata":%q`, metadata)
		}
		return fmt.Appendf(nil, `{"event":%q,"id":"EV_nm_%s","room":{"sid":"RM_nm","name":"standup-42"%s},"participant":{"sid":"PA_nm","identity":"ines"}}`, typ, typ, md)
	}
	for _, tt := range []struct {
		name string
		body []byte
		want bool
	}{
		{"a room without metadata", roomEv("participant_joined", ""), true},
		{"another creator", roomEv("room_started", `{"createdBy":"someone-else"}`), true},
		{"Meet's room", roomEv("participant_joined", meetMD), false},
		{"metadata that is not JSON", roomEv("participant_left", "not json"), false},
		{"a createdBy that is not a string", roomEv("room_finished", `{"createdBy":7}`), false},
		{"metadata that is an array", roomEv("track_published", `["openviduMeet"]`), false},
		{"an egress event, which names only its room", fmt.Appendf(nil, `{"event":"egress_updated","id":"EV_nm_eg","egressInfo":{"egressId":"EG_nm","roomName":"standup-42","status":"EGRESS_ACTIVE"}}`), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if got := e.h.NotMeet(decode(t, tt.body)); got != tt.want {
				t.Fatalf("NotMeet = %v, want %v", got, tt.want)
			}
			ev, _, err := e.handle(tt.body)
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if tt.want && ev.Meet.Owned {
				t.Error("NotMeet, yet Handle took the event as Meet's")
			}
		})
	}
}
