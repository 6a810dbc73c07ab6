package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenEvents are the event model's reference examples
// (testdata/events/*.event.json at the repository root, each file one or
// more JSON values) plus the SDK's own, which cover every typed object.
func goldenEvents(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("../testdata/events/*.event.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden events: %v", err)
	}
	own, _ := filepath.Glob("testdata/events/*.json")
	events := map[string][]byte{}
	for _, f := range append(files, own...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			events[fmt.Sprintf("%s#%d", filepath.Base(f), i)] = raw
		}
	}
	return events
}

// viaEncodingJSON is the reference ParseEvent must match.
func viaEncodingJSON(raw []byte) (*Event, error) {
	ev := &Event{Raw: raw}
	if err := json.Unmarshal(raw, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// sameAsEncodingJSON fails unless ParseEvent and encoding/json both refuse
// raw or both produce the same Event.
func sameAsEncodingJSON(t testing.TB, raw []byte) {
	t.Helper()
	got, gotErr := ParseEvent(raw)
	want, wantErr := viaEncodingJSON(raw)
	switch {
	case (gotErr != nil) != (wantErr != nil):
		t.Fatalf("ParseEvent(%q):\n error %v\nencoding/json error %v", raw, gotErr, wantErr)
	case gotErr != nil:
		return
	case !reflect.DeepEqual(got, want):
		t.Fatalf("ParseEvent(%q):\n got %s\nwant %s", raw, dump(got), dump(want))
	}
}

func dump(ev *Event) string {
	b, _ := json.Marshal(ev)
	return string(b)
}

// edgeCases exercise each rule of encoding/json that ParseEvent follows.
var edgeCases = []string{
	// Top level.
	``, ` `, `null`, ` null `, `{}`, `[]`, `1`, `"x"`, `true`, `{} {}`, `{}x`, `{`, `}`, `{"id":"a"}  `,
	// Strings: escapes, unicode, surrogates, invalid UTF-8, control characters.
	`{"id":"a\"b\\c\/d\b\f\n\r\t"}`,
	`{"id":"\u00e9\u20AC\ud83d\ude00"}`,
	`{"id":"\ud83d"}`, `{"id":"\ude00x"}`, `{"id":"\ud83d\u0041"}`, `{"id":"\ud83d\ud83d\ude00"}`,
	`{"id":"\u12"}`, `{"id":"\u12g4"}`, `{"id":"\x"}`, `{"id":"\'"}`, `{"id":"a` + "\x01" + `"}`,
	"{\"id\":\"caf\xc3\xa9 \xff\xfe \xed\xa0\x80 \xe2\x82\"}", `{"id":"` + strings.Repeat("long string ", 20) + `"}`,
	`{"id":"unterminated`, `{"id":"esc\`, `{"id":"\u`,
	// Keys: exact, case-insensitive, escaped, unknown, repeated.
	`{"ID":"a","TYPE":"b","ReceivedAT":5}`, `{"\u0069d":"a"}`, `{"id":"a","id":"b"}`, `{"iD":"a","id":"b","Id":"c"}`,
	`{"ſource":"s"}`, `{"unknown":{"deep":[1,{"x":[true,false,null]}],"s":"\u0041"},"id":"x"}`,
	`{"id":1}`, `{"id":true}`, `{"id":null}`, `{"id":{}}`, `{"id":[]}`, `{"id":"a",}`, `{"id" "a"}`, `{id:"a"}`, `{"id":"a"]`,
	// Numbers.
	`{"version":1}`, `{"version":-0}`, `{"version":1.0}`, `{"version":1e2}`, `{"version":01}`, `{"version":-}`,
	`{"version":9223372036854775807}`, `{"version":9223372036854775808}`, `{"version":-9223372036854775808}`,
	`{"receivedAt":"5"}`, `{"receivedAt":1.}`, `{"receivedAt":.5}`, `{"receivedAt":1e}`, `{"receivedAt":1e+}`, `{"receivedAt":1E-2}`,
	`{"room":{"emptyTimeout":4294967295}}`, `{"room":{"emptyTimeout":4294967296}}`, `{"room":{"emptyTimeout":-1}}`, `{"room":{"emptyTimeout":-0}}`,
	`{"track":{"version":{"ticks":2147483648}}}`, `{"track":{"version":{"ticks":-2147483648}}}`,
	// Int64: string or number.
	`{"room":{"creationTime":"123"}}`, `{"room":{"creationTime":123}}`, `{"room":{"creationTime":"-5"}}`, `{"room":{"creationTime":"+5"}}`,
	`{"room":{"creationTime":""}}`, `{"room":{"creationTime":"1.5"}}`, `{"room":{"creationTime":"\u0031"}}`, `{"room":{"creationTime":null}}`,
	`{"room":{"creationTime":"9223372036854775808"}}`, `{"room":{"creationTime":true}}`, `{"room":{"creationTime":[]}}`,
	// Literals and nulls.
	`{"meet":{"owned":true,"stale":false}}`, `{"meet":{"owned":tru}}`, `{"meet":{"owned":nul}}`, `{"meet":{"owned":"true"}}`,
	`{"room":null}`, `{"room":{"name":"a"},"room":null}`, `{"room":{"name":"a"},"room":{"sid":"b"}}`, `{"room":5}`, `{"room":[]}`,
	`{"meet":{"recording":null}}`, `{"meet":{"recording":{"a":[1,2]}}}`, `{"meet":{"recording":"x"}}`, `{"meet":{"recording":}}`,
	// Slices and maps, including repeated keys that decode into what is there.
	`{"participant":{"tracks":[]}}`, `{"participant":{"tracks":null}}`, `{"participant":{"tracks":[{"sid":"a","name":"n"}],"tracks":[{"sid":"b"}]}}`,
	`{"participant":{"tracks":[{"sid":"a"},{"sid":"b"}],"tracks":[{"name":"c"}],"tracks":[{},{}]}}`,
	`{"participant":{"kindDetails":["a",null,"b"]}}`, `{"participant":{"kindDetails":["a"],"kindDetails":[null]}}`,
	`{"participant":{"attributes":{"a":"1","b":null}}}`, `{"participant":{"attributes":{"a":"1"},"attributes":{"b":"2"}}}`,
	`{"participant":{"attributes":null}}`, `{"participant":{"attributes":{}}}`, `{"participant":{"attributes":{"a":1}}}`, `{"participant":{"attributes":[]}}`,
	`{"participant":{"tracks":[1]}}`, `{"participant":{"tracks":{}}}`, `{"participant":{"tracks":[{"sid":"a"}}`,
	// Enums: a name, a number (with or without a name), other types.
	`{"egressInfo":{"status":"EGRESS_COMPLETE"}}`, `{"egressInfo":{"status":3}}`, `{"egressInfo":{"status":99}}`, `{"egressInfo":{"status":-1}}`,
	`{"egressInfo":{"status":-0}}`, `{"egressInfo":{"status":null}}`, `{"egressInfo":{"status":"EGRESS_COMPLETE","status":null}}`, `{"egressInfo":{"status":"NOT_YET_NAMED"}}`,
	`{"egressInfo":{"status":1.5}}`, `{"egressInfo":{"status":1e1}}`, `{"egressInfo":{"status":2147483648}}`, `{"egressInfo":{"status":-2147483649}}`,
	`{"egressInfo":{"status":true}}`, `{"egressInfo":{"status":[]}}`, `{"egressInfo":{"status":{}}}`, `{"egressInfo":{"status":"\u0033"}}`,
	`{"participant":{"kindDetails":[1,"FORWARDED",null,77]}}`, `{"participant":{"kindDetails":[1],"kindDetails":[null]}}`, `{"participant":{"kindDetails":{}}}`,
	`{"track":{"audioFeatures":[0,99,"TF_NO_DTX"],"source":2}}`, `{"track":{"audioFeatures":[false]}}`,
	// Optional fields.
	`{"ingressInfo":{"enabled":false,"enableTranscoding":null,"state":{"status":"ENDPOINT_ERROR","tracks":[{"sid":"t"}]}}}`,
	// Depth.
	`{"unknown":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}`,
	`{"unknown":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	`{"unknown":` + strings.Repeat(`{"a":`, 10001) + `1` + strings.Repeat("}", 10001) + `}`,
	// Whitespace.
	" \t\r\n{ \"id\" : \"a\" , \"version\" :\n1 } \n", "{\"id\":\"a\"\f}", "{\"id\":\"a\"\v}",
}

func TestParseEventMatchesEncodingJSON(t *testing.T) {
	for name, raw := range goldenEvents(t) {
		t.Run(name, func(t *testing.T) { sameAsEncodingJSON(t, raw) })
	}
	for i, raw := range edgeCases {
		t.Run(fmt.Sprintf("edge%d", i), func(t *testing.T) { sameAsEncodingJSON(t, []byte(raw)) })
	}
}

// TestParseEventMutations runs the golden events through thousands of
// small random edits (a fixed seed, so a failure reproduces): each must be
// refused by both decoders or decoded the same.
func TestParseEventMutations(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	const alphabet = "{}[],:\"\\ \n0123456789-+.eEtrufalsn\x00\x1f\x7f\xc3\xa9\xff"
	golden := goldenEvents(t)
	n := 0
	for name, raw := range golden {
		for range 1500 {
			m := mutate(r, raw, alphabet)
			n++
			t.Run(name, func(t *testing.T) { sameAsEncodingJSON(t, m) })
			if t.Failed() {
				return
			}
		}
	}
	t.Logf("%d mutations of %d events", n, len(golden))
}

func mutate(r *rand.Rand, b []byte, alphabet string) []byte {
	m := bytes.Clone(b)
	for range 1 + r.Intn(3) {
		if len(m) == 0 {
			return m
		}
		i := r.Intn(len(m))
		switch r.Intn(5) {
		case 0: // delete
			m = append(m[:i], m[i+1:]...)
		case 1: // insert
			m = append(m[:i], append([]byte{alphabet[r.Intn(len(alphabet))]}, m[i:]...)...)
		case 2: // replace
			m[i] = alphabet[r.Intn(len(alphabet))]
		case 3: // flip the case bit of a letter: keys then match case-insensitively
			m[i] ^= 0x20
		case 4: // repeat a span, which repeats keys
			j := min(len(m), i+1+r.Intn(40))
			m = append(m[:j], append(bytes.Clone(m[i:j]), m[j:]...)...)
		}
	}
	return m
}

func FuzzParseEvent(f *testing.F) {
	for _, raw := range goldenEvents(f) {
		f.Add(raw)
	}
	for _, raw := range edgeCases {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameAsEncodingJSON(t, raw) })
}

func TestParseEventErrorSaysWhere(t *testing.T) {
	_, err := ParseEvent([]byte(`{"egressInfo":{"fileResults":[{"size":"1"},{"size":"x"}]}}`))
	want := `decode event: json: egressInfo.fileResults[1].size: cannot decode string "x" into int64 at offset 51`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
}

func TestParseEventKeepsRaw(t *testing.T) {
	raw := []byte(`{"id":"EV_1","future":{"a":1}}`)
	ev, err := ParseEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "EV_1" || !bytes.Equal(ev.Raw, raw) {
		t.Fatalf("ID %q Raw %q", ev.ID, ev.Raw)
	}
}

func TestInt64(t *testing.T) {
	for _, tc := range []struct {
		in      string
		start   Int64
		want    Int64
		wantErr bool
	}{
		{`"123"`, 0, 123, false},
		{`123`, 0, 123, false},
		{`"-9223372036854775808"`, 0, -9223372036854775808, false},
		{`null`, 7, 7, false},
		{`"9223372036854775808"`, 0, 0, true},
		{`"1e3"`, 0, 0, true},
		{`1.5`, 0, 0, true},
		{`""`, 0, 0, true},
		{`"12" `, 0, 12, false},
		{`"12"x`, 0, 0, true},
		{`{}`, 0, 0, true},
	} {
		n := tc.start
		err := n.UnmarshalJSON([]byte(tc.in))
		if (err != nil) != tc.wantErr || (err == nil && n != tc.want) {
			t.Errorf("UnmarshalJSON(%s) = %d, %v; want %d, error %v", tc.in, n, err, tc.want, tc.wantErr)
		}
	}
}

func TestRecordingInfo(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	size, code := int64(1048576), 3
	tests := []struct {
		name    string
		meet    *Meet
		want    *Recording
		wantErr bool
	}{
		{"no meet", nil, nil, false},
		{"no recording", &Meet{Owned: true}, nil, false},
		{"null recording", &Meet{Recording: json.RawMessage(`null`)}, nil, false},
		{"§18 vector", &Meet{Recording: json.RawMessage(`{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"COMPLETE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568,"endDate":1745318192654.3218,"duration":10.530865198,"size":1048576,"details":"End reason: StopEgress API"}`)},
			&Recording{RecordingID: "room-123--EG_abc123XYZ--a1b2c3d4e5", RoomID: "room-123", Status: RecordingComplete, Filename: "room-123--a1b2c3d4e5.mp4",
				StartDate: 1745318182123.4568, EndDate: f(1745318192654.3218), Duration: f(10.530865198), Size: &size, Details: "End reason: StopEgress API"}, false},
		{"failed", &Meet{Recording: json.RawMessage(`{"recordingId":"r","status":"FAILED","startDate":0,"errorCode":3,"error":"boom"}`)},
			&Recording{RecordingID: "r", Status: RecordingFailed, ErrorCode: &code, Error: "boom"}, false},
		{"not an object", &Meet{Recording: json.RawMessage(`[1]`)}, nil, true},
		{"wrong type", &Meet{Recording: json.RawMessage(`{"size":"big"}`)}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.meet.RecordingInfo()
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
			if tc.meet.HasRecording() {
				var ref Recording
				refErr := json.Unmarshal(tc.meet.Recording, &ref)
				if (refErr != nil) != (err != nil) || (err == nil && !reflect.DeepEqual(got, &ref)) {
					t.Fatalf("encoding/json disagrees: %+v, %v", ref, refErr)
				}
			}
		})
	}
}

func BenchmarkParseEvent(b *testing.B) {
	raw, err := os.ReadFile("../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		parse func([]byte) (*Event, error)
	}{{"sdk", ParseEvent}, {"encoding-json", viaEncodingJSON}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.parse(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestEveryFieldDecodes checks that each typed field has its case in the
// decoder: testdata/events/every_field.json sets all of them, so a field
// still zero after decoding is one the decoder does not fill.
func TestEveryFieldDecodes(t *testing.T) {
	b, err := os.ReadFile("testdata/events/every_field.json")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	all := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		ev, err := ParseEvent(raw)
		if err != nil {
			t.Fatal(err)
		}
		walk(reflect.ValueOf(ev).Elem(), seen, all)
		rec, err := ev.Meet.RecordingInfo()
		if err != nil {
			t.Fatal(err)
		}
		if rec != nil {
			walk(reflect.ValueOf(rec).Elem(), seen, all)
		}
	}
	for f := range all {
		if !seen[f] {
			t.Errorf("%s is never set by the decoder", f)
		}
	}
}

// walk records every struct field reachable from v as Type.Field in all,
// and in seen those that are not zero.
func walk(v reflect.Value, seen, all map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walk(v.Elem(), seen, all)
		}
	case reflect.Slice:
		for i := 0; i < v.Len() && v.Type().Elem().Kind() == reflect.Struct; i++ {
			walk(v.Index(i), seen, all)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			name := v.Type().Name() + "." + v.Type().Field(i).Name
			all[name] = true
			if !v.Field(i).IsZero() {
				seen[name] = true
			}
			walk(v.Field(i), seen, all)
		}
	}
}

// TestEnumsReadBothForms: protojson writes an enum value it has no name
// for as a number, and reads a name or a number. Every enum field reads
// both: a known number as its name, an unknown one as its decimal text.
func TestEnumsReadBothForms(t *testing.T) {
	b, err := os.ReadFile("testdata/events/enum_numbers.json")
	if err != nil {
		t.Fatal(err)
	}
	var evs []*Event
	for line := range strings.Lines(string(b)) {
		ev, err := ParseEvent([]byte(line))
		if err != nil {
			t.Fatalf("ParseEvent: %v", err)
		}
		evs = append(evs, ev)
	}
	p, tr, eg, in := evs[0].Participant, evs[0].Participant.Tracks[0], evs[1].Egress, evs[2].Ingress
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"participant.state", p.State, ParticipantState("ACTIVE")},
		{"participant.kind", p.Kind, ParticipantKind("99")},
		{"participant.disconnectReason", p.DisconnectReason, DisconnectReason("AGENT_ERROR")},
		{"participant.kindDetails", p.KindDetails, []ParticipantKindDetail{"FORWARDED", "42"}},
		{"participant.capabilities", p.Capabilities, []ClientCapability{"CAP_COMPRESSION_DEFLATE_RAW", "7"}},
		{"permission.canPublishSources", p.Permission.CanPublishSources, []TrackSource{"CAMERA", "MICROPHONE", "9"}},
		{"track.type", tr.Type, TrackType("VIDEO")},
		{"track.source", tr.Source, TrackSource("77")},
		{"track.encryption", tr.Encryption, EncryptionType("GCM")},
		{"track.audioFeatures", tr.AudioFeatures, []AudioTrackFeature{"TF_STEREO", "55"}},
		{"track.backupCodecPolicy", tr.BackupCodecPolicy, BackupCodecPolicy("REGRESSION")},
		{"layer.quality", tr.Layers[0].Quality, VideoQuality("OFF")},
		{"codec.videoLayerMode", tr.Codecs[0].VideoLayerMode, VideoLayerMode("ONE_SPATIAL_LAYER_PER_STREAM_INCOMPLETE_RTCP_SR")},
		{"codec layer.quality", tr.Codecs[0].Layers[0].Quality, VideoQuality("-1")},
		{"egress.sourceType", eg.SourceType, EgressSourceType("EGRESS_SOURCE_TYPE_SDK")},
		{"egress.status", eg.Status, EgressStatus("99")},
		{"stream.status", []StreamStatus{eg.StreamResults[0].Status, eg.StreamResults[1].Status}, []StreamStatus{"FAILED", "12"}},
		{"ingress.inputType", in.InputType, IngressInput("5")},
		{"ingress state.status", in.State.Status, IngressStatus("ENDPOINT_COMPLETE")},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if eg.Status == "EGRESS_FAILED" || eg.Status == "EGRESS_STARTING" {
		t.Error("an unknown status must match no name")
	}
}
