// Package webhook authenticates LiveKit webhooks: the Authorization header is
// an HS256 JWT issued by one of the configured API keys whose sha256 claim is
// the base64 SHA-256 of the raw body. It also signs bodies the same way, for
// `lkedge send` and tests.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
	"github.com/valyala/fastjson"
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

// claims is what lkedge reads from the token: the time claims (a nil time
// is a missing claim), the issuer and the body checksum. iat is read only
// to refuse what golang-jwt refuses (a value that is not a number); like
// golang-jwt without WithIssuedAt, lkedge does not check it. LiveKit's
// grant claims are not needed to authenticate a webhook, so they are not
// read.
type claims struct {
	issuer        string
	exp, nbf, iat *float64
	sha256        string
	seen          uint8 // the claims read so far, to refuse one given twice
}

// signedClaims is what Sign writes, as LiveKit's notifier does.
type signedClaims struct {
	jwt.RegisteredClaims
	Sha256 string `json:"sha256"`
}

// numericDate converts a time claim as jwt.NumericDate's own decoding does.
func numericDate(secs float64) time.Time {
	whole, frac := math.Modf(secs)
	return jwt.NewNumericDate(time.Unix(int64(whole), int64(frac*1e9))).Time
}

// Verifier checks webhook tokens against a set of keys.
type Verifier struct {
	keys   auth.KeyProvider
	leeway time.Duration
	now    func() time.Time
	// macs keeps used HMACs by secret (a *sync.Pool of hash.Hash each):
	// hmac.New hashes the key into its two pads every time, where a Reset
	// of a used one restores them. The secrets are the configured keys',
	// never a webhook's, so the map stays as small as the key set.
	macs sync.Map
}

// NewVerifier accepts tokens issued by any key of keys. leeway tolerates
// clock skew on exp and nbf (OpenVidu Meet tolerates none); now is the clock
// (nil means time.Now), injectable so captured requests verify in tests.
func NewVerifier(keys auth.KeyProvider, leeway time.Duration, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{keys: keys, leeway: leeway, now: now}
}

// parsers keeps fastjson's parsers for the token's header and claims.
var parsers fastjson.ParserPool

// Verify authenticates body against the Authorization header value (a bare
// JWT, as LiveKit sends it). It returns the issuing key, or an *Error.
//
// It checks what golang-jwt's parser checks with HS256 as the only method,
// exp required and the leeway (TestVerifyAgreesWithGolangJWT and
// FuzzVerify hold it to that parser), without its generic decoding, which
// was most of a webhook's verification (docs/benchmarks.md). It is
// stricter in one way: the header's and the claims' names are matched
// exactly, once each, where encoding/json would also take "ISS" for "iss"
// and the last of two.
func (v *Verifier) Verify(authorization string, body []byte) (string, error) {
	if authorization == "" {
		return "", &Error{ReasonNoAuthorization, errors.New("authorization header is empty")}
	}
	header, rest, ok1 := strings.Cut(authorization, ".")
	payload, signature, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(signature, ".") {
		return "", malformed("token contains an invalid number of segments")
	}
	p := parsers.Get()
	defer parsers.Put(p)
	alg, err := readHeader(p, header)
	if err != nil {
		return "", err
	}
	c, err := readClaims(p, payload)
	if err != nil {
		return "", err
	}
	sig, err := base64.RawURLEncoding.DecodeString(signature)
	if err != nil {
		return "", malformed("could not base64 decode signature: %v", err)
	}
	if alg != jwt.SigningMethodHS256.Alg() {
		return "", &Error{ReasonBadSignature, fmt.Errorf("signing method %v is invalid", alg)}
	}
	secret := v.keys.GetSecret(c.issuer)
	if secret == "" {
		return "", &Error{ReasonUnknownKey, fmt.Errorf("no secret for issuer %q", c.issuer)}
	}
	var sum [sha256.Size]byte
	if !hmac.Equal(sig, v.sign(secret, authorization[:len(header)+1+len(payload)], sum[:0])) {
		return "", &Error{ReasonBadSignature, errors.New("signature is invalid")}
	}
	// As golang-jwt: expired is reported before not yet valid, and either
	// before a missing exp.
	now := v.now()
	switch {
	case c.exp != nil && !now.Before(numericDate(*c.exp).Add(v.leeway)):
		return "", &Error{ReasonExpired, errors.New("token is expired")}
	case c.nbf != nil && now.Before(numericDate(*c.nbf).Add(-v.leeway)):
		return "", &Error{ReasonNotYetValid, errors.New("token is not valid yet")}
	case c.exp == nil:
		return "", malformed("token is missing required claim: exp claim is required")
	}
	sum = sha256.Sum256(body)
	var want [44]byte // base64 of 32 bytes
	base64.StdEncoding.Encode(want[:], sum[:])
	if subtle.ConstantTimeCompare([]byte(c.sha256), want[:]) != 1 {
		return "", &Error{ReasonChecksum, errors.New("sha256 checksum of body does not match")}
	}
	return c.issuer, nil
}

