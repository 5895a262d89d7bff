package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/stratum"
)

// LoadConfig configures a load run.
type LoadConfig struct {
	URL      string
	User     string
	Password string
	Conns    int
	InFlight int           // submits outstanding per connection (submit mode)
	Duration time.Duration // submit mode: how long to submit
	// DialRate bounds new connections per second so the server's accept queue is not
	// the thing measured; 0 means 2000/s.
	DialRate int
	// Notify mode (Linux). RxTimestamps dates each notify by the kernel's receive time
	// of the read that completed it (SO_TIMESTAMPNS) instead of the reader's clock, so
	// the figure is when the line reached the client's socket, not when the client got
	// round to reading it. Settle > 0 makes a reader that sees input after a quiet
	// spell wait Settle before reading, so that the client does not take a core from the
	// pool under test while the pool is still writing; use it with RxTimestamps.
	RxTimestamps bool
	Settle       time.Duration
	// SoloUsers authorizes connection i as SoloUser(i) instead of User: against a
	// SOLO pool (ServerConfig.Solo) every connection then has a coinbase of its own.
	SoloUsers bool
}

// SoloUser is the user connection i authorizes with LoadConfig.SoloUsers: a mainnet
// P2WPKH address of its own (key hash i+1), worker "bench".
func SoloUser(i int) string {
	var h [20]byte
	binary.BigEndian.PutUint64(h[12:], uint64(i)+1)
	a, err := address.NewAddressWitnessPubKeyHash(h[:], &chaincfg.MainNetParams)
	if err != nil {
		panic(err) // a 20-byte hash always makes an address
	}
	return a.EncodeAddress() + ".bench"
}

// userOf is the user connection i authorizes.
func (cfg LoadConfig) userOf(i int) string {
	if cfg.SoloUsers {
		return SoloUser(i)
	}
	return cfg.User
}

// watchOptions are the parts of a LoadConfig that watch uses.
type watchOptions struct {
	rxTimestamps bool
	settle       time.Duration
	unstamped    *atomic.Int64 // clean notifies the kernel gave no receive time for
	registered   func()        // called once every connection is watched
}

