package deliver

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestValidateRefusesWhatEnqueueRefuses: Validate gives, for each hostile
// delivery, the very error Enqueue gives, and accepts what Enqueue
// stores, so a caller can refuse a request where it is made.
func TestValidateRefusesWhatEnqueueRefuses(t *testing.T) {
	s := okSink(t)
	o := openOutbox(t, testOptions())
	for _, tc := range []struct {
		name   string
		change func(d *Delivery)
		want   string // "" = valid
	}{
		{"valid", func(*Delivery) {}, ""},
		{"valid signed", func(d *Delivery) {
			d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "k", Header: "X-Sig", Timestamp: "1700000000000"}
		}, ""},
		{"empty id", func(d *Delivery) { d.ID = "" }, "empty id"},
		{"long id", func(d *Delivery) { d.ID = strings.Repeat("x", maxIDLen+1) }, "id longer than"},
		{"method with space", func(d *Delivery) { d.Method = "PO ST" }, "invalid method"},
		{"ftp URL", func(d *Delivery) { d.URL = "ftp://example.com/x" }, "scheme must be http or https"},
		{"URL without host", func(d *Delivery) { d.URL = "http:///x" }, "URL has no host"},
		{"URL outside the allow-list", func(d *Delivery) { d.URL = "https://evil.example.net/x" }, "not in the plugin's allow-list"},
		{"header name with colon", func(d *Delivery) { d.Header = [][2]string{{"X-A:b", "v"}} }, "invalid header name"},
		{"header value CRLF", func(d *Delivery) { d.Header = [][2]string{{"X-A", "v\r\nX-Injected: 1"}} }, "control characters"},
		{"header value NUL", func(d *Delivery) { d.Header = [][2]string{{"X-A", "v\x00"}} }, "control characters"},
		{"header value DEL", func(d *Delivery) { d.Header = [][2]string{{"X-A", "v\x7f"}} }, "control characters"},
		{"idempotency key vertical tab", func(d *Delivery) { d.IdempotencyKey = "k\vx" }, "idempotency key contains control characters"},
		{"idempotency key LF", func(d *Delivery) { d.IdempotencyKey = "k\nX-Injected: 1" }, "idempotency key contains control characters"},
		{"signature header with space", func(d *Delivery) { d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "k", Header: "X Sig"} }, "sign: invalid header name"},
		{"timestamp header with LF", func(d *Delivery) {
			d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "k", TimestampHeader: "X-TS\n"}
		}, "sign: invalid header name"},
		{"timestamp not a number", func(d *Delivery) { d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "k", Timestamp: "soon"} }, "not a decimal number"},
		{"standard-webhooks with a header", func(d *Delivery) {
			d.Sign = &Sign{Scheme: SchemeStandardWebhooks, Secret: "k", Header: "X-Sig"}
		}, "takes no header"},
		{"unknown scheme", func(d *Delivery) { d.Sign = &Sign{Scheme: "md5", Secret: "k"} }, "unknown scheme"},
		{"no secret name", func(d *Delivery) { d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex} }, "no secret name"},
		{"negative attempts", func(d *Delivery) { d.Policy.Attempts = -1 }, "negative attempts"},
		{"timeout past the bound", func(d *Delivery) { d.Policy.Timeout = maxWait + time.Second }, "out of range"},
		{"attempts against the schedule", func(d *Delivery) {
			d.Policy.Attempts, d.Policy.Schedule = 5, []time.Duration{time.Second}
		}, "contradicts a schedule"},
		{"bad allow-list entry", func(d *Delivery) { d.Policy.Allow = []string{"https://example.com/path"} }, "allow-list entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := s.delivery("v-"+strings.ReplaceAll(tc.name, " ", "-"), "r")
			tc.change(&d)
			verr := Validate(d)
			eerr := o.Enqueue(context.Background(), []Delivery{d})
			if tc.want == "" {
				if verr != nil || eerr != nil {
					t.Fatalf("Validate = %v, Enqueue = %v; want both nil", verr, eerr)
				}
				return
			}
			if verr == nil || !strings.Contains(verr.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error with %q", verr, tc.want)
			}
			if eerr == nil || !strings.HasSuffix(eerr.Error(), ": "+verr.Error()) {
				t.Errorf("Enqueue = %v, want it to end with Validate's error %q", eerr, verr)
			}
		})
	}
}