// sign appends to dst the HMAC-SHA256 of signed under secret.
func (v *Verifier) sign(secret, signed string, dst []byte) []byte {
	pool, ok := v.macs.Load(secret)
	if !ok {
		pool, _ = v.macs.LoadOrStore(secret, &sync.Pool{New: func() any { return hmac.New(sha256.New, []byte(secret)) }})
	}
	mac := pool.(*sync.Pool).Get().(hash.Hash)
	mac.Write([]byte(signed))
	dst = mac.Sum(dst)
	mac.Reset()
	pool.(*sync.Pool).Put(mac)
	return dst
}

func malformed(format string, args ...any) error {
	return &Error{ReasonMalformedToken, fmt.Errorf(format, args...)}
}

// segment decodes one base64url segment of the token and checks that it is
// one JSON object, as encoding/json would accept it.
func segment(p *fastjson.Parser, seg, what string) (*fastjson.Object, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, malformed("could not base64 decode %s: %v", what, err)
	}
	// fastjson also takes NaN and Inf; encoding/json, which golang-jwt
	// uses, takes JSON only.
	if !json.Valid(b) {
		return nil, malformed("could not JSON decode %s", what)
	}
	v, err := p.ParseBytes(b)
	if err != nil {
		return nil, malformed("could not JSON decode %s: %v", what, err)
	}
	o, err := v.Object()
	if err != nil {
		return nil, malformed("%s is not a JSON object", what)
	}
	return o, nil
}

// readHeader returns the header's alg, which must be a signing method
// golang-jwt knows.
func readHeader(p *fastjson.Parser, seg string) (string, error) {
	o, err := segment(p, seg, "header")
	if err != nil {
		return "", err
	}
	var alg *fastjson.Value
	n := 0
	o.Visit(func(k []byte, v *fastjson.Value) {
		if string(k) == "alg" {
			alg, n = v, n+1
		}
	})
	if n > 1 {
		return "", malformed("alg given twice")
	}
	if alg == nil || alg.Type() != fastjson.TypeString {
		return "", malformed("signing method (alg) is unspecified")
	}
	name := string(alg.GetStringBytes())
	if jwt.GetSigningMethod(name) == nil {
		return "", malformed("signing method (alg) is unavailable")
	}
	return name, nil
}

// readClaims reads the claims lkedge checks; others are ignored.
func readClaims(p *fastjson.Parser, seg string) (claims, error) {
	var c claims
	o, err := segment(p, seg, "claims")
	if err != nil {
		return c, err
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		switch string(k) {
		case "iss":
			err = c.text(v, 1, &c.issuer, "iss")
		case "sha256":
			err = c.text(v, 2, &c.sha256, "sha256")
		case "exp":
			err = c.number(v, 4, &c.exp, "exp")
		case "nbf":
			err = c.number(v, 8, &c.nbf, "nbf")
		case "iat":
			err = c.number(v, 16, &c.iat, "iat")
		}
	})
	return c, err
}

func (c *claims) once(bit uint8, name string) error {
	if c.seen&bit != 0 {
		return malformed("claim %s given twice", name)
	}
	c.seen |= bit
	return nil
}

// text reads a string claim; null leaves it empty, as encoding/json does.
func (c *claims) text(v *fastjson.Value, bit uint8, dst *string, name string) error {
	if err := c.once(bit, name); err != nil {
		return err
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeString:
		*dst = string(v.GetStringBytes())
		return nil
	}
	return malformed("could not JSON decode claim %s: not a string", name)
}

// number reads a time claim; null leaves it missing.
func (c *claims) number(v *fastjson.Value, bit uint8, dst **float64, name string) error {
	if err := c.once(bit, name); err != nil {
		return err
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeNumber:
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return malformed("could not JSON decode claim %s: %v", name, err)
		}
		*dst = &f
		return nil
	}
	return malformed("could not JSON decode claim %s: not a number", name)
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
