package stratum

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Stratum error codes (the convention shared by pools and firmware).
const (
	ErrCodeOther         = 20
	ErrCodeJobNotFound   = 21
	ErrCodeDuplicate     = 22
	ErrCodeLowDifficulty = 23
	ErrCodeUnauthorized  = 24
	ErrCodeNotSubscribed = 25
)

// Error is a Stratum error reply: [code, "message", null] on the wire.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("stratum error %d: %s", e.Code, e.Message) }

// MarshalJSON writes the conventional array form.
func (e *Error) MarshalJSON() ([]byte, error) {
	msg, _ := json.Marshal(e.Message)
	return fmt.Appendf(nil, "[%d,%s,null]", e.Code, msg), nil
}

// UnmarshalJSON accepts the array form and, from lenient peers, an object form
// {"code":..,"message":..}.
func (e *Error) UnmarshalJSON(b []byte) error {
	var arr []json.RawMessage
	if err := json.Unmarshal(b, &arr); err == nil {
		if len(arr) < 2 {
			return errors.New("stratum: error array too short")
		}
		if err := json.Unmarshal(arr[0], &e.Code); err != nil {
			return fmt.Errorf("stratum: error code: %w", err)
		}
		if err := json.Unmarshal(arr[1], &e.Message); err != nil {
			return fmt.Errorf("stratum: error message: %w", err)
		}
		return nil
	}
	var obj struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("stratum: error: %w", err)
	}
	e.Code, e.Message = obj.Code, obj.Message
	return nil
}

// Message is one line of Stratum: a request or notification (Method set) or a response
// (Method empty). ID is kept raw so that replies echo exactly what the peer sent
// (cpuminer sends numbers, some firmware strings, notifications null).
type Message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// IsRequest reports whether m is a request or notification.
func (m *Message) IsRequest() bool { return m.Method != "" }

// ParseMessage decodes one line (without or with its trailing newline).
func ParseMessage(line []byte) (*Message, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, errors.New("stratum: empty line")
	}
	if line[0] != '{' {
		return nil, errors.New("stratum: line is not a JSON object")
	}
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("stratum: %w", err)
	}
	if len(m.ID) == 0 {
		m.ID = json.RawMessage("null")
	}
	if !validID(m.ID) {
		return nil, errors.New("stratum: id must be a number, a string or null")
	}
	if len(m.Params) > 0 && m.Params[0] != '[' && !bytes.Equal(m.Params, []byte("null")) {
		return nil, errors.New("stratum: params must be an array")
	}
	if bytes.Equal(m.Result, []byte("null")) {
		m.Result = nil
	}
	return &m, nil
}

