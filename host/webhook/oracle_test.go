package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fastjson"
)

// jwtClaims is how lkedge read a token through golang-jwt's parser before
// Verify read it itself: the oracle Verify is held to.
type jwtClaims struct {
	Issuer    string   `json:"iss,omitempty"`
	ExpiresAt *float64 `json:"exp,omitempty"`
	NotBefore *float64 `json:"nbf,omitempty"`
	IssuedAt  *float64 `json:"iat,omitempty"`
	Sha256    string   `json:"sha256"`
}

func jwtDate(secs *float64) (*jwt.NumericDate, error) {
	if secs == nil {
		return nil, nil
	}
	return jwt.NewNumericDate(numericDate(*secs)), nil
}

func (c jwtClaims) GetExpirationTime() (*jwt.NumericDate, error) { return jwtDate(c.ExpiresAt) }
func (c jwtClaims) GetNotBefore() (*jwt.NumericDate, error)      { return jwtDate(c.NotBefore) }
func (c jwtClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return jwtDate(c.IssuedAt) }
func (c jwtClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c jwtClaims) GetSubject() (string, error)                  { return "", nil }
func (c jwtClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// oracle verifies as golang-jwt's parser does, with the options lkedge
// used: HS256 only, exp required, the leeway.
func oracle(tok string, body []byte, leeway time.Duration, now time.Time) (string, Reason) {
	if tok == "" {
		return "", ReasonNoAuthorization
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(leeway), jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return now }))
	var c jwtClaims
	_, err := p.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) {
		secret := keys.GetSecret(c.Issuer)
		if secret == "" {
			return nil, &Error{ReasonUnknownKey, errors.New("unknown")}
		}
		return []byte(secret), nil
	})
	var e *Error
	switch {
	case err == nil:
	case errors.As(err, &e):
		return "", e.Reason
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "", ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "", ReasonBadSignature
	default:
		return "", ReasonMalformedToken
	}
	sum := sha256.Sum256(body)
	if c.Sha256 != base64.StdEncoding.EncodeToString(sum[:]) {
		return "", ReasonChecksum
	}
	return c.Issuer, ""
}

// plain tells whether the header and the claims name what Verify reads
// exactly and once, the one way Verify is stricter than golang-jwt.
func plain(header, claims []byte) bool {
	ok := func(b []byte, names ...string) bool {
		v, err := fastjson.ParseBytes(b)
		if err != nil {
			return true // refused by both, for the same reason
		}
		o, err := v.Object()
		if err != nil {
			return true
		}
		seen := map[string]bool{}
		good := true
		o.Visit(func(k []byte, _ *fastjson.Value) {
			for _, n := range names {
				if strings.EqualFold(string(k), n) {
					if string(k) != n || seen[n] {
						good = false
					}
					seen[n] = true
				}
			}
		})
		return good
	}
	return ok(header, "alg") && ok(claims, "iss", "exp", "nbf", "iat", "sha256")
}

var b64 = base64.RawURLEncoding

// forge makes a token of header and claims signed with secret.
func forge(header, claims []byte, secret string) string {
	in := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(in))
	return in + "." + b64.EncodeToString(mac.Sum(nil))
}

var (
	oracleNow  = time.Unix(1_800_000_000, 0)
	oracleBody = []byte(`{"event":"room_started"}`)
	oracleSum  = "w9NV0uLHjSON8P7eonnkKXDHY4ICORefbHDCviKIgX8="
)

