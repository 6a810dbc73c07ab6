package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/lkedge/lkedge/sdk/internal/hostcall"
	"github.com/lkedge/lkedge/sdk/internal/jsonx"
)

// Request is an HTTP request the host will send for the plugin, reliably:
// it is stored before the event counts as handled, retried with back-off
// and dead-lettered if it never succeeds. Build it with POST or NewRequest
// and hand it over with Send; an error in a step surfaces at Send.
type Request struct {
	method  string
	url     string
	headers [][2]string
	// headerBuf holds the first headers, and sign is a value, so that a
	// typical request is one allocation: in wasm each costs more than
	// encoding the request. (A Request is used through its pointer; a
	// copy would share headerBuf.)
	headerBuf      [2][2]string
	body           []byte
	sign           Signature
	signed         bool
	idempotencyKey string
	err            error
}

// Signature asks the host to sign the request with a secret that the plugin
// knows only by name (plugins.yaml maps names to env variables or files),
// so no secret ever enters the sandbox.
type Signature struct {
	// Scheme is SchemeHMAC or SchemeStandardWebhooks.
	Scheme string `json:"scheme"`
	// Secret is the secret's name in plugins.yaml.
	Secret string `json:"secret"`
	// For hmac-sha256-hex: the signature and timestamp headers (default
	// X-Signature and X-Timestamp), the signed message template (default
	// "{timestamp}.{body}") and the timestamp (default: when the request
	// was stored, in Unix milliseconds, the same on every retry).
	// Standard Webhooks fixes all four, so they must stay empty for it.
	Header          string `json:"header,omitempty"`
	TimestampHeader string `json:"timestampHeader,omitempty"`
	Template        string `json:"template,omitempty"`
	Timestamp       string `json:"timestamp,omitempty"`
}

// Signing schemes the host knows.
const (
	// SchemeHMAC is a lower-case hex HMAC-SHA256 of "{timestamp}.{body}"
	// in X-Signature, with the timestamp in X-Timestamp: OpenVidu Meet's
	// scheme.
	SchemeHMAC = "hmac-sha256-hex"
	// SchemeStandardWebhooks is https://www.standardwebhooks.com's v1
	// signature (webhook-id, webhook-timestamp, webhook-signature).
	SchemeStandardWebhooks = "standard-webhooks"
)

// NewRequest starts a request.
func NewRequest(method, url string) *Request {
	r := &Request{method: method, url: url}
	r.headers = r.headerBuf[:0]
	return r
}

// POST starts a POST request, what webhooks almost always are.
func POST(url string) *Request { return NewRequest("POST", url) }

// Header adds a header; a name may repeat.
func (r *Request) Header(key, value string) *Request {
	r.headers = append(r.headers, [2]string{key, value})
	return r
}

// Body sets the body, byte for byte.
func (r *Request) Body(b []byte) *Request {
	r.body = b
	return r
}

// JSON sets the body to v encoded as JSON, with Content-Type
// application/json. A json.RawMessage is sent as it is (after checking that
// it is JSON); anything else goes through encoding/json, whose reflection is
// slow in a plugin, so a plugin on a hot path builds its body itself and
// passes it as a json.RawMessage. <, > and & are not HTML-escaped, in v's
// strings or in a json.RawMessage inside v (such as Meet.Recording): the
// body keeps them as JavaScript's JSON.stringify does, and as the event had
// them.
func (r *Request) JSON(v any) *Request {
	b, ok := v.(json.RawMessage)
	if ok {
		if !jsonx.Valid(b) {
			r.err = errors.New("encode body: the json.RawMessage is not valid JSON")
			return r
		}
	} else {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			r.err = wrap("encode body", err)
			return r
		}
		b = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	return r.Header("Content-Type", "application/json").Body(b)
}

// AppendJSONString appends s to dst as a JSON string, for plugins that
// build their bodies themselves: in a plugin, encoding/json's reflection
// is slow even for one string, and a module that does not link it is
// smaller. The bytes are encoding/json's with HTML escaping off (those of
// JSON below): invalid UTF-8 becomes U+FFFD; control characters, U+2028
// and U+2029 are escaped; <, > and & are not.
func AppendJSONString(dst []byte, s string) []byte { return jsonx.AppendString(dst, s) }

