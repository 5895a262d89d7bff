package stratum

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	URL          string // stratum+tcp://host:port (or host:port)
	User         string
	Password     string
	Agent        string
	VersionMask  uint32  // mask to request with mining.configure; 0 = no version rolling
	SuggestDiff  float64 // sent with mining.suggest_difficulty when > 0
	MinDiff      float64 // asked for with mining.configure's minimum-difficulty extension when > 0
	Extranonce   bool    // send mining.extranonce.subscribe
	DialTimeout  time.Duration
	CallTimeout  time.Duration // time to wait for a reply
	MaxLineBytes int
	Logger       *slog.Logger
}

// Work is what the server last told the client to work on.
type Work struct {
	Notify          *Notify
	Difficulty      float64 // in effect for this job
	Extranonce1     []byte
	Extranonce2Size int
	VersionMask     uint32
}

// Client is a Stratum V1 client: it connects, configures, subscribes and authorizes,
// then delivers work updates and submits shares. One Client is one connection; callers
// that want reconnection loop over Dial.
type Client struct {
	cfg ClientConfig
	nc  net.Conn
	log *slog.Logger

	wmu    sync.Mutex
	mu     sync.Mutex
	nextID uint64
	calls  map[uint64]chan *Message

	// protocol state, guarded by mu
	en1        []byte
	en2Size    int
	mask       uint32
	diff       float64
	nextDiff   float64
	reconnect  *Reconnect
	updates    chan Work
	done       chan struct{}
	err        error
	readerDone chan struct{}
}

// Reconnect is a client.reconnect request from the server.
type Reconnect struct {
	Host string
	Port int
	Wait time.Duration
}

// HostPort parses a Stratum URL into host:port.
func HostPort(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		raw = "stratum+tcp://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("stratum: url: %w", err)
	}
	switch u.Scheme {
	case "stratum+tcp", "tcp", "stratum":
	default:
		return "", fmt.Errorf("stratum: url scheme %q not supported (want stratum+tcp)", u.Scheme)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("stratum: url %q has no port", raw)
	}
	return u.Host, nil
}

// Dial connects and runs the handshake. Work updates arrive on Updates().
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	addr, err := HostPort(cfg.URL)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stratum: dial %s: %w", addr, err)
	}
	return NewClient(ctx, nc, cfg)
}

