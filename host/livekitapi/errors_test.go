package livekitapi

import (
	"errors"
	"testing"
	"time"
)

// TestErrorTexts: the errors formatted when read say what the eagerly
// formatted ones said, byte for byte, and keep what callers test for.
func TestErrorTexts(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:7880: connect: connection refused")
	unreachable := &unreachableError{left: 734_512 * time.Microsecond, cause: refused}
	for _, tc := range []struct {
		name            string
		err             error
		want            string
		wantUnreachable bool
		wantRefused     bool
	}{
		{"unreachable", unreachable, "livekit unreachable for 735ms more after: dial tcp 127.0.0.1:7880: connect: connection refused", true, false},
		{"a lookup while unreachable", &callError{"ListRooms", "room-ab12", unreachable},
			"livekit ListRooms room-ab12: livekit unreachable for 735ms more after: dial tcp 127.0.0.1:7880: connect: connection refused", true, false},
		{"a failed call", &callError{"DeleteRoom", "room-cd34", refused},
			"livekit DeleteRoom room-cd34: dial tcp 127.0.0.1:7880: connect: connection refused", false, true},
		{"a data message", &callError{"SendData", "room-ef56 topic recordingUpdated", refused},
			"livekit SendData room-ef56 topic recordingUpdated: dial tcp 127.0.0.1:7880: connect: connection refused", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q\nwant      %q", got, tc.want)
			}
			if got := errors.Is(tc.err, ErrUnreachable); got != tc.wantUnreachable {
				t.Errorf("errors.Is(err, ErrUnreachable) = %v, want %v", got, tc.wantUnreachable)
			}
			if got := errors.Is(tc.err, refused); got != tc.wantRefused {
				t.Errorf("errors.Is(err, the connection's error) = %v, want %v", got, tc.wantRefused)
			}
		})
	}
}