// Sign has the host sign the request at send time.
func (r *Request) Sign(s Signature) *Request {
	r.sign, r.signed = s, true
	return r
}

// SignHMAC signs with hex HMAC-SHA256 over "<timestamp>.<body>" in
// X-Signature, the timestamp in X-Timestamp (OpenVidu Meet's scheme), with
// the secret named secret.
func (r *Request) SignHMAC(secret string) *Request {
	return r.Sign(Signature{Scheme: SchemeHMAC, Secret: secret})
}

// SignStandardWebhooks signs per the Standard Webhooks specification
// (webhook-id, webhook-timestamp, webhook-signature) with the secret named
// secret, a whsec_ value.
func (r *Request) SignStandardWebhooks(secret string) *Request {
	return r.Sign(Signature{Scheme: SchemeStandardWebhooks, Secret: secret})
}

// IdempotencyKey sets the key receivers use to drop duplicates; the host
// sends it as Idempotency-Key (and as webhook-id for Standard Webhooks).
// By default the host derives one from the event id, so a request sent
// again after a crash carries the same key.
func (r *Request) IdempotencyKey(key string) *Request {
	r.idempotencyKey = key
	return r
}

// Errors the host can answer Send with.
var (
	ErrMalformed  = errors.New("lkedge refused the request as malformed")
	ErrTooMany    = errors.New("too many requests for one event")
	ErrTooLarge   = errors.New("request too large")
	ErrNotAllowed = errors.New("destination not in the plugin's allow-list")
	ErrNoEvent    = errors.New("no event is being handled (Send outside a handler)")
)

// Send hands the request to the host. It returns once the host accepted it;
// delivery happens after the handler returns.
func (r *Request) Send() error {
	if r.err != nil {
		return r.err
	}
	// The action is encoded on the stack when it fits (hostcall.Emit does
	// not keep it).
	var buf [256]byte
	switch st := hostcall.Emit(r.appendAction(buf[:0]), r.body); st {
	case hostcall.OK:
		return nil
	case hostcall.NoEvent:
		return ErrNoEvent
	case hostcall.Malformed:
		return ErrMalformed
	case hostcall.TooMany:
		return ErrTooMany
	case hostcall.TooLarge:
		return ErrTooLarge
	case hostcall.NotAllowed:
		return detail(ErrNotAllowed, r.url)
	default:
		return errors.New("lkedge refused the request (status " + strconv.Itoa(int(st)) + ")")
	}
}

// appendAction encodes the request as the ABI's action (docs/abi.md,
// wireAction in the host), without reflection. The body is not in it: it
// goes to the host as raw bytes beside the JSON (action_emit_body).
func (r *Request) appendAction(b []byte) []byte {
	b = append(b, `{"type":"http","method":`...)
	b = jsonx.AppendString(b, r.method)
	b = append(b, `,"url":`...)
	b = jsonx.AppendString(b, r.url)
	if len(r.headers) > 0 {
		b = append(b, `,"headers":[`...)
		for i, h := range r.headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = jsonx.AppendString(b, h[0])
			b = append(b, ',')
			b = jsonx.AppendString(b, h[1])
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	if s := &r.sign; r.signed {
		b = append(b, `,"sign":{"scheme":`...)
		b = jsonx.AppendString(b, s.Scheme)
		b = append(b, `,"secret":`...)
		b = jsonx.AppendString(b, s.Secret)
		for _, f := range [...]struct{ name, v string }{
			{"header", s.Header}, {"timestampHeader", s.TimestampHeader}, {"template", s.Template}, {"timestamp", s.Timestamp},
		} {
			if f.v != "" {
				b = append(b, ',')
				b = jsonx.AppendString(b, f.name)
				b = append(b, ':')
				b = jsonx.AppendString(b, f.v)
			}
		}
		b = append(b, '}')
	}
	if r.idempotencyKey != "" {
		b = append(b, `,"idempotencyKey":`...)
		b = jsonx.AppendString(b, r.idempotencyKey)
	}
	return append(b, '}')
}
