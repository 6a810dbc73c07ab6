package sdk

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lkedge/lkedge/sdk/internal/hostcall"
)

// Request is an HTTP request the host will send for the plugin, reliably:
// it is stored before the event counts as handled, retried with back-off
// and dead-lettered if it never succeeds.
type Request struct {
	a   action
	err error
}

// action is the ABI's JSON form of an HTTP action (docs/abi.md).
type action struct {
	Type           string      `json:"type"`
	Method         string      `json:"method"`
	URL            string      `json:"url"`
	Headers        [][2]string `json:"headers,omitempty"`
	Body           string      `json:"body,omitempty"`
	Sign           *Signature  `json:"sign,omitempty"`
	IdempotencyKey string      `json:"idempotencyKey,omitempty"`
	Resource       string      `json:"resource,omitempty"`
}

// Signature asks the host to sign the request with a secret that the plugin
// knows only by name (plugins.yaml maps names to env variables or files).
type Signature struct {
	// Scheme is "hmac-sha256-hex" or "standard-webhooks".
	Scheme string `json:"scheme"`
	Secret string `json:"secret"`
	// For hmac-sha256-hex: the signature and timestamp headers (default
	// X-Signature and X-Timestamp), the signed message template (default
	// "{timestamp}.{body}") and the timestamp (default: when the request
	// was stored, in Unix milliseconds, the same on every retry).
	Header          string `json:"header,omitempty"`
	TimestampHeader string `json:"timestampHeader,omitempty"`
	Template        string `json:"template,omitempty"`
	Timestamp       string `json:"timestamp,omitempty"`
}

// NewRequest starts a request.
func NewRequest(method, url string) *Request {
	return &Request{a: action{Type: "http", Method: method, URL: url}}
}

// POST starts a POST request.
func POST(url string) *Request { return NewRequest("POST", url) }

// Header adds a header.
func (r *Request) Header(key, value string) *Request {
	r.a.Headers = append(r.a.Headers, [2]string{key, value})
	return r
}

// Body sets the body.
func (r *Request) Body(b []byte) *Request {
	r.a.Body = string(b)
	return r
}

// JSON sets the body to v encoded as JSON, with Content-Type
// application/json.
func (r *Request) JSON(v any) *Request {
	b, err := json.Marshal(v)
	if err != nil {
		r.err = fmt.Errorf("encode body: %w", err)
		return r
	}
	return r.Header("Content-Type", "application/json").Body(b)
}

// Sign has the host sign the request at send time.
func (r *Request) Sign(s Signature) *Request {
	r.a.Sign = &s
	return r
}

// SignHMAC signs with hex HMAC-SHA256 over "<timestamp>.<body>" in
// X-Signature, the timestamp in X-Timestamp (OpenVidu Meet's scheme).
func (r *Request) SignHMAC(secret string) *Request {
	return r.Sign(Signature{Scheme: "hmac-sha256-hex", Secret: secret})
}

// SignStandardWebhooks signs per the Standard Webhooks specification
// (webhook-id, webhook-timestamp, webhook-signature).
func (r *Request) SignStandardWebhooks(secret string) *Request {
	return r.Sign(Signature{Scheme: "standard-webhooks", Secret: secret})
}

// IdempotencyKey sets the key receivers use to drop duplicates; the host
// sends it as Idempotency-Key (and as webhook-id for Standard Webhooks).
// By default it is derived from the event id.
func (r *Request) IdempotencyKey(key string) *Request {
	r.a.IdempotencyKey = key
	return r
}

// Errors the host can answer Send with.
var (
	ErrMalformed  = errors.New("lkedge refused the request as malformed")
	ErrTooMany    = errors.New("too many requests for one event")
	ErrTooLarge   = errors.New("request too large")
	ErrNotAllowed = errors.New("destination not in the plugin's allow-list")
)

// Send hands the request to the host. It returns once the host accepted it;
// delivery happens after the handler returns.
func (r *Request) Send() error {
	if r.err != nil {
		return r.err
	}
	b, err := json.Marshal(&r.a)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	switch st := hostcall.Current().Emit(b); st {
	case hostcall.OK:
		return nil
	case hostcall.Malformed:
		return ErrMalformed
	case hostcall.TooMany:
		return ErrTooMany
	case hostcall.TooLarge:
		return ErrTooLarge
	case hostcall.NotAllowed:
		return fmt.Errorf("%w: %s", ErrNotAllowed, r.a.URL)
	default:
		return fmt.Errorf("lkedge refused the request (status %d)", st)
	}
}
