// Package node is hashgrid's adapter for a Bitcoin node: a JSON-RPC 1.0 client over HTTP
// that speaks to both Bitcoin Core (bitcoind) and btcd, a failover Set over several nodes,
// and a watcher that turns GBT long polling, polling and ZMQ hashblock into a stream of
// block templates.
//
// Differences between the two nodes that this package hides:
//   - btcd answers only requests carrying both "jsonrpc" and "id", with positional params;
//     anything else gets an empty reply, which is reported as ErrEmptyReply.
//   - default_witness_commitment is the full output script on Bitcoin Core and the bare
//     32-byte hash on btcd (and absent there when no transaction has a witness).
//     Template.WitnessCommitment is always the full script, computed when missing.
//   - getblockheader for a block off the main chain answers confirmations -1 on Bitcoin
//     Core and an internal error on btcd; BlockHeaderVerbose reports -1 for both.
//
// Replies are treated as untrusted input: sizes are bounded (MaxReplyBytes) and templates
// are checked (hex, lengths, txids against the transaction data, the witness commitment,
// bits against target) so that a lying node yields an error, never a bad job.
//
// The package leaves out wallet calls, websocket notifications and coinbase building (the
// pool builds its own coinbase from Template.CoinbaseValue).
package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Limits and defaults of a Client.
const (
	// MaxReplyBytes bounds one RPC reply. A full 4 MWU template is about 8 MB of hex
	// plus per-transaction fields; 64 MiB leaves room without letting a node exhaust memory.
	MaxReplyBytes = 64 << 20
	// DefaultTimeout bounds an ordinary call, connection included.
	DefaultTimeout = 15 * time.Second
	// DefaultLongPollTimeout bounds a GBT long poll. Nodes hold it until the tip or the
	// mempool changes; Bitcoin Core checks the mempool once a minute.
	DefaultLongPollTimeout = 5 * time.Minute
	// maxErrorBody is how much of a non-JSON HTTP error body is kept for the error text.
	maxErrorBody = 512
)

// ErrEmptyReply is returned when the node answers with an empty body. btcd does this for
// a request it cannot parse as JSON-RPC (no "jsonrpc" or "id", or named params).
var ErrEmptyReply = errors.New("empty reply (btcd answers a request it cannot parse this way)")

// ErrReplyTooLarge is returned when a reply exceeds the client's size limit.
var ErrReplyTooLarge = errors.New("reply too large")

// RPCError is an error object returned by the node ({"code":…,"message":…}).
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("rpc error %d: %s", e.Code, e.Message) }

// Well-known RPC error codes.
const (
	CodeMethodNotFound    = -32601
	CodeInternal          = -32603
	CodeInvalidParameter  = -8
	CodeClientInInitialDL = -10 // "downloading blocks": the tip is older than 24 hours
	CodeOutOfRange        = -1  // btcd: block height out of range
)

// HTTPError is a non-200 HTTP answer without a JSON-RPC body (a bad password gives 401).
type HTTPError struct {
	StatusCode int
	Body       string // first bytes of the body, for the log
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("node: http %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("node: http %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Body)
}

// Observer is told about every RPC call: method name, duration and error (nil on success).
// The pool uses it to export node latency and errors; it must not block.
type Observer func(method string, dur time.Duration, err error)

