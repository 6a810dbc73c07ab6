package deliver

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// meetBody is OpenVidu Meet's published webhook example; with key
// "meet-api-key" and timestamp 1745318193000 its signature is known.
const meetBody = `{"event":"recordingEnded","creationDate":1745318193000,"data":{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"COMPLETE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568,"endDate":1745318192654.3218,"duration":10.530865198,"size":1048576,"details":"End reason: StopEgress API"}}`

func TestSignRequest(t *testing.T) {
	created := time.UnixMilli(1700000000123)
	tests := []struct {
		name   string
		d      Delivery
		secret string
		now    time.Time
		want   map[string]string
	}{
		{
			name:   "OpenVidu Meet vector",
			d:      Delivery{ID: "e/p/0", Body: []byte(meetBody), Sign: &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "meet", Timestamp: "1745318193000"}},
			secret: "meet-api-key",
			want: map[string]string{
				"X-Signature": "273c47403083f2b8fa2f9e0856ecf24e0ba863c77e444bf1bfbb4ff6956a5eee",
				"X-Timestamp": "1745318193000",
			},
		},
		{
			name:   "hmac timestamp defaults to CreatedAt in milliseconds, not the attempt time",
			d:      Delivery{ID: "e/p/0", Body: []byte("body"), CreatedAt: created, Sign: &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "s"}},
			secret: "k",
			now:    created.Add(time.Hour),
			want: map[string]string{
				"X-Signature": "fb863a1370efab1cfd27a86b2aeec869d4b91a59a4b45b31ffeef920d29a3687",
				"X-Timestamp": "1700000000123",
			},
		},
		{
			name: "hmac custom headers and template; placeholders inside the body stay literal",
			d: Delivery{ID: "e/p/0", Body: []byte("{timestamp}"), Sign: &Sign{
				Scheme: SchemeHMACSHA256Hex, Secret: "s", Header: "X-Hub-Signature", TimestampHeader: "X-Hub-Time",
				Template: "v1:{timestamp}:{body}", Timestamp: "42",
			}},
			secret: "k",
			want: map[string]string{
				"X-Hub-Signature": "4cef03ee1c006674916f6e79825a263fb3651100e469b3896f99e176cccbc715",
				"X-Hub-Time":      "42",
				"X-Signature":     "",
			},
		},
		{
			name:   "Standard Webhooks vector (libraries/go TestWebhookSign)",
			d:      Delivery{ID: "msg_p5jXN8AQM9LWM0D4loKWxJek", Body: []byte(`{"test": 2432232314}`), Sign: &Sign{Scheme: SchemeStandardWebhooks, Secret: "wh"}},
			secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			now:    time.Unix(1614265330, 0),
			want: map[string]string{
				"webhook-id":        "msg_p5jXN8AQM9LWM0D4loKWxJek",
				"webhook-timestamp": "1614265330",
				"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
			},
		},
		{
			name: "standard-webhooks uses the idempotency key as webhook-id",
			d: Delivery{ID: "e/p/0", IdempotencyKey: "idem-42", Body: []byte("hello"),
				Sign: &Sign{Scheme: SchemeStandardWebhooks, Secret: "wh"}},
			secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			now:    time.Unix(1700000000, 0),
			want: map[string]string{
				"webhook-id":        "idem-42",
				"webhook-signature": "v1,Y5dJeREiQ0O3UryrXWjOy9ow9FyhlY+C+S3RbFuyApw=",
			},
		},
		{
			name:   "standard-webhooks secret without whsec_ is raw key bytes",
			d:      Delivery{ID: "evt-1/p/0", Body: []byte(`{"a":1}`), Sign: &Sign{Scheme: SchemeStandardWebhooks, Secret: "wh"}},
			secret: "raw-secret",
			now:    time.Unix(1700000000, 0),
			want:   map[string]string{"webhook-signature": "v1,sgSimBigUqeQ74OeWwsHaGZucv2aHd2uo2DDrj5LI3k="},
		},
		{
			name: "unsigned delivery gets no headers",
			d:    Delivery{ID: "e/p/0", Body: []byte("x")},
			want: map[string]string{"X-Signature": "", "webhook-signature": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if err := SignRequest(h, &tt.d, []byte(tt.secret), tt.now); err != nil {
				t.Fatalf("SignRequest: %v", err)
			}
			for k, want := range tt.want {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestSignRequestErrors(t *testing.T) {
	tests := []struct {
		name   string
		sign   Sign
		secret string
		want   string
	}{
		{"unknown scheme", Sign{Scheme: "md5", Secret: "s"}, "s3cr3t-value", `unknown scheme "md5"`},
		{"no secret name", Sign{Scheme: SchemeHMACSHA256Hex}, "s3cr3t-value", "no secret name"},
		{"empty secret value", Sign{Scheme: SchemeHMACSHA256Hex, Secret: "s"}, "", `secret "s" is empty`},
		{"whsec not base64", Sign{Scheme: SchemeStandardWebhooks, Secret: "s"}, "whsec_n0t*base64", "not base64"},
		{"standard-webhooks overrides", Sign{Scheme: SchemeStandardWebhooks, Secret: "s", Header: "X-Sig"}, "s3cr3t-value", "no header, template or timestamp overrides"},
		{"bad header name", Sign{Scheme: SchemeHMACSHA256Hex, Secret: "s", Header: "X Sig"}, "s3cr3t-value", "invalid header name"},
		{"non-decimal timestamp", Sign{Scheme: SchemeHMACSHA256Hex, Secret: "s", Timestamp: "soon"}, "s3cr3t-value", "not a decimal number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Delivery{ID: "e/p/0", Sign: &tt.sign}
			err := SignRequest(http.Header{}, &d, []byte(tt.secret), time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SignRequest error = %v, want one containing %q", err, tt.want)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}
