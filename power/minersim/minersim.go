// Package minersim runs a fleet of emulated ASIC miners, each listening on its own
// loopback port and speaking the cgminer JSON API with the LuxOS extensions the
// controller uses: summary, devs, pools, stats, power, config, profiles, logon/logoff,
// curtail sleep/wakeup and profileset (privileged by the session token from logon), and
// cgminer/BOSminer pause/resume. A miner reports the hashrate and power of its profile,
// nothing while asleep, and full power without hashrate while it boots after waking.
// Any miner can be told to ignore commands (it acknowledges them and does nothing),
// to test that the controller notices.
//
// It emulates the control plane only: no Stratum work is done.
package minersim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Limits of the emulated API server.
const (
	MaxRequestBytes = 64 << 10
	ReadTimeout     = 5 * time.Second
	MaxConnsPerMinr = 64
	MaxMiners       = 10_000
)

// Profile is a power profile a miner can run.
type Profile struct {
	Name  string
	THs   float64
	Watts float64
}

// Config describes the fleet.
type Config struct {
	Count      int
	Host       string // default 127.0.0.1
	BasePort   int    // miner i listens on BasePort+i; 0 picks free ports
	Profiles   []Profile
	SleepWatts float64
	Boot       time.Duration
	Clock      func() time.Time
	Logger     *slog.Logger
}

// Fleet is a running set of emulated miners.
type Fleet struct {
	miners []*miner
	wg     sync.WaitGroup
	log    *slog.Logger
}

type miner struct {
	cfg     *Config
	ln      net.Listener
	started time.Time
	sem     chan struct{}

	mu       sync.Mutex
	asleep   bool
	profile  int
	wokeAt   time.Time
	ignore   bool
	session  string
	accepted int64
	commands int64
}

// State is a miner's state as the test harness sees it.
type State struct {
	Addr     string
	Asleep   bool
	Profile  string
	Ignore   bool
	Watts    float64
	GHs      float64
	Commands int64
}

// Start listens for every miner and serves until Close.
func Start(cfg Config) (*Fleet, error) {
	if cfg.Count <= 0 || cfg.Count > MaxMiners {
		return nil, fmt.Errorf("minersim: count must be in 1..%d", MaxMiners)
	}
	if len(cfg.Profiles) == 0 {
		return nil, fmt.Errorf("minersim: at least one profile")
	}
	for _, p := range cfg.Profiles {
		if p.Name == "" || !(p.THs > 0) || !(p.Watts > 0) {
			return nil, fmt.Errorf("minersim: profile %q: name, ths and watts required", p.Name)
		}
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{log: cfg.Logger}
	c := &cfg
	for i := range cfg.Count {
		port := 0
		if cfg.BasePort > 0 {
			port = cfg.BasePort + i
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(port)))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("minersim: miner %d: %w", i, err)
		}
		m := &miner{cfg: c, ln: ln, started: cfg.Clock(), sem: make(chan struct{}, MaxConnsPerMinr)}
		f.miners = append(f.miners, m)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(m)
		}()
	}
	return f, nil
}

// Addrs returns each miner's address.
func (f *Fleet) Addrs() []string {
	out := make([]string, len(f.miners))
	for i, m := range f.miners {
		out[i] = m.ln.Addr().String()
	}
	return out
}

// SetIgnore makes miner i acknowledge commands without obeying them.
func (f *Fleet) SetIgnore(i int, ignore bool) {
	m := f.miners[i]
	m.mu.Lock()
	m.ignore = ignore
	m.mu.Unlock()
}

// States returns a snapshot of every miner.
func (f *Fleet) States() []State {
	out := make([]State, len(f.miners))
	for i, m := range f.miners {
		m.mu.Lock()
		ghs, w := m.readingLocked()
		out[i] = State{Addr: m.ln.Addr().String(), Asleep: m.asleep, Profile: m.cfg.Profiles[m.profile].Name,
			Ignore: m.ignore, Watts: w, GHs: ghs, Commands: m.commands}
		m.mu.Unlock()
	}
	return out
}

// Close stops every miner and waits for their connections to finish.
func (f *Fleet) Close() error {
	for _, m := range f.miners {
		m.ln.Close()
	}
	f.wg.Wait()
	return nil
}

func (f *Fleet) serve(m *miner) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.log.Warn("minersim accept", "addr", m.ln.Addr().String(), "err", err)
			}
			return
		}
		select {
		case m.sem <- struct{}{}:
		default:
			conn.Close() // over the connection limit: drop the peer, not the miner
			continue
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer func() { <-m.sem }()
			m.handle(conn)
		}()
	}
}

func (m *miner) handle(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ReadTimeout))
	dec := json.NewDecoder(io.LimitReader(conn, MaxRequestBytes))
	var req struct {
		Command   string `json:"command"`
		Parameter string `json:"parameter"`
	}
	var reply any
	if err := dec.Decode(&req); err != nil {
		reply = m.section("", status("E", 23, "Invalid JSON"))
	} else {
		reply = m.dispatch(req.Command, req.Parameter)
	}
	b, _ := json.Marshal(reply)
	conn.Write(append(b, 0))
}

func status(s string, code int, msg string) map[string]any {
	return map[string]any{"STATUS": s, "When": 0, "Code": code, "Msg": msg, "Description": "minersim 1.0"}
}

