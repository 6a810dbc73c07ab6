package webhook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
)

var keys = auth.NewFileBasedKeyProviderFromMap(map[string]string{"devkey": "secret", "rotated": "newsecret"})

// captureTime lies inside the validity of both captured tokens.
var captureTime = time.Unix(1795755700, 0)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func readCaptured(t *testing.T, name string) (auth string, body []byte) {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "livekit-captured")
	a, err := os.ReadFile(filepath.Join(dir, "livekit-webhook-dev-"+name+".authorization.txt"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "livekit-webhook-dev-"+name+".body.json"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(a)), b
}

func TestCapturedRequests(t *testing.T) {
	for _, name := range []string{"room_started", "room_finished"} {
		t.Run(name, func(t *testing.T) {
			tok, body := readCaptured(t, name)
			v := NewVerifier(keys, 0, fixed(captureTime))
			key, err := v.Verify(tok, body)
			if err != nil || key != "devkey" {
				t.Fatalf("Verify = %q, %v; want devkey", key, err)
			}
			// Tamper vectors from the capture's README.
			tampered := append([]byte(nil), body...)
			tampered[10] ^= 1
			wantReason(t, v, tok, tampered, ReasonChecksum)
			wantReason(t, NewVerifier(auth.NewFileBasedKeyProviderFromMap(map[string]string{"devkey": "other"}), 0, fixed(captureTime)), tok, body, ReasonBadSignature)
			// On today's clock the five-minute token has long expired.
			wantReason(t, NewVerifier(keys, 0, nil), tok, body, ReasonExpired)
		})
	}
}

func wantReason(t *testing.T, v *Verifier, tok string, body []byte, want Reason) {
	t.Helper()
	_, err := v.Verify(tok, body)
	var e *Error
	if !errors.As(err, &e) || e.Reason != want {
		t.Errorf("Verify error = %v, want reason %s", err, want)
	}
}

// token signs claims as a hostile or broken sender might.
func token(t *testing.T, method jwt.SigningMethod, secret string, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"event":"room_started"}`)
	good, err := Sign(body, "devkey", "secret", now)
	if err != nil {
		t.Fatal(err)
	}
	sum := "w9NV0uLHjSON8P7eonnkKXDHY4ICORefbHDCviKIgX8=" // §18
	claimsAt := func(iss string, at time.Time, sha string) signedClaims {
		return signedClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: iss, NotBefore: jwt.NewNumericDate(at), IssuedAt: jwt.NewNumericDate(at), ExpiresAt: jwt.NewNumericDate(at.Add(5 * time.Minute))}, Sha256: sha}
	}
	tests := []struct {
		name   string
		auth   string
		body   []byte
		leeway time.Duration
		want   Reason // "" means accepted
	}{
		{"signed by lkedge", good, body, 0, ""},
		{"§18 checksum", token(t, jwt.SigningMethodHS256, "secret", claimsAt("devkey", now, sum)), body, 0, ""},
		{"rotated key", token(t, jwt.SigningMethodHS256, "newsecret", claimsAt("rotated", now, sum)), body, 0, ""},
		{"missing header", "", body, 0, ReasonNoAuthorization},
		{"bearer prefix", "Bearer " + good, body, 0, ReasonMalformedToken},
		{"garbage", "not.a.jwt", body, 0, ReasonMalformedToken},
		{"wrong secret", token(t, jwt.SigningMethodHS256, "guess", claimsAt("devkey", now, sum)), body, 0, ReasonBadSignature},
		{"unknown issuer", token(t, jwt.SigningMethodHS256, "secret", claimsAt("intruder", now, sum)), body, 0, ReasonUnknownKey},
		{"HS512 refused", token(t, jwt.SigningMethodHS512, "secret", claimsAt("devkey", now, sum)), body, 0, ReasonBadSignature},
		{"expired", token(t, jwt.SigningMethodHS256, "secret", claimsAt("devkey", now.Add(-6*time.Minute), sum)), body, 0, ReasonExpired},
		{"expired within leeway", token(t, jwt.SigningMethodHS256, "secret", claimsAt("devkey", now.Add(-5*time.Minute-3*time.Second), sum)), body, 5 * time.Second, ""},
		{"not yet valid", token(t, jwt.SigningMethodHS256, "secret", claimsAt("devkey", now.Add(2*time.Second), sum)), body, 0, ReasonNotYetValid},
		{"not yet valid within leeway", token(t, jwt.SigningMethodHS256, "secret", claimsAt("devkey", now.Add(2*time.Second), sum)), body, 5 * time.Second, ""},
		{"no exp", token(t, jwt.SigningMethodHS256, "secret", signedClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "devkey"}, Sha256: sum}), body, 0, ReasonMalformedToken},
		{"exp not a number", token(t, jwt.SigningMethodHS256, "secret", jwt.MapClaims{"iss": "devkey", "exp": "later", "sha256": sum}), body, 0, ReasonMalformedToken},
		{"expired a fraction of a second ago", token(t, jwt.SigningMethodHS256, "secret", jwt.MapClaims{"iss": "devkey", "exp": float64(now.Unix()) - 0.25, "sha256": sum}), body, 0, ReasonExpired},
		{"body altered", good, []byte(`{"event":"room_finished"}`), 0, ReasonChecksum},
		{"no checksum claim", token(t, jwt.SigningMethodHS256, "secret", claimsAt("devkey", now, "")), body, 0, ReasonChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVerifier(keys, tt.leeway, fixed(now))
			_, err := v.Verify(tt.auth, tt.body)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason != tt.want {
				t.Fatalf("error = %v, want reason %s", err, tt.want)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "livekit-captured", "livekit-webhook-dev-room_started.body.json"))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := Sign(body, "devkey", "secret", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	v := NewVerifier(keys, 0, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok, body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyReusesMACs holds the HMACs a Verifier keeps for reuse to a
// fresh one's answers: one Verifier, called from several goroutines,
// checks tokens of two keys and forged tokens (an issuer's name signed with
// another secret) in turn, so a pooled HMAC that kept any state of its
// last use, or one shared across secrets, would pass a forgery or refuse a
// good token.
func TestVerifyReusesMACs(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	body := []byte(`{"event":"room_started","id":"EV_reuse"}`)
	sign := func(key, secret string) string {
		tok, err := Sign(body, key, secret, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		tok  string
		want Reason // "" for accepted
	}{
		{sign("devkey", "secret"), ""},
		{sign("rotated", "newsecret"), ""},
		{sign("devkey", "newsecret"), ReasonBadSignature},
		{sign("rotated", "secret"), ReasonBadSignature},
		{sign("devkey", "secret!"), ReasonBadSignature},
	}
	v := NewVerifier(keys, 0, fixed(now))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				c := cases[(g+i)%len(cases)]
				_, err := v.Verify(c.tok, body)
				var e *Error
				switch {
				case c.want == "" && err != nil:
					errs <- fmt.Errorf("good token %d refused: %v", (g+i)%len(cases), err)
					return
				case c.want != "" && (!errors.As(err, &e) || e.Reason != c.want):
					errs <- fmt.Errorf("token %d: got %v, want %s", (g+i)%len(cases), err, c.want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
