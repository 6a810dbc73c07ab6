package meet

import (
	"errors"
	"strings"
	"testing"

	"github.com/livekit/protocol/livekit"
)

// vectorEgress is the egress of spec §18's outbound test vector.
func vectorEgress() *livekit.EgressInfo {
	return &livekit.EgressInfo{
		EgressId:  "EG_abc123XYZ",
		RoomName:  "room-123",
		Status:    livekit.EgressStatus_EGRESS_COMPLETE,
		StartedAt: 1745318182123456789,
		EndedAt:   1745318192654321987,
		Details:   "End reason: StopEgress API",
		FileResults: []*livekit.FileInfo{{
			Filename: "openvidu-meet/recordings/room-123/room-123--a1b2c3d4e5.mp4",
			Duration: 10530865198,
			Size:     1048576,
		}},
	}
}

const (
	vectorInfo   = `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"COMPLETE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568,"endDate":1745318192654.3218,"duration":10.530865198,"size":1048576,"details":"End reason: StopEgress API"}`
	vectorSignal = `{"id":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomName":"room-123","roomId":"room-123","status":"READY","filename":"room-123--a1b2c3d4e5.mp4","startedAt":1745318182123.4568,"endedAt":1745318192654.3218,"duration":10.530865198,"size":1048576}`
)

func TestRecordingInfoVector(t *testing.T) {
	info, err := ToRecordingInfo(vectorEgress())
	if err != nil {
		t.Fatal(err)
	}
	got, err := marshalJS(info)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != vectorInfo {
		t.Errorf("RecordingInfo JSON\n got %s\nwant %s", got, vectorInfo)
	}
	topic, payload, err := info.Signal()
	if err != nil {
		t.Fatal(err)
	}
	if topic != "recordingStopped" || string(payload) != vectorSignal {
		t.Errorf("Signal() = %q %s\nwant %q %s", topic, payload, "recordingStopped", vectorSignal)
	}
}

