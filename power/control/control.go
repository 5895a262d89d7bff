// Package control speaks the cgminer JSON API on TCP (port 4028 by default) to mining
// machines: status (summary, power, config), and the commands that curtail and resume
// them and set their power profile, in two dialects: LuxOS (curtail sleep/wakeup and
// profileset, privileged by a session token from logon) and cgminer/BOSminer
// (pause/resume, no profiles).
//
// One request per connection, as cgminer serves it: the reply is read until the peer
// closes or sends a NUL, up to MaxReplyBytes. It leaves out Braiins OS gRPC and
// Whatsminer's encrypted commands.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Limits of a conversation with a machine.
const (
	MaxReplyBytes  = 1 << 20
	DefaultTimeout = 2 * time.Second
)

// Dialects.
const (
	LuxOS   = "luxos"
	CGMiner = "cgminer"
)

// ErrUnsupported is returned for a command the dialect lacks.
var ErrUnsupported = errors.New("control: not supported by this firmware dialect")

// StatusEntry is one element of a reply's STATUS array.
type StatusEntry struct {
	Status      string `json:"STATUS"` // S, I, W, E, F
	When        int64  `json:"When"`
	Code        int    `json:"Code"`
	Msg         string `json:"Msg"`
	Description string `json:"Description"`
}

// Error is a machine's refusal of a command.
type Error struct {
	Command string
	Status  StatusEntry
}

func (e *Error) Error() string {
	return fmt.Sprintf("control: %s: %s (code %d): %s", e.Command, e.Status.Status, e.Status.Code, e.Status.Msg)
}

// Client talks to one machine.
type Client struct {
	Addr    string
	Dialect string
	Timeout time.Duration

	mu      sync.Mutex
	session string
}

