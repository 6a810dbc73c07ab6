package service

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/lkedge/lkedge/host/deliver"
)

// deadLetterView is a dead letter as the operator API shows it: lower-case
// keys, the body as text when it is text, durations as Go writes them
// ("300ms").
type deadLetterView struct {
	ID             string      `json:"id"`
	Plugin         string      `json:"plugin"`
	EventID        string      `json:"event_id"`
	Resource       string      `json:"resource,omitempty"`
	Method         string      `json:"method"`
	URL            string      `json:"url"`
	Headers        [][2]string `json:"headers,omitempty"`
	Body           string      `json:"body,omitempty"`
	BodyBase64     []byte      `json:"body_base64,omitempty"` // a body that is not UTF-8 text
	IdempotencyKey string      `json:"idempotency_key,omitempty"`
	Sign           *signView   `json:"sign,omitempty"`
	Policy         policyView  `json:"policy"`
	CreatedAt      time.Time   `json:"created_at"`
	Attempts       int         `json:"attempts"`
	LastError      string      `json:"last_error,omitempty"`
	LastStatus     int         `json:"last_status,omitempty"`
	DeadAt         time.Time   `json:"dead_at"`
}

type signView struct {
	Scheme          string `json:"scheme"`
	Secret          string `json:"secret"` // the secret's name, never its value
	Header          string `json:"header,omitempty"`
	TimestampHeader string `json:"timestamp_header,omitempty"`
	Template        string `json:"template,omitempty"`
	Timestamp       string `json:"timestamp,omitempty"`
}

type policyView struct {
	Attempts   int        `json:"attempts"`
	Backoff    duration   `json:"backoff"`
	MaxBackoff duration   `json:"max_backoff"`
	Schedule   []duration `json:"schedule,omitempty"`
	Timeout    duration   `json:"timeout"`
	Allow      []string   `json:"allow,omitempty"`
}

// duration is written as "300ms", not in nanoseconds.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func viewDeadLetter(dl deliver.DeadLetter) deadLetterView {
	d := dl.Delivery
	v := deadLetterView{
		ID: d.ID, Plugin: d.Plugin, EventID: d.EventID, Resource: d.Resource, Method: d.Method, URL: d.URL,
		Headers: d.Header, IdempotencyKey: d.IdempotencyKey, CreatedAt: d.CreatedAt,
		Attempts: dl.Attempts, LastError: dl.LastError, LastStatus: dl.LastStatus, DeadAt: dl.DeadAt,
		Policy: policyView{
			Attempts: d.Policy.Attempts, Backoff: duration(d.Policy.Backoff), MaxBackoff: duration(d.Policy.MaxBackoff),
			Timeout: duration(d.Policy.Timeout), Allow: d.Policy.Allow,
		},
	}
	for _, s := range d.Policy.Schedule {
		v.Policy.Schedule = append(v.Policy.Schedule, duration(s))
	}
	if utf8.Valid(d.Body) {
		v.Body = string(d.Body)
	} else {
		v.BodyBase64 = d.Body
	}
	if s := d.Sign; s != nil {
		v.Sign = &signView{Scheme: s.Scheme, Secret: s.Secret, Header: s.Header, TimestampHeader: s.TimestampHeader, Template: s.Template, Timestamp: s.Timestamp}
	}
	return v
}