// NewClient runs the handshake on a connection the caller opened (cfg.URL and
// cfg.DialTimeout are not used), such as one end of a net.Pipe whose other end a
// Server serves with ServeConn. The Client owns nc from here: it is closed on error
// and by Close.
func NewClient(ctx context.Context, nc net.Conn, cfg ClientConfig) (*Client, error) {
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = 1 << 20 // a notify with a long merkle branch
	}
	if cfg.Agent == "" {
		cfg.Agent = "hashgrid"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:        cfg,
		nc:         nc,
		log:        cfg.Logger,
		calls:      make(map[uint64]chan *Message),
		updates:    make(chan Work, 4),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go c.readLoop()
	if err := c.handshake(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) handshake(ctx context.Context) error {
	var exts []string
	opts := map[string]any{}
	if c.cfg.VersionMask != 0 {
		exts = append(exts, "version-rolling")
		opts["version-rolling.mask"] = fmt.Sprintf("%08x", c.cfg.VersionMask)
		opts["version-rolling.min-bit-count"] = 2
	}
	if c.cfg.MinDiff > 0 {
		exts = append(exts, "minimum-difficulty")
		opts["minimum-difficulty.value"] = c.cfg.MinDiff
	}
	if len(exts) > 0 {
		params, err := json.Marshal([]any{exts, opts})
		if err != nil {
			return fmt.Errorf("stratum: configure: %w", err)
		}
		res, err := c.Call(ctx, "mining.configure", params)
		if err != nil {
			return fmt.Errorf("stratum: configure: %w", err)
		}
		var r map[string]any
		if json.Unmarshal(res, &r) == nil {
			if ok, _ := r["version-rolling"].(bool); ok {
				if ms, _ := r["version-rolling.mask"].(string); ms != "" {
					v, err := strconv.ParseUint(ms, 16, 32)
					if err == nil {
						c.mu.Lock()
						c.mask = uint32(v)
						c.mu.Unlock()
					}
				}
			}
		}
	}
	agent, _ := json.Marshal([]string{c.cfg.Agent})
	res, err := c.Call(ctx, "mining.subscribe", agent)
	if err != nil {
		return fmt.Errorf("stratum: subscribe: %w", err)
	}
	var sub []json.RawMessage
	if err := json.Unmarshal(res, &sub); err != nil || len(sub) < 3 {
		return fmt.Errorf("stratum: subscribe: unexpected result %s", res)
	}
	var en1hex string
	var en2size int
	if err := json.Unmarshal(sub[1], &en1hex); err != nil {
		return fmt.Errorf("stratum: subscribe: extranonce1: %w", err)
	}
	if err := json.Unmarshal(sub[2], &en2size); err != nil || en2size < 1 || en2size > 32 {
		return fmt.Errorf("stratum: subscribe: bad extranonce2 size %s", sub[2])
	}
	en1, err := decodeHex(en1hex, -1)
	if err != nil {
		return fmt.Errorf("stratum: subscribe: extranonce1: %w", err)
	}
	c.mu.Lock()
	c.en1, c.en2Size = en1, en2size
	c.mu.Unlock()
	if c.cfg.Extranonce {
		// Not every server knows it; an error here is no reason to give up.
		c.Call(ctx, "mining.extranonce.subscribe", []byte("[]"))
	}
	if c.cfg.SuggestDiff > 0 {
		p := strconv.AppendFloat([]byte("["), c.cfg.SuggestDiff, 'g', -1, 64)
		c.Call(ctx, "mining.suggest_difficulty", append(p, ']'))
	}
	auth, _ := json.Marshal([]string{c.cfg.User, c.cfg.Password})
	res, err = c.Call(ctx, "mining.authorize", auth)
	if err != nil {
		return fmt.Errorf("stratum: authorize: %w", err)
	}
	if string(res) != "true" {
		return fmt.Errorf("stratum: authorize %q: %w", c.cfg.User, ErrAuthorizeRefused)
	}
	return nil
}

// ErrAuthorizeRefused is returned (wrapped) by Dial when the server answers
// mining.authorize with false and no error (a refusal with an error returns the *Error).
var ErrAuthorizeRefused = errors.New("authorization refused")

// Extranonce returns extranonce1 and the extranonce2 size in effect.
func (c *Client) Extranonce() ([]byte, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.en1, c.en2Size
}

// VersionMask returns the mask the server granted.
func (c *Client) VersionMask() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mask
}

// Updates delivers each new job with the difficulty in effect for it. The channel is
// closed when the connection ends.
func (c *Client) Updates() <-chan Work { return c.updates }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ReconnectRequest returns the server's last client.reconnect, if any.
func (c *Client) ReconnectRequest() *Reconnect {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnect
}

// Close ends the connection and waits for the reader.
func (c *Client) Close() error {
	err := c.nc.Close()
	<-c.readerDone
	return err
}

// Call sends a request and waits for its response's result.
func (c *Client) Call(ctx context.Context, method string, params []byte) (json.RawMessage, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	id := c.nextID
	ch := make(chan *Message, 1)
	c.calls[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
	}()
	if err := c.write(AppendRequest(nil, id, method, params)); err != nil {
		return nil, err
	}
	t := time.NewTimer(c.cfg.CallTimeout)
	defer t.Stop()
	select {
	case m := <-ch:
		if m.Error != nil {
			return m.Result, m.Error
		}
		return m.Result, nil
	case <-c.done:
		return nil, c.Err()
	case <-t.C:
		return nil, fmt.Errorf("stratum: %s: no reply in %s", method, c.cfg.CallTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Submit sends a share and reports the server's verdict: nil for accepted, a *Error
// for a rejection, another error for a broken connection.
func (c *Client) Submit(ctx context.Context, s *Submit) error {
	res, err := c.Call(ctx, "mining.submit", s.MarshalParams())
	if err != nil {
		return err
	}
	if string(res) != "true" {
		return &Error{ErrCodeOther, "share not accepted: " + string(res)}
	}
	return nil
}

func (c *Client) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.cfg.CallTimeout))
	_, err := c.nc.Write(b)
	if err != nil {
		return fmt.Errorf("stratum: write: %w", err)
	}
	return nil
}

