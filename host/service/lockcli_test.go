package service

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
	"github.com/lkedge/lkedge/host/meet"
)

// TestLockCLI runs `lkedge lock` against a real Consul agent, the way an
// operator or OpenVidu Meet's start-recording would.
func TestLockCLI(t *testing.T) {
	agent := testserver.StartConsul(t)
	lk := livekittest.New(t, "devkey", "secret")
	bin := testserver.LKEdge(t)
	env := []string{"LKEDGE_COORDINATOR=consul", "CONSUL_HTTP_ADDR=" + agent.Addr, "LKEDGE_DATA_DIR=" + t.TempDir(), "LIVEKIT_URL=" + lk.URL()}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"lock"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	steps := []struct {
		args     []string
		wantExit int
		wantOut  string
	}{
		{[]string{"acquire", "room-1"}, 0, "acquired recording_active_room-1 for 6h0m0s"},
		{[]string{"acquire", "room-1"}, 1, "already being recorded"},
		{[]string{"list"}, 0, "recording_active_room-1"},
		{[]string{"release", "room-1"}, 1, "the room still has an active egress"},
		{[]string{"release", "--force", "room-1"}, 0, "released recording_active_room-1"},
		{[]string{"release", "--force", "room-1"}, 0, "was not held"},
		{[]string{"acquire"}, 1, "needs exactly one ROOM"},
		{[]string{"frobnicate"}, 1, "unknown lock command"},
	}
	lk.AddEgress(&livekit.EgressInfo{EgressId: "EG_1", RoomName: "room-1", Status: livekit.EgressStatus_EGRESS_ACTIVE})
	for _, s := range steps {
		out, code := run(s.args...)
		if code != s.wantExit || !strings.Contains(out, s.wantOut) {
			t.Errorf("lkedge lock %s: exit %d, %q; want exit %d with %q", strings.Join(s.args, " "), code, out, s.wantExit, s.wantOut)
		}
	}
	if out, _ := run("list"); strings.Contains(out, "room-1") {
		t.Errorf("list after release: %q", out)
	}

	// Start-recording: subscribe, acquire, then wait for recording_active,
	// which whichever replica handles egress_updated/ACTIVE publishes.
	replica := newConsulCoord(t, agent.Addr, "replica")
	go func() {
		time.Sleep(time.Second)
		_ = replica.Publish(context.Background(), coord.Event{Type: meet.EventRecordingActive, Payload: []byte(`{"recordingId":"room-2--EG_2--u","roomId":"room-2","status":"ACTIVE"}`)})
	}()
	if out, code := run("acquire", "--wait-active", "20s", "room-2"); code != 0 || !strings.Contains(out, `recording active: {"recordingId":"room-2--EG_2--u"`) {
		t.Errorf("acquire --wait-active: exit %d, %q", code, out)
	}
	if out, code := run("acquire", "--wait-active", "1s", "room-3"); code != 1 || !strings.Contains(out, "no recording_active event") {
		t.Errorf("acquire --wait-active without the event: exit %d, %q", code, out)
	}

	env[0] = "LKEDGE_COORDINATOR=inproc"
	if out, code := run("list"); code != 1 || !strings.Contains(out, "LKEDGE_COORDINATOR=consul") {
		t.Errorf("lock with the in-process coordinator: exit %d, %q", code, out)
	}
}