// oracleCases are headers and claims written by hand: what LiveKit sends,
// and each way a token can be wrong.
var oracleCases = []struct{ name, header, claims, secret string }{
	{"LiveKit's", `{"alg":"HS256","typ":"JWT"}`, `{"iss":"devkey","exp":1800000300,"nbf":1800000000,"iat":1800000000,"sha256":"` + oracleSum + `"}`, "secret"},
	{"rotated key", `{"alg":"HS256"}`, `{"iss":"rotated","exp":1800000300,"sha256":"` + oracleSum + `"}`, "newsecret"},
	{"fraction of a second", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1800000000.75,"sha256":"` + oracleSum + `"}`, "secret"},
	{"expired", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1799999999,"sha256":"` + oracleSum + `"}`, "secret"},
	{"not yet valid", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1800000300,"nbf":1800000001,"sha256":"` + oracleSum + `"}`, "secret"},
	{"expired and not yet valid", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1,"nbf":1900000000,"sha256":"` + oracleSum + `"}`, "secret"},
	{"no exp, not yet valid", `{"alg":"HS256"}`, `{"iss":"devkey","nbf":1900000000,"sha256":"` + oracleSum + `"}`, "secret"},
	{"no exp", `{"alg":"HS256"}`, `{"iss":"devkey","sha256":"` + oracleSum + `"}`, "secret"},
	{"null exp", `{"alg":"HS256"}`, `{"iss":"devkey","exp":null,"sha256":"` + oracleSum + `"}`, "secret"},
	{"exp a string", `{"alg":"HS256"}`, `{"iss":"devkey","exp":"1800000300","sha256":"` + oracleSum + `"}`, "secret"},
	{"exp out of range", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1e400,"sha256":"` + oracleSum + `"}`, "secret"},
	{"iat a string", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1800000300,"iat":"now","sha256":"` + oracleSum + `"}`, "secret"},
	{"iss a number", `{"alg":"HS256"}`, `{"iss":7,"exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"null iss", `{"alg":"HS256"}`, `{"iss":null,"exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"unknown issuer", `{"alg":"HS256"}`, `{"iss":"intruder","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"wrong secret", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "guess"},
	{"no checksum", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1800000300}`, "secret"},
	{"HS512", `{"alg":"HS512"}`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"none", `{"alg":"none"}`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"unknown alg", `{"alg":"HS257"}`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"no alg", `{"typ":"JWT"}`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"alg a number", `{"alg":256}`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"header null", `null`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"header not JSON", `{"alg":"HS256"`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
	{"claims an array", `{"alg":"HS256"}`, `["devkey"]`, "secret"},
	{"claims with NaN", `{"alg":"HS256"}`, `{"iss":"devkey","exp":NaN,"sha256":"` + oracleSum + `"}`, "secret"},
	{"claims with trailing data", `{"alg":"HS256"}`, `{"iss":"devkey","exp":1800000300,"sha256":"` + oracleSum + `"} {}`, "secret"},
	{"other claims", `{"alg":"HS256","kid":"x"}`, `{"iss":"devkey","sub":"lk","video":{"roomJoin":true},"exp":1800000300,"sha256":"` + oracleSum + `"}`, "secret"},
}

// TestVerifyAgreesWithGolangJWT: on every hand-written token, Verify
// accepts and refuses as golang-jwt's parser does, for the same reason.
func TestVerifyAgreesWithGolangJWT(t *testing.T) {
	for _, leeway := range []time.Duration{0, 5 * time.Second} {
		v := NewVerifier(keys, leeway, fixed(oracleNow))
		for _, c := range oracleCases {
			t.Run(fmt.Sprintf("%s/leeway %s", c.name, leeway), func(t *testing.T) {
				tok := forge([]byte(c.header), []byte(c.claims), c.secret)
				compare(t, v, tok, leeway, true)
			})
		}
		for _, tok := range []string{"", "a", "a.b", "a.b.c.d", "..", "not.a.jwt", "Bearer " + forge([]byte(oracleCases[0].header), []byte(oracleCases[0].claims), "secret")} {
			t.Run(fmt.Sprintf("%q/leeway %s", tok, leeway), func(t *testing.T) {
				compare(t, v, tok, leeway, true)
			})
		}
	}
}

func compare(t *testing.T, v *Verifier, tok string, leeway time.Duration, plain bool) {
	t.Helper()
	iss, err := v.Verify(tok, oracleBody)
	var reason Reason
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Verify error %v is not an *Error", err)
		}
		reason = e.Reason
	}
	wantIss, wantReason := oracle(tok, oracleBody, leeway, oracleNow)
	switch {
	case err == nil && (wantReason != "" || iss != wantIss):
		t.Fatalf("Verify accepted (issuer %q) what golang-jwt refuses (%s, issuer %q)", iss, wantReason, wantIss)
	case plain && reason != wantReason:
		t.Fatalf("Verify: %q (%v); golang-jwt: %q", reason, err, wantReason)
	}
}

// FuzzVerify holds Verify to golang-jwt's parser on any header, claims,
// signature and clock: it never accepts what golang-jwt refuses, and on
// tokens that name their fields plainly it answers as golang-jwt does.
func FuzzVerify(f *testing.F) {
	for _, c := range oracleCases {
		f.Add([]byte(c.header), []byte(c.claims), c.secret, false, int64(0), uint8(0), "")
	}
	f.Add([]byte(nil), []byte(nil), "", false, int64(0), uint8(0), "not.a.jwt")
	f.Fuzz(func(t *testing.T, header, claims []byte, secret string, tamper bool, shift int64, leeway uint8, raw string) {
		tok := raw
		if tok == "" {
			tok = forge(header, claims, secret)
			if tamper {
				tok = tok[:len(tok)-1] + "A"
			}
		}
		now := oracleNow.Add(time.Duration(shift%600) * time.Second)
		lw := time.Duration(leeway) * time.Second
		v := NewVerifier(keys, lw, fixed(now))
		iss, err := v.Verify(tok, oracleBody)
		wantIss, wantReason := oracle(tok, oracleBody, lw, now)
		if err == nil && (wantReason != "" || iss != wantIss) {
			t.Fatalf("Verify accepted (issuer %q) what golang-jwt refuses (%s)", iss, wantReason)
		}
		if raw == "" && plain(header, claims) {
			var e *Error
			reason := Reason("")
			if errors.As(err, &e) {
				reason = e.Reason
			}
			if reason != wantReason {
				t.Fatalf("Verify: %q (%v); golang-jwt: %q", reason, err, wantReason)
			}
		}
	})
}