// Clock tells the time; tests inject their own.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Client is a JSON-RPC client for one node. It is safe for concurrent use.
type Client struct {
	endpoint        string // URL without credentials
	user, pass      string
	redacted        string
	http            *http.Client
	timeout         time.Duration
	longPollTimeout time.Duration
	maxReply        int64
	observe         Observer
	clock           Clock
	id              atomic.Uint64
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout sets the per-call timeout of ordinary calls.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithLongPollTimeout sets the timeout of GBT long polls.
func WithLongPollTimeout(d time.Duration) Option { return func(c *Client) { c.longPollTimeout = d } }

// WithObserver sets the function told about every call.
func WithObserver(o Observer) Option { return func(c *Client) { c.observe = o } }

// WithHTTPClient replaces the HTTP client (its Timeout should be zero: calls carry their own).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithMaxReply sets the reply size limit in bytes.
func WithMaxReply(n int64) Option { return func(c *Client) { c.maxReply = n } }

// WithClock sets the clock used to time calls.
func WithClock(clk Clock) Option { return func(c *Client) { c.clock = clk } }

// NewClient returns a client for the node at rawURL, http://USER:PASS@HOST:PORT.
func NewClient(rawURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error carries the URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("node: bad url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("node: bad url %s: scheme must be http or https", redact(u))
	}
	if u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("node: bad url %s: want host:port", redact(u))
	}
	if u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("node: bad url %s: want USER:PASS@ credentials", redact(u))
	}
	c := &Client{
		user:            u.User.Username(),
		redacted:        redact(u),
		timeout:         DefaultTimeout,
		longPollTimeout: DefaultLongPollTimeout,
		maxReply:        MaxReplyBytes,
		clock:           SystemClock{},
	}
	c.pass, _ = u.User.Password()
	bare := *u
	bare.User = nil
	c.endpoint = bare.String()
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = &http.Client{Transport: &http.Transport{
			Proxy:               nil, // the node is reached directly, never through an environment proxy
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	if c.timeout <= 0 || c.longPollTimeout <= 0 || c.maxReply <= 0 {
		return nil, fmt.Errorf("node: %s: timeouts and reply limit must be positive", c.redacted)
	}
	return c, nil
}

func redact(u *url.URL) string {
	r := *u
	if r.User == nil {
		return r.String()
	}
	r.User = nil
	scheme, rest, _ := strings.Cut(r.String(), "://")
	return scheme + "://***@" + rest
}

// String returns the node's URL with the credentials redacted.
func (c *Client) String() string { return c.redacted }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
	ID     json.RawMessage `json:"id"`
}

// Call performs one JSON-RPC call with the client's ordinary timeout and decodes the
// result into result (which may be nil). Errors are wrapped with the method name.
func (c *Client) Call(ctx context.Context, method string, params []any, result any) error {
	return c.call(ctx, c.timeout, method, params, result)
}

func (c *Client) call(ctx context.Context, timeout time.Duration, method string, params []any, result any) error {
	start := c.clock.Now()
	err := c.do(ctx, timeout, method, params, result)
	if err != nil {
		err = fmt.Errorf("%s: %w", method, err)
	}
	if c.observe != nil {
		c.observe(method, c.clock.Now().Sub(start), err)
	}
	return err
}

func (c *Client) do(ctx context.Context, timeout time.Duration, method string, params []any, result any) error {
	if params == nil {
		params = []any{}
	}
	id := c.id.Add(1)
	body, err := json.Marshal(request{JSONRPC: "1.0", ID: id, Method: method, Params: params})
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("node %s: %w", c.redacted, err)
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("node %s: timeout after %s: %w", c.redacted, timeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("node %s: %w", c.redacted, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxReply+1))
	if err != nil {
		return fmt.Errorf("node %s: read reply: %w", c.redacted, unwrapURLError(err))
	}
	if int64(len(data)) > c.maxReply {
		return fmt.Errorf("node %s: %w (limit %d bytes)", c.redacted, ErrReplyTooLarge, c.maxReply)
	}
	if err := decodeReply(resp.StatusCode, data, id, result); err != nil {
		return fmt.Errorf("node %s: %w", c.redacted, err)
	}
	return nil
}

// decodeReply interprets one HTTP answer. Bitcoin Core sends RPC errors with status 500 or
// 404 and a JSON body, so the body is looked at before the status.
func decodeReply(status int, data []byte, id uint64, result any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		if status != http.StatusOK {
			return &HTTPError{StatusCode: status}
		}
		return ErrEmptyReply
	}
	var r reply
	if err := json.Unmarshal(data, &r); err != nil || (r.Result == nil && r.Error == nil) {
		if status != http.StatusOK {
			return &HTTPError{StatusCode: status, Body: snippet(data)}
		}
		if err != nil {
			return fmt.Errorf("bad reply: %w", err)
		}
		return errors.New("bad reply: neither result nor error")
	}
	if got := string(r.ID); got != strconv.FormatUint(id, 10) {
		return fmt.Errorf("bad reply: id %s, want %d", snippet(r.ID), id)
	}
	if r.Error != nil {
		return r.Error
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(r.Result, result); err != nil {
		return fmt.Errorf("bad result: %w", err)
	}
	return nil
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > maxErrorBody {
		b = b[:maxErrorBody]
	}
	return strconv.Quote(string(b))
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the endpoint.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