// TestRecordingInfoFields covers the §6.2 computations one field at a time.
func TestRecordingInfoFields(t *testing.T) {
	const file = "openvidu-meet/recordings/r/r--u1.mp4"
	base := func(mod func(*livekit.EgressInfo)) *livekit.EgressInfo {
		e := &livekit.EgressInfo{
			EgressId:    "EG_1",
			RoomName:    "r",
			Status:      livekit.EgressStatus_EGRESS_ACTIVE,
			StartedAt:   1745318182000000000,
			FileResults: []*livekit.FileInfo{{Filename: file}},
		}
		if mod != nil {
			mod(e)
		}
		return e
	}
	const head = `{"recordingId":"r--EG_1--u1","roomId":"r","status":"ACTIVE","filename":"r--u1.mp4",`
	tests := []struct {
		name string
		eg   *livekit.EgressInfo
		want string
	}{
		{"zero endedAt duration size errorCode: keys absent", base(nil),
			head + `"startDate":1745318182000}`},
		{"ms conversion and duration 3.6 s", base(func(e *livekit.EgressInfo) {
			e.EndedAt = 1745318185600000000
			e.FileResults[0].Duration = 3600000000
		}), head + `"startDate":1745318182000,"endDate":1745318185600,"duration":3.6}`},
		{"duration 5 s is an integer", base(func(e *livekit.EgressInfo) { e.FileResults[0].Duration = 5000000000 }),
			head + `"startDate":1745318182000,"duration":5}`},
		{"startedAt 0 uses updatedAt", base(func(e *livekit.EgressInfo) {
			e.StartedAt, e.UpdatedAt = 0, 1745318182200000000
		}), head + `"startDate":1745318182200}`},
		{"startedAt and updatedAt 0 give startDate 0", base(func(e *livekit.EgressInfo) { e.StartedAt = 0 }),
			head + `"startDate":0}`},
		{"errorCode error details kept, HTML not escaped", base(func(e *livekit.EgressInfo) {
			e.ErrorCode, e.Error, e.Details = 500, "x>y", "a<b&c"
		}), head + `"startDate":1745318182000,"errorCode":500,"error":"x>y","details":"a<b&c"}`},
		{"size only", base(func(e *livekit.EgressInfo) { e.FileResults[0].Size = 1 }),
			head + `"startDate":1745318182000,"size":1}`},
		{"filename without directories", base(func(e *livekit.EgressInfo) { e.FileResults[0].Filename = "r--u1.mp4" }),
			head + `"startDate":1745318182000}`},
		{"filename with deep directories, extra dots", base(func(e *livekit.EgressInfo) {
			e.FileResults[0].Filename = "a/b.c/d/r--u1.part.mp4"
		}), `{"recordingId":"r--EG_1--u1","roomId":"r","status":"ACTIVE","filename":"r--u1.part.mp4","startDate":1745318182000}`},
		{"only the first two -- parts matter", base(func(e *livekit.EgressInfo) { e.FileResults[0].Filename = "x/r--u1--zz.mp4" }),
			`{"recordingId":"r--EG_1--u1","roomId":"r","status":"ACTIVE","filename":"r--u1--zz.mp4","startDate":1745318182000}`},
		{"second file result ignored", base(func(e *livekit.EgressInfo) {
			e.FileResults = append(e.FileResults, &livekit.FileInfo{Filename: "other--zz.mp4", Size: 9})
		}), head + `"startDate":1745318182000}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ToRecordingInfo(tc.eg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := marshalJS(info)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestUnitConversions(t *testing.T) {
	e := &livekit.EgressInfo{
		EgressId: "EG_1", RoomName: "r",
		StartedAt: 1745318182000000000, EndedAt: 1745318182000000000,
		FileResults: []*livekit.FileInfo{{Filename: "r--u.mp4", Duration: 3600000000}},
	}
	info, err := ToRecordingInfo(e)
	if err != nil {
		t.Fatal(err)
	}
	if info.StartDate != 1745318182000 || info.EndDate != 1745318182000 || info.Duration != 3.6 {
		t.Errorf("startDate %v endDate %v duration %v; want 1745318182000 1745318182000 3.6", info.StartDate, info.EndDate, info.Duration)
	}
	e.FileResults[0].Duration = 5000000000
	if info, _ := ToRecordingInfo(e); info.Duration != 5 {
		t.Errorf("duration %v, want 5", info.Duration)
	}
}

func TestStatusMapping(t *testing.T) {
	tests := []struct {
		in   livekit.EgressStatus
		want Status
	}{
		{livekit.EgressStatus_EGRESS_STARTING, StatusStarting},
		{livekit.EgressStatus_EGRESS_ACTIVE, StatusActive},
		{livekit.EgressStatus_EGRESS_ENDING, StatusEnding},
		{livekit.EgressStatus_EGRESS_COMPLETE, StatusComplete},
		{livekit.EgressStatus_EGRESS_FAILED, StatusFailed},
		{livekit.EgressStatus_EGRESS_ABORTED, StatusAborted},
		{livekit.EgressStatus_EGRESS_LIMIT_REACHED, StatusLimitReached},
		{livekit.EgressStatus(42), StatusFailed},
		{livekit.EgressStatus(-1), StatusFailed},
	}
	seen := map[livekit.EgressStatus]bool{}
	for _, tc := range tests {
		seen[tc.in] = true
		e := &livekit.EgressInfo{EgressId: "EG_1", RoomName: "r", Status: tc.in, FileResults: []*livekit.FileInfo{{Filename: "r--u.mp4"}}}
		info, err := ToRecordingInfo(e)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status != tc.want {
			t.Errorf("status %v → %q, want %q", tc.in, info.Status, tc.want)
		}
	}
	// Every status LiveKit defines is in the table above.
	for n := range livekit.EgressStatus_name {
		if !seen[livekit.EgressStatus(n)] {
			t.Errorf("EgressStatus %d (%s) not covered", n, livekit.EgressStatus_name[n])
		}
	}
}

func TestToRecordingInfoErrors(t *testing.T) {
	tests := []struct {
		name    string
		eg      *livekit.EgressInfo
		badName bool
	}{
		{"no --", &livekit.EgressInfo{EgressId: "EG_1", RoomName: "r", FileResults: []*livekit.FileInfo{{Filename: "dir/r-u.mp4"}}}, true},
		{"-- only in a directory", &livekit.EgressInfo{EgressId: "EG_1", RoomName: "r", FileResults: []*livekit.FileInfo{{Filename: "a--b/ru.mp4"}}}, true},
		{"empty filename", &livekit.EgressInfo{EgressId: "EG_1", RoomName: "r", FileResults: []*livekit.FileInfo{{}}}, true},
		{"stream egress", &livekit.EgressInfo{EgressId: "EG_1", RoomName: "r", StreamResults: []*livekit.StreamInfo{{Url: "rtmp://x"}}}, false},
		{"nil", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ToRecordingInfo(tc.eg)
			if err == nil {
				t.Fatalf("ToRecordingInfo = %+v, want error", info)
			}
			if got := errors.Is(err, ErrBadFilename); got != tc.badName {
				t.Errorf("errors.Is(err, ErrBadFilename) = %v (err %v), want %v", got, err, tc.badName)
			}
		})
	}
}

func TestIsRecordingEgress(t *testing.T) {
	file := []*livekit.FileInfo{{Filename: "r--u.mp4"}}
	stream := []*livekit.StreamInfo{{Url: "rtmp://x"}}
	tests := []struct {
		name string
		eg   *livekit.EgressInfo
		want bool
	}{
		{"file only", &livekit.EgressInfo{FileResults: file}, true},
		{"stream only", &livekit.EgressInfo{StreamResults: stream}, false},
		{"file and stream", &livekit.EgressInfo{FileResults: file, StreamResults: stream}, false},
		{"none", &livekit.EgressInfo{}, false},
		{"segments only", &livekit.EgressInfo{SegmentResults: []*livekit.SegmentsInfo{{PlaylistName: "p.m3u8"}}}, false},
		{"images only", &livekit.EgressInfo{ImageResults: []*livekit.ImagesInfo{{FilenamePrefix: "img"}}}, false},
		{"nil", nil, false},
	}
	for _, tc := range tests {
		if got := IsRecordingEgress(tc.eg); got != tc.want {
			t.Errorf("%s: IsRecordingEgress = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMetadataKey(t *testing.T) {
	tests := []struct {
		id   string
		want string // "" means invalid
	}{
		{"room-123--EG_abc123XYZ--a1b2c3d4e5", "recordings/.metadata/room-123/EG_abc123XYZ/a1b2c3d4e5.json"},
		{"r--e--u--extra", "recordings/.metadata/r/e/u.json"},
		{"", ""},
		{"r", ""},
		{"r--e", ""},
		{"r--e--", ""},
		{"--e--u", ""},
		{"r----u", ""},
		{"r-e-u", ""},
	}
	for _, tc := range tests {
		got, err := MetadataKey(tc.id)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("MetadataKey(%q) = %q, want error", tc.id, got)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("MetadataKey(%q) = %q, %v; want %q", tc.id, got, err, tc.want)
		case err != nil && !strings.Contains(err.Error(), tc.id):
			t.Errorf("MetadataKey(%q) error %q does not name the id", tc.id, err)
		}
	}
}

func TestSignal(t *testing.T) {
	info := RecordingInfo{RecordingID: "r--EG_1--u", RoomID: "r", Filename: "r--u.mp4", StartDate: 1.5}
	tests := []struct {
		status Status
		topic  string
		wire   string
	}{
		{StatusStarting, "recordingStarting", "STARTING"},
		{StatusActive, "recordingStarted", "STARTED"},
		{StatusEnding, "recordingStopping", "STOPPING"},
		{StatusComplete, "recordingStopped", "READY"},
		{StatusFailed, "recordingFailed", "FAILED"},
		{StatusAborted, "recordingFailed", "FAILED"},
		{StatusLimitReached, "recordingStopped", "READY"},
		{Status("WHATEVER"), "recordingFailed", "FAILED"},
		{Status(""), "recordingFailed", "FAILED"},
	}
	for _, tc := range tests {
		in := info
		in.Status = tc.status
		topic, payload, err := in.Signal()
		if err != nil {
			t.Fatal(err)
		}
		want := `{"id":"r--EG_1--u","roomName":"r","roomId":"r","status":"` + tc.wire + `","filename":"r--u.mp4","startedAt":1.5}`
		if topic != tc.topic || string(payload) != want {
			t.Errorf("status %q: Signal() = %q %s\nwant %q %s", tc.status, topic, payload, tc.topic, want)
		}
	}
	// Errors and details never reach the data message; HTML stays literal.
	in := info
	in.RoomID, in.Status, in.ErrorCode, in.Error, in.Details = "a<b&c", StatusFailed, 3, "e", "d"
	_, payload, err := in.Signal()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"r--EG_1--u","roomName":"a<b&c","roomId":"a<b&c","status":"FAILED","filename":"r--u.mp4","startedAt":1.5}`; string(payload) != want {
		t.Errorf("Signal payload\n got %s\nwant %s", payload, want)
	}
}

func TestMarshalJSNoHTMLEscape(t *testing.T) {
	got, err := marshalJS(map[string]string{"details": "a<b&c>"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"details":"a<b&c>"}`; string(got) != want {
		t.Errorf("marshalJS = %s, want %s", got, want)
	}
}

func TestStatusRank(t *testing.T) {
	order := []Status{StatusStarting, StatusActive, StatusEnding}
	for i := 1; i < len(order); i++ {
		if order[i-1].rank() >= order[i].rank() {
			t.Errorf("%s must rank below %s", order[i-1], order[i])
		}
	}
	for _, final := range []Status{StatusComplete, StatusFailed, StatusAborted, StatusLimitReached} {
		if final.rank() <= StatusEnding.rank() {
			t.Errorf("final %s must outrank ENDING", final)
		}
	}
	for _, unknown := range []Status{"", "PAUSED"} {
		if unknown.rank() >= StatusStarting.rank() {
			t.Errorf("an unknown stored status %q must not block real states", unknown)
		}
	}
}