// Result is what a load run measured.
type Result struct {
	Conns     int     `json:"conns"`
	Submits   uint64  `json:"submits"`
	Accepted  uint64  `json:"accepted"`
	Rejected  uint64  `json:"rejected"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"submits_per_second"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// Dropped counts the connections the pool closed before the run's end.
	Dropped     int     `json:"dropped"`
	ConnectSecs float64 `json:"connect_seconds"`
	// Notify mode: UnixNano of the last connection's receipt of the awaited notify.
	LastNotifyUnixNano int64 `json:"last_notify_unix_nano,omitempty"`
	NotifyReceived     int   `json:"notify_received,omitempty"`
	// With RxTimestamps: notifies that came without a kernel receive time and were
	// dated by the reader's clock instead.
	NotifyUnstamped int64 `json:"notify_unstamped,omitempty"`
	// Submit and SubmitV2: bytes on the wire during the run, miner to pool and back.
	BytesUp   uint64 `json:"bytes_up,omitempty"`
	BytesDown uint64 `json:"bytes_down,omitempty"`
}

// conn is one load connection.
type conn struct {
	nc    net.Conn
	cnt   *countConn
	br    *bufio.Reader
	en2   int
	job   atomic.Value // string
	ntime atomic.Value // string
	clean chan int64   // UnixNano of clean_jobs notifies
}

func dialConn(ctx context.Context, addr, user, pass string) (*conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// nc stays the TCP connection itself, which notify mode's receive timestamps need;
	// submit mode reads and writes through the counter.
	cnt := &countConn{Conn: nc}
	c := &conn{nc: nc, cnt: cnt, br: bufio.NewReaderSize(cnt, 4096), clean: make(chan int64, 4)}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(nc, `{"id":1,"method":"mining.subscribe","params":["hashgrid-bench/1"]}`+"\n")
	auth, _ := json.Marshal([]string{user, pass})
	fmt.Fprintf(nc, `{"id":2,"method":"mining.authorize","params":%s}`+"\n", auth)
	// Some pools (ckpool) send the first notify before the authorize reply and
	// silently drop submits that arrive before authorization completes: wait for both.
	authorized := false
	for c.job.Load() == nil || !authorized {
		line, err := c.br.ReadBytes('\n')
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
		m, err := stratum.ParseMessage(line)
		if err != nil {
			continue
		}
		switch {
		case string(m.ID) == "1":
			var res []json.RawMessage
			if json.Unmarshal(m.Result, &res) != nil || len(res) < 3 {
				nc.Close()
				return nil, fmt.Errorf("subscribe: %s", line)
			}
			json.Unmarshal(res[2], &c.en2)
		case string(m.ID) == "2" && string(m.Result) != "true":
			nc.Close()
			return nil, fmt.Errorf("authorize refused: %s", line)
		case string(m.ID) == "2":
			authorized = true
		case m.Method == "mining.notify":
			c.onNotify(m)
		}
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *conn) onNotify(m *stratum.Message) {
	n, err := stratum.ParseNotify(m.Params)
	if err != nil {
		return
	}
	c.job.Store(n.JobID)
	c.ntime.Store(n.NTime)
	if n.CleanJobs {
		select {
		case c.clean <- time.Now().UnixNano():
		default:
		}
	}
}

func dialAll(ctx context.Context, cfg LoadConfig) ([]*conn, error) {
	addr, err := stratum.HostPort(cfg.URL)
	if err != nil {
		return nil, err
	}
	rate := cfg.DialRate
	if rate == 0 {
		rate = 2000
	}
	conns := make([]*conn, cfg.Conns)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	sem := make(chan struct{}, 64)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range conns {
		<-tick.C
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialConn(ctx, addr, cfg.userOf(i), cfg.Password)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		for _, c := range conns {
			if c != nil {
				c.nc.Close()
			}
		}
		return nil, fmt.Errorf("connect: %w", e.(error))
	}
	return conns, nil
}

// Submit runs the submit benchmark: every connection keeps InFlight submits
// outstanding for Duration.
func Submit(ctx context.Context, cfg LoadConfig) (Result, error) {
	if cfg.InFlight <= 0 {
		cfg.InFlight = 1
	}
	start := time.Now()
	conns, err := dialAll(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	res := Result{Conns: len(conns), ConnectSecs: time.Since(start).Seconds()}
	var up0, down0 uint64
	for _, c := range conns {
		up0 += c.cnt.up.Load()
		down0 += c.cnt.down.Load()
	}
	var submits, accepted, rejected atomic.Uint64
	var mu sync.Mutex
	var lat []int64 // microseconds
	t0 := time.Now()
	stop := t0.Add(cfg.Duration)
	var wg sync.WaitGroup
	for ci, c := range conns {
		wg.Go(func() {
			l, dropped := runConn(ctx, c, ci, cfg.InFlight, cfg.userOf(ci), stop, &submits, &accepted, &rejected)
			mu.Lock()
			lat = append(lat, l...)
			if dropped {
				res.Dropped++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	for _, c := range conns {
		c.nc.Close()
		res.BytesUp += c.cnt.up.Load()
		res.BytesDown += c.cnt.down.Load()
	}
	res.BytesUp -= up0
	res.BytesDown -= down0
	slices.Sort(lat)
	res.Submits, res.Accepted, res.Rejected = submits.Load(), accepted.Load(), rejected.Load()
	res.Seconds = el
	res.PerSecond = float64(res.Accepted+res.Rejected) / el
	if len(lat) > 0 {
		res.P50ms = float64(lat[len(lat)/2]) / 1000
		res.P99ms = float64(lat[len(lat)*99/100]) / 1000
		res.MaxMs = float64(lat[len(lat)-1]) / 1000
	}
	return res, nil
}

// drainWait bounds how long a connection waits for its outstanding replies after the
// run's end, so that the counts are complete.
const drainWait = 2 * time.Second

// runConn keeps inflight submits outstanding on one connection until stop and returns
// the reply latencies in microseconds, and whether the pool closed the connection
// first. It is one goroutine, like a miner's pipelined
// submit loop: every reply read frees a slot, and once the replies that arrived
// together are read, the submits that refill the slots leave in one write. The load
// client is meant to cost the machine little, so that the pool is what is measured.
func runConn(ctx context.Context, c *conn, ci, inflight int, user string, stop time.Time, submits, accepted, rejected *atomic.Uint64) (_ []int64, dropped bool) {
	var lat []int64
	// Send times by id: ids are consecutive, and at most inflight are outstanding.
	type slot struct {
		id uint64
		at time.Time
	}
	window := make([]slot, inflight)
	en2 := strings.Repeat("0", 2*c.en2-8) + fmt.Sprintf("%08x", uint32(ci))
	var id, nonce uint64 = 100, 0
	outstanding, free := 0, inflight
	var buf []byte
	stopping := false
	for {
		now := time.Now()
		if !stopping && (now.After(stop) || ctx.Err() != nil) {
			stopping = true
			c.nc.SetReadDeadline(now.Add(drainWait))
		}
		if !stopping && free > 0 {
			job, _ := c.job.Load().(string)
			ntime, _ := c.ntime.Load().(string)
			buf = buf[:0]
			for ; free > 0; free-- {
				id++
				nonce++
				buf = appendSubmit(buf, id, user, job, en2, ntime, uint32(nonce))
				window[id%uint64(inflight)] = slot{id, now}
				outstanding++
				submits.Add(1)
			}
			c.nc.SetWriteDeadline(now.Add(10 * time.Second))
			if _, err := c.cnt.Write(buf); err != nil {
				return lat, true
			}
		}
		if stopping && outstanding == 0 {
			return lat, false
		}
		// Read every reply that has arrived, then go back to refill the slots.
		for {
			line, err := c.br.ReadSlice('\n')
			if err != nil {
				// A reply still owed at drainWait is slow, not dropped.
				var ne net.Error
				return lat, !(stopping && errors.As(err, &ne) && ne.Timeout())
			}
			// Replies are most of the traffic: read their id and verdict without a
			// JSON decoder.
			rid, verdict, fast := quickReply(line)
			if !fast {
				m, err := stratum.ParseMessage(line)
				if err != nil {
					continue
				}
				if m.Method == "mining.notify" {
					c.onNotify(m)
				}
				if m.IsRequest() {
					continue
				}
				if rid, err = strconv.ParseUint(string(m.ID), 10, 64); err != nil {
					continue
				}
				verdict = string(m.Result) == "true"
			}
			if sl := &window[rid%uint64(inflight)]; sl.id == rid && rid != 0 {
				lat = append(lat, time.Since(sl.at).Microseconds())
				sl.id = 0
				outstanding--
				free++
				if verdict {
					accepted.Add(1)
				} else {
					rejected.Add(1)
				}
			}
			// Otherwise not a reply to one of our submits (a late handshake reply, say).
			if c.br.Buffered() == 0 && free > 0 {
				break
			}
		}
	}
}

// appendSubmit appends a mining.submit line, built without fmt so that the load
// client costs the machine little.
func appendSubmit(b []byte, id uint64, user, job, en2, ntime string, nonce uint32) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"method":"mining.submit","params":["`...)
	for _, f := range [...]string{user, job, en2, ntime} {
		b = append(b, f...)
		b = append(b, `","`...)
	}
	const hexdigits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, hexdigits[nonce>>uint(shift)&0xf])
	}
	return append(b, "\"]}\n"...)
}