func (c *Client) readLoop() {
	defer close(c.readerDone)
	r := bufio.NewReaderSize(c.nc, 4096)
	var err error
	for {
		var line []byte
		line, err = readLimitedLine(r, c.cfg.MaxLineBytes)
		if err != nil {
			break
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		m, perr := ParseMessage(line)
		if perr != nil {
			c.log.Warn("stratum client: bad line from server", "err", perr)
			continue
		}
		if m.IsRequest() {
			c.handleServer(m)
			continue
		}
		id, perr := strconv.ParseUint(string(m.ID), 10, 64)
		if perr != nil {
			continue
		}
		c.mu.Lock()
		ch := c.calls[id]
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = fmt.Errorf("stratum: connection ended: %w", err)
	}
	c.mu.Unlock()
	close(c.done)
	close(c.updates)
}

func readLimitedLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > max {
			return nil, errors.New("stratum: line from server too long")
		}
		if err == nil {
			return buf, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func (c *Client) handleServer(m *Message) {
	switch m.Method {
	case "mining.set_difficulty":
		p, err := m.StringParams(4)
		if err != nil || len(p) < 1 {
			return
		}
		d, err := strconv.ParseFloat(p[0], 64)
		if err != nil || !(d > 0) {
			return
		}
		c.mu.Lock()
		c.nextDiff = d
		c.mu.Unlock()
	case "mining.notify":
		n, err := ParseNotify(m.Params)
		if err != nil {
			c.log.Warn("stratum client: bad notify", "err", err)
			return
		}
		c.mu.Lock()
		if c.nextDiff > 0 {
			c.diff = c.nextDiff
		}
		w := Work{Notify: n, Difficulty: c.diff, Extranonce1: c.en1, Extranonce2Size: c.en2Size, VersionMask: c.mask}
		c.mu.Unlock()
		// Keep only the newest work if the consumer is behind.
		for {
			select {
			case c.updates <- w:
				return
			default:
				select {
				case <-c.updates:
				default:
				}
			}
		}
	case "mining.set_extranonce":
		p, err := m.StringParams(4)
		if err != nil || len(p) < 2 {
			return
		}
		en1, err := decodeHex(p[0], -1)
		size, err2 := strconv.Atoi(p[1])
		if err != nil || err2 != nil || size < 1 || size > 32 {
			return
		}
		c.mu.Lock()
		c.en1, c.en2Size = en1, size
		c.mu.Unlock()
	case "mining.set_version_mask":
		p, err := m.StringParams(4)
		if err != nil || len(p) < 1 {
			return
		}
		v, err := strconv.ParseUint(p[0], 16, 32)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.mask = uint32(v)
		c.mu.Unlock()
	case "client.reconnect":
		p, _ := m.StringParams(4)
		rc := &Reconnect{}
		if len(p) > 0 {
			rc.Host = p[0]
		}
		if len(p) > 1 {
			rc.Port, _ = strconv.Atoi(p[1])
		}
		if len(p) > 2 {
			w, _ := strconv.Atoi(p[2])
			rc.Wait = time.Duration(w) * time.Second
		}
		c.mu.Lock()
		c.reconnect = rc
		c.mu.Unlock()
	case "client.show_message":
		p, _ := m.StringParams(4)
		if len(p) > 0 {
			c.log.Info("message from pool", "text", p[0])
		}
	}
}
