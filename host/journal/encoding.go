package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Record encodings, the payloads of the log's frames (segment.go).
//
//	record        = version(1)=1 | receivedAt unix ms int64 (8, BE) | uvarint len(id) | id | body
//	failed record = version(1)=1 | failedAt unix ms int64 (8, BE) | uvarint len(reason) | reason | record

const (
	recordVersion = 1
	failedVersion = 1
	headerLen     = 1 + 8 // version + unix ms
)

var be = binary.BigEndian

// encodeRecord returns the encoded record and the offset of the body in it.
func encodeRecord(receivedMs int64, id string, body []byte) ([]byte, int) {
	v := make([]byte, 0, headerLen+binary.MaxVarintLen64+len(id)+len(body))
	v = append(v, recordVersion)
	v = be.AppendUint64(v, uint64(receivedMs))
	v = binary.AppendUvarint(v, uint64(len(id)))
	v = append(v, id...)
	off := len(v)
	return append(v, body...), off
}

// recordID returns the event id of an encoded record, without copying its
// body.
func recordID(v []byte) (string, bool) {
	_, rest, err := decodeHeader(v, recordVersion)
	if err != nil {
		return "", false
	}
	id, _, err := splitLenPrefixed(rest, "event id")
	if err != nil || len(id) == 0 {
		return "", false
	}
	return string(id), true
}

// decodeRecord decodes a record value. It never trusts lengths read from v
// and copies the body out, so the record does not alias v.
func decodeRecord(seq uint64, v []byte) (Record, error) {
	ms, rest, err := decodeHeader(v, recordVersion)
	if err != nil {
		return Record{}, err
	}
	id, body, err := splitLenPrefixed(rest, "event id")
	if err != nil {
		return Record{}, err
	}
	if len(id) == 0 {
		return Record{}, errors.New("corrupt value: empty event id")
	}
	return Record{
		Seq:        seq,
		ID:         string(id),
		ReceivedAt: time.UnixMilli(ms).UTC(),
		Body:       clone(body),
	}, nil
}

func encodeFailed(failedMs int64, reason string, record []byte) []byte {
	v := make([]byte, 0, headerLen+binary.MaxVarintLen64+len(reason)+len(record))
	v = append(v, failedVersion)
	v = be.AppendUint64(v, uint64(failedMs))
	v = binary.AppendUvarint(v, uint64(len(reason)))
	v = append(v, reason...)
	return append(v, record...)
}

func decodeFailed(seq uint64, v []byte) (FailedRecord, error) {
	ms, rest, err := decodeHeader(v, failedVersion)
	if err != nil {
		return FailedRecord{}, err
	}
	reason, record, err := splitLenPrefixed(rest, "reason")
	if err != nil {
		return FailedRecord{}, err
	}
	rec, err := decodeRecord(seq, record)
	if err != nil {
		return FailedRecord{}, fmt.Errorf("embedded record: %w", err)
	}
	return FailedRecord{
		Record:   rec,
		Reason:   string(reason),
		FailedAt: time.UnixMilli(ms).UTC(),
	}, nil
}

func decodeHeader(v []byte, version byte) (ms int64, rest []byte, err error) {
	if len(v) < headerLen {
		return 0, nil, fmt.Errorf("corrupt value: %d bytes, shorter than the %d-byte header", len(v), headerLen)
	}
	if v[0] != version {
		return 0, nil, fmt.Errorf("corrupt value: unsupported encoding version %d", v[0])
	}
	return int64(be.Uint64(v[1:headerLen])), v[headerLen:], nil
}

// splitLenPrefixed splits a uvarint-length-prefixed field off the front of b.
func splitLenPrefixed(b []byte, what string) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, nil, fmt.Errorf("corrupt value: bad %s length", what)
	}
	b = b[k:]
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("corrupt value: %s length %d exceeds the %d remaining bytes", what, n, len(b))
	}
	return b[:n], b[n:], nil
}

func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// truncate cuts s to at most n bytes without leaving a partial UTF-8
// sequence at the end.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for i := 0; i < utf8.UTFMax-1 && len(s) > 0; i++ {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// encodedRecord returns the record embedded in an encoded failed record
// that decodeFailed has accepted.
func encodedRecord(failed []byte) []byte {
	_, record, _ := splitLenPrefixed(failed[headerLen:], "reason")
	return record
}
