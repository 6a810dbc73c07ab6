// Package webhook authenticates LiveKit webhooks: the Authorization header is
// an HS256 JWT issued by one of the configured API keys whose sha256 claim is
// the base64 SHA-256 of the raw body. It also signs bodies the same way, for
// `lkedge send` and tests.
package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
)

// Reason names why a webhook was refused; it is the label of the rejection
// counter, so its values are stable.
type Reason string

// The reasons Verify can refuse a webhook for.
const (
	ReasonNoAuthorization Reason = "no_authorization"
	ReasonMalformedToken  Reason = "malformed_token"
	ReasonUnknownKey      Reason = "unknown_key"
	ReasonBadSignature    Reason = "bad_signature"
	ReasonExpired         Reason = "expired"
	ReasonNotYetValid     Reason = "not_yet_valid"
	ReasonChecksum        Reason = "checksum_mismatch"
)

// Error is a refused webhook: a stable reason plus the underlying detail.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("webhook %s: %v", e.Reason, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// claims is what lkedge reads from the token: the time claims, the issuer
// and the body checksum. LiveKit's grant claims are not needed to
// authenticate a webhook, so they are not decoded. The times are plain
// numbers rather than jwt.NumericDate, whose UnmarshalJSON decodes each one
// again through encoding/json; a nil time is a missing claim.
type claims struct {
	Issuer    string   `json:"iss,omitempty"`
	ExpiresAt *float64 `json:"exp,omitempty"`
	NotBefore *float64 `json:"nbf,omitempty"`
	IssuedAt  *float64 `json:"iat,omitempty"`
	Sha256    string   `json:"sha256"`
}

// signedClaims is what Sign writes, as LiveKit's notifier does.
type signedClaims struct {
	jwt.RegisteredClaims
	Sha256 string `json:"sha256"`
}

// numericDate converts a time claim as jwt.NumericDate's own decoding does.
func numericDate(secs *float64) (*jwt.NumericDate, error) {
	if secs == nil {
		return nil, nil
	}
	whole, frac := math.Modf(*secs)
	return jwt.NewNumericDate(time.Unix(int64(whole), int64(frac*1e9))), nil
}

// GetExpirationTime is part of jwt.Claims.
func (c claims) GetExpirationTime() (*jwt.NumericDate, error) { return numericDate(c.ExpiresAt) }

// GetNotBefore is part of jwt.Claims.
func (c claims) GetNotBefore() (*jwt.NumericDate, error) { return numericDate(c.NotBefore) }

// GetIssuedAt is part of jwt.Claims.
func (c claims) GetIssuedAt() (*jwt.NumericDate, error) { return numericDate(c.IssuedAt) }

// GetIssuer is part of jwt.Claims.
func (c claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject is part of jwt.Claims; webhook tokens are not checked for one.
func (c claims) GetSubject() (string, error) { return "", nil }

// GetAudience is part of jwt.Claims; webhook tokens are not checked for one.
func (c claims) GetAudience() (jwt.ClaimStrings, error) { return nil, nil }

// Verifier checks webhook tokens against a set of keys.
type Verifier struct {
	keys   auth.KeyProvider
	parser *jwt.Parser
}

// NewVerifier accepts tokens issued by any key of keys. leeway tolerates
// clock skew on exp and nbf (OpenVidu Meet tolerates none); now is the clock
// (nil means time.Now), injectable so captured requests verify in tests.
func NewVerifier(keys auth.KeyProvider, leeway time.Duration, now func() time.Time) *Verifier {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithLeeway(leeway),
		jwt.WithExpirationRequired(),
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &Verifier{keys: keys, parser: jwt.NewParser(opts...)}
}

// Verify authenticates body against the Authorization header value (a bare
// JWT, as LiveKit sends it). It returns the issuing key, or an *Error.
func (v *Verifier) Verify(authorization string, body []byte) (string, error) {
	if authorization == "" {
		return "", &Error{ReasonNoAuthorization, errors.New("authorization header is empty")}
	}
	var c claims
	// The key function runs after the claims are decoded and before the
	// signature is checked, so the secret is found by issuer in one parse.
	_, err := v.parser.ParseWithClaims(authorization, &c, func(*jwt.Token) (any, error) {
		secret := v.keys.GetSecret(c.Issuer)
		if secret == "" {
			return nil, &Error{ReasonUnknownKey, fmt.Errorf("no secret for issuer %q", c.Issuer)}
		}
		return []byte(secret), nil
	})
	if err != nil {
		return "", classify(err)
	}
	sum := sha256.Sum256(body)
	var want [44]byte // base64 of 32 bytes
	base64.StdEncoding.Encode(want[:], sum[:])
	if subtle.ConstantTimeCompare([]byte(c.Sha256), want[:]) != 1 {
		return "", &Error{ReasonChecksum, errors.New("sha256 checksum of body does not match")}
	}
	return c.Issuer, nil
}

func classify(err error) error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, jwt.ErrTokenExpired):
		return &Error{ReasonExpired, err}
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return &Error{ReasonNotYetValid, err}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return &Error{ReasonBadSignature, err}
	default:
		return &Error{ReasonMalformedToken, err}
	}
}

// Sign returns the Authorization value LiveKit would send with body: an
// HS256 JWT by key, valid for five minutes from now, carrying the body's
// checksum.
func Sign(body []byte, key, secret string, now time.Time) (string, error) {
	sum := sha256.Sum256(body)
	c := signedClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    key,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		},
		Sha256: base64.StdEncoding.EncodeToString(sum[:]),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("sign webhook: %w", err)
	}
	return tok, nil
}