// Hold opens Conns authorized connections, calls ready, and keeps them open (reading
// and discarding what the pool sends) until ctx ends. With awaitClean it instead
// waits, after ready, for one clean_jobs notify on every connection and reports when
// the last one arrived.
func Hold(ctx context.Context, cfg LoadConfig, awaitClean bool, ready func()) (Result, error) {
	start := time.Now()
	conns, err := dialAll(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	res := Result{Conns: len(conns), ConnectSecs: time.Since(start).Seconds()}
	for _, c := range conns {
		// Drain the initial clean notify of the handshake.
		select {
		case <-c.clean:
		default:
		}
	}
	stop := make(chan struct{})
	watched := make(chan error, 1)
	var unstamped atomic.Int64
	watching := make(chan struct{})
	go func() {
		opt := watchOptions{rxTimestamps: cfg.RxTimestamps, settle: cfg.Settle, unstamped: &unstamped,
			registered: func() { close(watching) }}
		watched <- watch(conns, opt, stop, func(i int, t int64) {
			select {
			case conns[i].clean <- t:
			default:
			}
		})
	}()
	defer func() {
		close(stop)
		<-watched
		for _, c := range conns {
			c.nc.Close()
		}
	}()
	// Ready once every socket is watched (with RxTimestamps, asking for receive times).
	select {
	case <-watching:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	ready()
	if !awaitClean {
		<-ctx.Done()
		return res, nil
	}
	var last int64
	for _, c := range conns {
		select {
		case t := <-c.clean:
			res.NotifyReceived++
			last = max(last, t)
		case <-ctx.Done():
			res.LastNotifyUnixNano = last
			res.NotifyUnstamped = unstamped.Load()
			return res, fmt.Errorf("notify: %d of %d connections got it before the deadline", res.NotifyReceived, len(conns))
		}
	}
	res.LastNotifyUnixNano = last
	res.NotifyUnstamped = unstamped.Load()
	return res, nil
}

// quickReply reads {"id":N,"result":true|...} as written by hashgrid and most pools,
// and replies with other key orders such as ckpool's
// {"reject-reason":"...","result":false,"error":null,"id":N}.
func quickReply(line []byte) (id uint64, accepted, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte(`{"id":`))
	if !found {
		return anyOrderReply(line)
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' && n < 18 {
		id = id*10 + uint64(rest[n]-'0')
		n++
	}
	if n == 0 {
		return 0, false, false
	}
	rest = rest[n:]
	switch {
	case bytes.HasPrefix(rest, []byte(`,"result":true,`)):
		return id, true, true
	case bytes.HasPrefix(rest, []byte(`,"result":null,`)), bytes.HasPrefix(rest, []byte(`,"result":false,`)):
		return id, false, true
	}
	return 0, false, false
}

// anyOrderReply reads a one-line reply whose keys are in any order: it has a
// numeric "id" and a "result" of true, false or null, and no "method".
func anyOrderReply(line []byte) (id uint64, accepted, ok bool) {
	if bytes.Contains(line, []byte(`"method"`)) {
		return 0, false, false
	}
	i := bytes.Index(line, []byte(`"id":`))
	if i < 0 {
		return 0, false, false
	}
	rest := line[i+len(`"id":`):]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' && n < 18 {
		id = id*10 + uint64(rest[n]-'0')
		n++
	}
	if n == 0 || n == len(rest) || (rest[n] != ',' && rest[n] != '}') {
		return 0, false, false
	}
	switch {
	case bytes.Contains(line, []byte(`"result":true`)):
		return id, true, true
	case bytes.Contains(line, []byte(`"result":false`)), bytes.Contains(line, []byte(`"result":null`)):
		return id, false, true
	}
	return 0, false, false
}

// isCleanNotify reports whether a line is a mining.notify whose clean_jobs (its last
// parameter) is true. Only that parameter ends in "true]": the merkle branch ends in a
// string. Keys may come in any order (ckpool puts "params" first).
func isCleanNotify(line []byte) bool {
	return bytes.Contains(line, []byte(`"mining.notify"`)) && bytes.Contains(line, []byte("true]"))
}