func validID(id json.RawMessage) bool {
	switch id[0] {
	case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// StringParams decodes params as an array of JSON values, returning each as a string:
// strings as themselves, numbers and booleans in their JSON text, null as "".
// At most max elements are accepted.
func (m *Message) StringParams(max int) ([]string, error) {
	if len(m.Params) == 0 || bytes.Equal(m.Params, []byte("null")) {
		return nil, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(m.Params, &raw); err != nil {
		return nil, fmt.Errorf("stratum: params: %w", err)
	}
	if len(raw) > max {
		return nil, fmt.Errorf("stratum: %d params, at most %d", len(raw), max)
	}
	out := make([]string, len(raw))
	for i, r := range raw {
		switch {
		case len(r) > 0 && r[0] == '"':
			if err := json.Unmarshal(r, &out[i]); err != nil {
				return nil, fmt.Errorf("stratum: param %d: %w", i, err)
			}
		case bytes.Equal(r, []byte("null")):
		case len(r) > 0 && (r[0] == '[' || r[0] == '{'):
			out[i] = string(r)
		default:
			out[i] = string(r)
		}
	}
	return out, nil
}

// AppendResponse appends a response line (with newline) for id to dst. result must
// already be JSON; nil means null. errv, when non-nil, is sent as the error.
func AppendResponse(dst []byte, id json.RawMessage, result []byte, errv *Error) []byte {
	dst = append(dst, `{"id":`...)
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	dst = append(dst, id...)
	dst = append(dst, `,"result":`...)
	if result == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, result...)
	}
	dst = append(dst, `,"error":`...)
	if errv == nil {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(append(dst, '['), int64(errv.Code), 10)
		dst = append(dst, ',')
		dst = appendJSONString(dst, errv.Message)
		dst = append(dst, ",null]"...)
	}
	return append(dst, "}\n"...)
}

// appendJSONString appends s as encoding/json encodes it. Error messages are short
// printable ASCII, which needs no escaping and is copied as it is: every reject's reply
// carries one, and json.Marshal allocates for each.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// AppendNotification appends a server-to-client notification line (id null).
// params must be a JSON array.
func AppendNotification(dst []byte, method string, params []byte) []byte {
	dst = append(dst, `{"id":null,"method":`...)
	m, _ := json.Marshal(method)
	dst = append(dst, m...)
	dst = append(dst, `,"params":`...)
	dst = append(dst, params...)
	return append(dst, "}\n"...)
}

// AppendRequest appends a client request line with a numeric id.
func AppendRequest(dst []byte, id uint64, method string, params []byte) []byte {
	dst = strconv.AppendUint(append(dst, `{"id":`...), id, 10)
	dst = append(dst, `,"method":`...)
	m, _ := json.Marshal(method)
	dst = append(dst, m...)
	dst = append(dst, `,"params":`...)
	if params == nil {
		params = []byte("[]")
	}
	dst = append(dst, params...)
	return append(dst, "}\n"...)
}

// Notify is the content of a mining.notify.
type Notify struct {
	JobID        string
	PrevHash     string // 64 hex: header prevhash with each 4-byte word byte-swapped
	Coinb1       string // hex
	Coinb2       string // hex
	MerkleBranch []string
	Version      string // 8 hex, big-endian uint32
	NBits        string // 8 hex
	NTime        string // 8 hex
	CleanJobs    bool
}

// MarshalParams returns the JSON params array of a mining.notify.
func (n *Notify) MarshalParams() []byte {
	branch := n.MerkleBranch
	if branch == nil {
		branch = []string{}
	}
	b, _ := json.Marshal([]any{n.JobID, n.PrevHash, n.Coinb1, n.Coinb2, branch, n.Version, n.NBits, n.NTime, n.CleanJobs})
	return b
}

// ParseNotify decodes mining.notify params.
func ParseNotify(params json.RawMessage) (*Notify, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(params, &raw); err != nil {
		return nil, fmt.Errorf("stratum: notify: %w", err)
	}
	if len(raw) < 9 {
		return nil, fmt.Errorf("stratum: notify has %d params, want 9", len(raw))
	}
	var n Notify
	for i, dst := range []*string{&n.JobID, &n.PrevHash, &n.Coinb1, &n.Coinb2} {
		if err := json.Unmarshal(raw[i], dst); err != nil {
			return nil, fmt.Errorf("stratum: notify param %d: %w", i, err)
		}
	}
	if err := json.Unmarshal(raw[4], &n.MerkleBranch); err != nil {
		return nil, fmt.Errorf("stratum: notify merkle branch: %w", err)
	}
	for i, dst := range []*string{&n.Version, &n.NBits, &n.NTime} {
		if err := json.Unmarshal(raw[5+i], dst); err != nil {
			return nil, fmt.Errorf("stratum: notify param %d: %w", 5+i, err)
		}
	}
	if err := json.Unmarshal(raw[8], &n.CleanJobs); err != nil {
		return nil, fmt.Errorf("stratum: notify clean_jobs: %w", err)
	}
	if len(n.PrevHash) != 64 || len(n.Version) != 8 || len(n.NBits) != 8 || len(n.NTime) != 8 {
		return nil, errors.New("stratum: notify field of wrong length")
	}
	return &n, nil
}

// Submit is the content of a mining.submit.
type Submit struct {
	Worker      string
	JobID       string
	Extranonce2 string // hex
	NTime       string // 8 hex
	Nonce       string // 8 hex
	VersionBits string // 8 hex, or "" when not rolling versions
}

// MaxSubmitParams bounds the parameters of mining.submit (some firmware appends extras).
const MaxSubmitParams = 8

// ParseSubmit decodes mining.submit params.
func ParseSubmit(m *Message) (*Submit, error) {
	p, err := m.StringParams(MaxSubmitParams)
	if err != nil {
		return nil, err
	}
	if len(p) < 5 {
		return nil, fmt.Errorf("stratum: submit has %d params, want at least 5", len(p))
	}
	s := &Submit{Worker: p[0], JobID: p[1], Extranonce2: p[2], NTime: p[3], Nonce: p[4]}
	if len(p) > 5 {
		s.VersionBits = p[5]
	}
	return s, nil
}

// MarshalParams returns the JSON params of a mining.submit.
func (s *Submit) MarshalParams() []byte {
	v := []string{s.Worker, s.JobID, s.Extranonce2, s.NTime, s.Nonce}
	if s.VersionBits != "" {
		v = append(v, s.VersionBits)
	}
	b, _ := json.Marshal(v)
	return b
}