// NewClient returns a client for the machine at addr ("host:port").
func NewClient(addr, dialect string, timeout time.Duration) (*Client, error) {
	if dialect != LuxOS && dialect != CGMiner {
		return nil, fmt.Errorf("control: unknown dialect %q", dialect)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("control: address %q: %w", addr, err)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{Addr: addr, Dialect: dialect, Timeout: timeout}, nil
}

// Request is what goes on the wire.
type Request struct {
	Command   string `json:"command"`
	Parameter string `json:"parameter,omitempty"`
}

// Do sends one command and returns the reply's sections by name. A reply whose STATUS
// is E or F becomes an *Error. command may join several with '+'; the reply then holds
// one section per command, each with its own STATUS.
func (c *Client) Do(ctx context.Context, command, parameter string) (map[string]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %w", c.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req, _ := json.Marshal(Request{Command: command, Parameter: parameter})
	if _, err := conn.Write(req); err != nil {
		return nil, fmt.Errorf("control: %s: %s: %w", c.Addr, command, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	raw, err := io.ReadAll(io.LimitReader(conn, MaxReplyBytes+1))
	if err != nil && len(raw) == 0 {
		return nil, fmt.Errorf("control: %s: %s: %w", c.Addr, command, err)
	}
	if len(raw) > MaxReplyBytes {
		return nil, fmt.Errorf("control: %s: %s: reply over %d bytes", c.Addr, command, MaxReplyBytes)
	}
	return parseReply(command, raw)
}

// parseReply decodes a reply and checks its STATUS sections.
func parseReply(command string, raw []byte) (map[string]json.RawMessage, error) {
	raw = bytes.TrimRight(raw, "\x00 \r\n\t")
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("control: %s: bad reply: %w", command, err)
	}
	check := func(name string, sec map[string]json.RawMessage) error {
		var st []StatusEntry
		if err := json.Unmarshal(sec["STATUS"], &st); err != nil || len(st) == 0 {
			return fmt.Errorf("control: %s: reply without STATUS", name)
		}
		if st[0].Status == "E" || st[0].Status == "F" {
			return &Error{Command: name, Status: st[0]}
		}
		return nil
	}
	if !strings.Contains(command, "+") {
		return top, check(command, top)
	}
	// Multiple commands: {"summary":[{STATUS..., SUMMARY...}], "power":[...]}.
	out := map[string]json.RawMessage{}
	for _, name := range strings.Split(command, "+") {
		var secs []map[string]json.RawMessage
		if err := json.Unmarshal(top[name], &secs); err != nil || len(secs) == 0 {
			return nil, fmt.Errorf("control: %s: reply without section %q", command, name)
		}
		if err := check(name, secs[0]); err != nil {
			return nil, err
		}
		for k, v := range secs[0] {
			if k != "STATUS" && k != "id" {
				out[k] = v
			}
		}
	}
	return out, nil
}

// Status is what a machine reports about itself.
type Status struct {
	HashrateGHs float64 // 5-second average
	Watts       float64
	Sleeping    bool
	Profile     string
}

// Status reads the machine's hashrate, power draw, and (LuxOS) sleep state and profile.
func (c *Client) Status(ctx context.Context) (Status, error) {
	cmd := "summary+stats"
	if c.Dialect == LuxOS {
		cmd = "summary+power+config"
	}
	secs, err := c.Do(ctx, cmd, "")
	if err != nil {
		return Status{}, err
	}
	var st Status
	var sum []struct {
		MHS5s float64 `json:"MHS 5s"`
	}
	if err := json.Unmarshal(secs["SUMMARY"], &sum); err != nil || len(sum) == 0 {
		return Status{}, fmt.Errorf("control: %s: summary without SUMMARY", c.Addr)
	}
	st.HashrateGHs = sum[0].MHS5s / 1000
	if c.Dialect == LuxOS {
		var pw []struct {
			Watts float64 `json:"Watts"`
		}
		if err := json.Unmarshal(secs["POWER"], &pw); err != nil || len(pw) == 0 {
			return Status{}, fmt.Errorf("control: %s: power without POWER", c.Addr)
		}
		st.Watts = pw[0].Watts
		var cfg []struct {
			Profile     string `json:"Profile"`
			CurtailMode string `json:"CurtailMode"`
		}
		if err := json.Unmarshal(secs["CONFIG"], &cfg); err != nil || len(cfg) == 0 {
			return Status{}, fmt.Errorf("control: %s: config without CONFIG", c.Addr)
		}
		st.Profile = cfg[0].Profile
		st.Sleeping = cfg[0].CurtailMode == "sleep"
		return st, nil
	}
	var stats []struct {
		Power  float64 `json:"Power"`
		Paused bool    `json:"Paused"`
	}
	if err := json.Unmarshal(secs["STATS"], &stats); err != nil || len(stats) == 0 {
		return Status{}, fmt.Errorf("control: %s: stats without STATS", c.Addr)
	}
	st.Watts = stats[0].Power
	st.Sleeping = stats[0].Paused
	return st, nil
}

// logon returns the LuxOS session, opening one if needed.
func (c *Client) logon(ctx context.Context) (string, error) {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s != "" {
		return s, nil
	}
	secs, err := c.Do(ctx, "logon", "")
	if err != nil {
		return "", err
	}
	var ss []struct {
		SessionID string `json:"SessionID"`
	}
	if err := json.Unmarshal(secs["SESSION"], &ss); err != nil || len(ss) == 0 || ss[0].SessionID == "" {
		return "", fmt.Errorf("control: %s: logon without SessionID", c.Addr)
	}
	c.mu.Lock()
	c.session = ss[0].SessionID
	c.mu.Unlock()
	return ss[0].SessionID, nil
}

// privileged runs a LuxOS command that needs the session, logging on again once if
// the session was refused (the machine may have rebooted).
func (c *Client) privileged(ctx context.Context, command, arg string) error {
	for attempt := 0; ; attempt++ {
		s, err := c.logon(ctx)
		if err != nil {
			return err
		}
		_, err = c.Do(ctx, command, s+","+arg)
		var ce *Error
		if attempt == 0 && errors.As(err, &ce) && ce.Status.Code == CodeInvalidSession {
			c.mu.Lock()
			c.session = ""
			c.mu.Unlock()
			continue
		}
		return err
	}
}

// CodeInvalidSession is the status code LuxOS-style firmware (and minersim) returns for
// a missing or stale session token.
const CodeInvalidSession = 45

// Curtail puts the machine to sleep (LuxOS) or pauses mining (cgminer/BOSminer).
func (c *Client) Curtail(ctx context.Context) error {
	if c.Dialect == LuxOS {
		return c.privileged(ctx, "curtail", "sleep")
	}
	_, err := c.Do(ctx, "pause", "")
	return err
}

// Wake resumes mining.
func (c *Client) Wake(ctx context.Context) error {
	if c.Dialect == LuxOS {
		return c.privileged(ctx, "curtail", "wakeup")
	}
	_, err := c.Do(ctx, "resume", "")
	return err
}

// SetProfile selects a power profile (LuxOS profileset).
func (c *Client) SetProfile(ctx context.Context, profile string) error {
	if c.Dialect != LuxOS {
		return ErrUnsupported
	}
	if profile == "" || strings.ContainsAny(profile, ",\x00") {
		return fmt.Errorf("control: bad profile name %q", profile)
	}
	return c.privileged(ctx, "profileset", profile)
}
