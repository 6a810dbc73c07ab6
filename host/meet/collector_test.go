package meet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"

	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
)

// TestCollectOrphanLocks ports the reference's garbage-collector cases
// (§10.5, §15.2) to the collector the leader replica runs.
func TestCollectOrphanLocks(t *testing.T) {
	starting := func(room string) *livekit.EgressInfo {
		e := activeEgress("EG_s", room, false)
		e.Status = livekit.EgressStatus_EGRESS_STARTING
		return e
	}
	tests := []struct {
		name     string
		age      time.Duration // how old the lock is when the collector runs
		liveRoom bool
		egress   *livekit.EgressInfo
		failList string // make this LiveKit method fail
		wantHeld bool
		wantErr  bool
		wantCall bool // LiveKit asked about the room at all
	}{
		{name: "too recent: not even looked at", age: 30 * time.Second, wantHeld: true},
		{name: "room without publishers and recordings: released", age: 5 * time.Minute, liveRoom: true, wantCall: true},
		{name: "room with an active recording: kept", age: 5 * time.Minute, liveRoom: true, egress: activeEgress("EG_1", room, false), wantHeld: true, wantCall: true},
		{name: "room with a starting recording: kept", age: 5 * time.Minute, liveRoom: true, egress: starting(room), wantHeld: true, wantCall: true},
		{name: "gone room with an active recording: kept", age: 5 * time.Minute, egress: activeEgress("EG_1", room, false), wantHeld: true, wantCall: true},
		{name: "gone room without recordings: released", age: 5 * time.Minute, wantCall: true},
		{name: "only a stream egress: released", age: 5 * time.Minute, liveRoom: true, egress: activeEgress("EG_2", room, true), wantCall: true},
		{name: "room check fails: kept, error", age: 5 * time.Minute, failList: livekittest.MethodListRooms, wantHeld: true, wantErr: true, wantCall: true},
		{name: "egress check fails: kept, error", age: 5 * time.Minute, failList: livekittest.MethodListEgress, wantHeld: true, wantErr: true, wantCall: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return time.Now().Add(tt.age) } })
			if tt.liveRoom {
				e.fake.SetRoom(room, meetMD)
			}
			if tt.egress != nil {
				e.fake.AddEgress(tt.egress)
			}
			if tt.failList != "" {
				e.fake.Fail(tt.failList, twirp.NewError(twirp.Unavailable, "down"))
			}
			e.takeLock(room)
			err := e.h.CollectOrphanLocks(context.Background(), discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CollectOrphanLocks error = %v, want error %v", err, tt.wantErr)
			}
			if got := e.fake.Calls(livekittest.MethodListRooms) > 0; got != tt.wantCall {
				t.Errorf("LiveKit asked = %v, want %v", got, tt.wantCall)
			}
			if held := e.lockHeld(room); held != tt.wantHeld {
				t.Errorf("lock held = %v, want %v", held, tt.wantHeld)
			}
		})
	}
}

func TestCollectOrphanLocksNone(t *testing.T) {
	e := newEnv(t)
	if err := e.h.CollectOrphanLocks(context.Background(), discard); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.Calls(livekittest.MethodListRooms) + e.fake.Calls(livekittest.MethodListEgress); n != 0 {
		t.Errorf("%d LiveKit calls without any lock", n)
	}
}

func TestReleaseRecordingLockRule(t *testing.T) {
	e := newEnv(t)
	e.takeLock(room)
	e.fake.AddEgress(activeEgress("EG_stream", room, true))
	if _, err := e.h.ReleaseRecordingLock(context.Background(), room); !errors.Is(err, ErrEgressActive) {
		t.Fatalf("release with an active stream egress = %v, want ErrEgressActive (§10.2: any kind blocks)", err)
	}
}