func (m *miner) section(key string, st map[string]any, body ...any) map[string]any {
	st["When"] = m.cfg.Clock().Unix()
	out := map[string]any{"STATUS": []any{st}, "id": 1}
	if key != "" {
		out[key] = body
	}
	return out
}

func (m *miner) dispatch(command, param string) any {
	if strings.Contains(command, "+") {
		out := map[string]any{}
		for _, c := range strings.Split(command, "+") {
			if c == "logon" || c == "curtail" || c == "profileset" || c == "pause" || c == "resume" {
				return m.section("", status("E", 45, "Privileged commands cannot be joined"))
			}
			out[c] = []any{m.one(c, param)}
		}
		out["id"] = 1
		return out
	}
	return m.one(command, param)
}

// readingLocked returns what the miner reports now: GH/s and watts.
func (m *miner) readingLocked() (float64, float64) {
	if m.asleep {
		return 0, m.cfg.SleepWatts
	}
	p := m.cfg.Profiles[m.profile]
	if m.cfg.Clock().Before(m.wokeAt.Add(m.cfg.Boot)) {
		return 0, p.Watts
	}
	return p.THs * 1000, p.Watts
}

func (m *miner) session_(param string) (string, bool) {
	tok, arg, _ := strings.Cut(param, ",")
	return arg, m.session != "" && tok == m.session
}

func (m *miner) one(command, param string) map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commands++
	ghs, watts := m.readingLocked()
	now := m.cfg.Clock()
	elapsed := int64(now.Sub(m.started).Seconds())
	switch command {
	case "version":
		return m.section("VERSION", status("S", 22, "CGMiner versions"), map[string]any{"CGMiner": "4.11.1", "API": "3.7", "Type": "minersim"})
	case "summary":
		m.accepted += int64(ghs / 1000)
		return m.section("SUMMARY", status("S", 11, "Summary"), map[string]any{
			"Elapsed": elapsed, "MHS 5s": ghs * 1000, "MHS av": ghs * 1000, "Accepted": m.accepted,
			"Rejected": 0, "Hardware Errors": 0, "Difficulty Accepted": float64(m.accepted) * 65536})
	case "devs":
		devs := make([]any, 3)
		for i := range devs {
			devs[i] = map[string]any{"ASC": i, "Enabled": "Y", "Status": "Alive", "MHS 5s": ghs * 1000 / 3, "Temperature": 60.0}
		}
		return m.section("DEVS", status("S", 9, "3 ASC(s)"), devs...)
	case "pools":
		return m.section("POOLS", status("S", 7, "1 Pool(s)"), map[string]any{"POOL": 0, "URL": "stratum+tcp://127.0.0.1:3333", "Status": "Alive", "Stratum Active": !m.asleep})
	case "stats":
		return m.section("STATS", status("S", 70, "CGMiner stats"), map[string]any{"Elapsed": elapsed, "Power": watts, "Paused": m.asleep})
	case "power":
		return m.section("POWER", status("S", 300, "Power"), map[string]any{"Watts": watts, "PSU": true})
	case "config":
		mode := "none"
		if m.asleep {
			mode = "sleep"
		}
		return m.section("CONFIG", status("S", 33, "CGMiner config"), map[string]any{"Profile": m.cfg.Profiles[m.profile].Name, "CurtailMode": mode, "ASC Count": 3})
	case "profiles":
		ps := make([]any, len(m.cfg.Profiles))
		for i, p := range m.cfg.Profiles {
			ps[i] = map[string]any{"Profile Name": p.Name, "Hashrate": p.THs, "Watts": p.Watts}
		}
		return m.section("PROFILES", status("S", 327, "Profiles"), ps...)
	case "logon":
		var b [8]byte
		rand.Read(b[:])
		m.session = hex.EncodeToString(b[:])
		return m.section("SESSION", status("S", 307, "Session created"), map[string]any{"SessionID": m.session})
	case "logoff":
		if _, ok := m.session_(param + ","); !ok {
			return m.section("", status("E", 45, "Invalid session"))
		}
		m.session = ""
		return m.section("", status("S", 308, "Session closed"))
	case "curtail":
		arg, ok := m.session_(param)
		if !ok {
			return m.section("", status("E", 45, "Invalid session"))
		}
		switch arg {
		case "sleep":
			if !m.ignore {
				m.asleep = true
			}
		case "wakeup":
			if !m.ignore && m.asleep {
				m.asleep = false
				m.wokeAt = now
			}
		default:
			return m.section("", status("E", 14, "Invalid curtail mode "+arg))
		}
		return m.section("", status("S", 400, "Curtail "+arg))
	case "profileset":
		arg, ok := m.session_(param)
		if !ok {
			return m.section("", status("E", 45, "Invalid session"))
		}
		for i, p := range m.cfg.Profiles {
			if p.Name == arg {
				if !m.ignore {
					m.profile = i
				}
				return m.section("", status("S", 401, "Profile set to "+arg))
			}
		}
		return m.section("", status("E", 14, "Unknown profile "+arg))
	case "pause":
		if !m.ignore {
			m.asleep = true
		}
		return m.section("", status("S", 132, "Paused"))
	case "resume":
		if !m.ignore && m.asleep {
			m.asleep = false
			m.wokeAt = now
		}
		return m.section("", status("S", 133, "Resumed"))
	}
	return m.section("", status("E", 14, "Invalid command"))
}

// Serve runs until ctx is done, then closes the fleet.
func (f *Fleet) Serve(ctx context.Context) error {
	<-ctx.Done()
	return f.Close()
}
