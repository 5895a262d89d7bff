// Package alert tells a pool operator what needs attention: a block found, a found
// block no node has taken yet, a block orphaned, a worker gone quiet, a node down, a reject rate above a threshold. Each
// alert is written to the log and POSTed as JSON to a webhook.
//
// Alerts are edge-triggered and deduplicated by a key (a block's hash; a condition and
// the time it began), and they go through an outbox (Outbox: by default a small SQLite
// file in the data directory; postgres.AlertOutbox for processes sharing one
// database): the decision to alert and the queued message are committed together, so
// a restart neither repeats an alert nor loses one that was not yet delivered.
// Delivery is at least once: a crash between the webhook's 2xx and the commit that
// marks it delivered sends it again, with the same "id" (also sent as the
// Idempotency-Key header) so that a receiver can drop the repeat.
//
// The package reads the share store and the node's health; it does not watch Stratum
// connections, and it never logs the webhook URL, which often embeds a token.
package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// Kind names what an alert is about.
type Kind string

const (
	BlockFound    Kind = "block_found"
	BlockOrphaned Kind = "block_orphaned"
	// BlockWaiting: a block was found but no node has taken it yet (every node down
	// or not ready); the pool keeps sending it.
	BlockWaiting Kind = "block_waiting"
	WorkerQuiet  Kind = "worker_quiet"
	NodeDown     Kind = "node_down"
	RejectRate   Kind = "reject_rate"
)

// Event is one alert as queued, logged and sent.
type Event struct {
	ID     string            `json:"id"` // deduplication key: the same event always has the same ID
	Kind   Kind              `json:"kind"`
	Time   time.Time         `json:"time"`
	Text   string            `json:"text"` // one human-readable line (chat webhooks show this field)
	Fields map[string]string `json:"fields,omitempty"`
}

// Source is what the monitor reads from the share store.
type Source interface {
	Blocks(ctx context.Context, limit int) ([]hashgrid.Block, error)
	Workers(ctx context.Context, address string) ([]hashgrid.Worker, error)
	WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error)
}

// NodeStatus reports the node adapter's health.
type NodeStatus interface {
	Status() node.Status
}

// Settings are the thresholds; an operator may change them while the pool runs.
type Settings struct {
	// WorkerQuiet alerts when a worker that was submitting shares has sent none for
	// this long. 0 disables.
	WorkerQuiet time.Duration `json:"worker_quiet_seconds"`
	// RejectRate alerts when rejected/(accepted+rejected) over RejectWindow exceeds it,
	// for the pool as a whole or for one worker. 0 disables; at most 1.
	RejectRate float64 `json:"reject_rate"`
	// RejectWindow is the period the reject rate is measured over; default 10m.
	RejectWindow time.Duration `json:"reject_window_seconds"`
	// RejectMinShares is the fewest shares in the window for a rate to count; default 20.
	RejectMinShares int `json:"reject_min_shares"`
}

// Validate checks the thresholds.
func (s Settings) Validate() error {
	switch {
	case s.WorkerQuiet < 0:
		return errors.New("alert: worker quiet time is negative")
	case s.WorkerQuiet > 0 && s.WorkerQuiet < time.Second:
		return errors.New("alert: worker quiet time below one second")
	case math.IsNaN(s.RejectRate) || s.RejectRate < 0 || s.RejectRate > 1:
		return fmt.Errorf("alert: reject rate %v outside 0..1", s.RejectRate)
	case s.RejectWindow < 0:
		return errors.New("alert: reject window is negative")
	case s.RejectMinShares < 0:
		return errors.New("alert: reject minimum shares is negative")
	}
	return nil
}

func (s *Settings) defaults() {
	if s.RejectWindow == 0 {
		s.RejectWindow = 10 * time.Minute
	}
	if s.RejectMinShares == 0 {
		s.RejectMinShares = 20
	}
}

// Limits.
const (
	// blockScan is how many recent blocks one check looks at.
	blockScan = 500
	// quietHorizon: a worker silent for longer than this is no longer watched, so an
	// address that mined once last year does not alert forever.
	quietHorizon = 24 * time.Hour
	// sendTimeout bounds one webhook POST.
	sendTimeout = 10 * time.Second
	// deliverBatch bounds the alerts sent in one pass.
	deliverBatch = 50
	// keepDelivered is how long delivered condition alerts stay in the outbox.
	keepDelivered = 30 * 24 * time.Hour
	// maxErrorText bounds the last delivery error kept per alert.
	maxErrorText = 300
)

// Config configures a Monitor.
type Config struct {
	// Dir is the directory of alerts.db; required unless Outbox is set.
	Dir string
	// Outbox, when set, keeps the alerts instead of alerts.db in Dir (see
	// postgres.AlertOutbox); once Open succeeds the Monitor owns it, and Close
	// closes it.
	Outbox     Outbox
	WebhookURL string // http(s) URL; "" logs alerts without sending them
	Source     Source // required
	Node       NodeStatus
	Settings   Settings
	Interval   time.Duration // between checks; default 10s
	RetryMin   time.Duration // first retry delay after a failed POST; default 1s
	RetryMax   time.Duration // longest retry delay; default 5m
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Monitor checks for alert conditions and delivers alerts.
type Monitor struct {
	cfg  Config
	log  *slog.Logger
	ob   Outbox
	poke chan struct{}

	mu       sync.Mutex
	settings Settings
}

// Open opens (creating if needed) the alert outbox in cfg.Dir.
func Open(cfg Config) (*Monitor, error) {
	if cfg.Dir == "" && cfg.Outbox == nil {
		return nil, errors.New("alert: no directory")
	}
	if cfg.Source == nil {
		return nil, errors.New("alert: no share store")
	}
	if cfg.WebhookURL != "" && !strings.HasPrefix(cfg.WebhookURL, "http://") && !strings.HasPrefix(cfg.WebhookURL, "https://") {
		return nil, errors.New("alert: webhook URL must start with http:// or https://")
	}
	cfg.Settings.defaults()
	if err := cfg.Settings.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: sendTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ob := cfg.Outbox
	if ob == nil {
		o, err := OpenSQLiteOutbox(cfg.Dir)
		if err != nil {
			return nil, err
		}
		ob = o
	}
	return &Monitor{cfg: cfg, log: cfg.Logger, ob: ob, poke: make(chan struct{}, 1), settings: cfg.Settings}, nil
}

// Close closes the outbox.
func (m *Monitor) Close() error { return m.ob.Close() }

// Settings returns the current thresholds.
func (m *Monitor) Settings() Settings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settings
}

// SetSettings replaces the thresholds until the process ends; zero window and
// minimum take their defaults.
func (m *Monitor) SetSettings(s Settings) error {
	s.defaults()
	if err := s.Validate(); err != nil {
		return hashgrid.Errorf(hashgrid.EINVALID, "%s", strings.TrimPrefix(err.Error(), "alert: "))
	}
	m.mu.Lock()
	m.settings = s
	m.mu.Unlock()
	m.log.Info("alert settings changed", "worker_quiet", s.WorkerQuiet, "reject_rate", s.RejectRate, "reject_window", s.RejectWindow)
	return nil
}

// Poke asks for a check now (after a block was found or changed status).
func (m *Monitor) Poke() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Run checks and delivers until ctx ends. It is one goroutine: checks and deliveries
// never run at the same time.
func (m *Monitor) Run(ctx context.Context) {
	check := time.NewTicker(m.cfg.Interval)
	defer check.Stop()
	retry := time.NewTicker(m.cfg.RetryMin)
	defer retry.Stop()
	pass := func(doCheck bool) {
		if doCheck {
			if err := m.Check(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("alert check", "err", err)
			}
		}
		if _, err := m.Deliver(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("alert delivery", "err", err)
		}
	}
	pass(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			pass(true)
		case <-m.poke:
			pass(true)
		case <-retry.C:
			pass(false)
		}
	}
}

// Check makes one pass over the alert conditions, queueing an alert for each new one.
func (m *Monitor) Check(ctx context.Context) error {
	now := m.cfg.Now()
	baseline, err := m.ob.Baselined(ctx)
	if err != nil {
		return err
	}
	set := m.Settings()
	var errs []error
	if err := m.checkBlocks(ctx, now, !baseline); err != nil {
		errs = append(errs, err)
	}
	if err := m.checkQuiet(ctx, now, set, !baseline); err != nil {
		errs = append(errs, err)
	}
	if err := m.checkRejects(ctx, now, set); err != nil {
		errs = append(errs, err)
	}
	m.checkNodes(ctx, now, &errs)
	if len(errs) == 0 && !baseline {
		if err := m.ob.SetBaselined(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkBlocks alerts each found block once and each orphaned block once. On the very
// first check (no outbox yet) the blocks already in the store are history: they are
// remembered, not announced.
func (m *Monitor) checkBlocks(ctx context.Context, now time.Time, baseline bool) error {
	blocks, err := m.cfg.Source.Blocks(ctx, blockScan)
	if err != nil {
		return fmt.Errorf("alert: blocks: %w", err)
	}
	for i := len(blocks) - 1; i >= 0; i-- { // oldest first
		b := blocks[i]
		hash := chainhash.Hash(b.Hash).String()
		fields := map[string]string{
			"hash": hash, "height": fmt.Sprint(b.Height), "finder": b.Address, "worker": b.Worker,
			"reward_sat": fmt.Sprint(b.Reward), "status": b.Status.String(),
		}
		switch b.Status {
		case hashgrid.BlockAccepted, hashgrid.BlockConfirmed, hashgrid.BlockOrphaned:
			ev := Event{ID: string(BlockFound) + ":" + hash, Kind: BlockFound, Time: now, Fields: fields,
				Text: fmt.Sprintf("block found at height %d by %s (%s), reward %s BTC", b.Height, finderName(b), short(hash), btc(b.Reward))}
			if b.Status == hashgrid.BlockOrphaned && b.Reason != "" {
				// Never on the chain: announcing a find that did not count is noise;
				// the orphan alert says what happened.
				ev = Event{}
			}
			if ev.ID != "" {
				if err := m.once(ctx, ev, baseline); err != nil {
					return err
				}
			}
		}
		if b.Status == hashgrid.BlockSubmitted && b.Reason != "" {
			ev := Event{ID: string(BlockWaiting) + ":" + hash, Kind: BlockWaiting, Time: now, Fields: fields,
				Text: fmt.Sprintf("block found at height %d by %s (%s) but not yet on any node, retrying: %s", b.Height, finderName(b), short(hash), b.Reason)}
			if err := m.once(ctx, ev, baseline); err != nil {
				return err
			}
		}
		if b.Status == hashgrid.BlockOrphaned {
			text := fmt.Sprintf("block at height %d (%s) orphaned: no longer on the node's best chain", b.Height, short(hash))
			if b.Reason != "" {
				text = fmt.Sprintf("block at height %d (%s) orphaned: %s", b.Height, short(hash), b.Reason)
			}
			ev := Event{ID: string(BlockOrphaned) + ":" + hash, Kind: BlockOrphaned, Time: now, Fields: fields, Text: text}
			if err := m.once(ctx, ev, baseline); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Monitor) checkQuiet(ctx context.Context, now time.Time, set Settings, baseline bool) error {
	if set.WorkerQuiet <= 0 {
		return nil
	}
	workers, err := m.cfg.Source.Workers(ctx, "")
	if err != nil {
		return fmt.Errorf("alert: workers: %w", err)
	}
	for _, w := range workers {
		if w.LastShare.IsZero() {
			continue
		}
		name := workerName(w.Address, w.Name)
		key := string(WorkerQuiet) + ":" + name
		silent := now.Sub(w.LastShare)
		switch {
		case silent > quietHorizon:
			if err := m.ob.Clear(ctx, key); err != nil {
				return err
			}
		case silent >= set.WorkerQuiet:
			ev := Event{Kind: WorkerQuiet, Time: now,
				Text:   fmt.Sprintf("worker %s quiet: no share for %s", name, silent.Round(time.Second)),
				Fields: map[string]string{"address": w.Address, "worker": w.Name, "last_share": w.LastShare.UTC().Format(time.RFC3339)}}
			if err := m.raise(ctx, key, w.LastShare, ev, baseline); err != nil {
				return err
			}
		default:
			if err := m.ob.Clear(ctx, key); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Monitor) checkRejects(ctx context.Context, now time.Time, set Settings) error {
	if set.RejectRate <= 0 {
		return nil
	}
	from, to, _ := hashgrid.RecentWindow(now, set.RejectWindow)
	recent, err := m.cfg.Source.WorkBetween(ctx, from, to)
	if err != nil {
		return fmt.Errorf("alert: recent shares: %w", err)
	}
	var accAll, rejAll uint64
	eval := func(key, who string, acc, rej uint64, fields map[string]string) error {
		n := acc + rej
		if n < uint64(set.RejectMinShares) {
			return nil // too few shares to judge: leave the condition as it is
		}
		rate := float64(rej) / float64(n)
		if rate <= set.RejectRate {
			return m.ob.Clear(ctx, key)
		}
		fields["rejected"], fields["shares"] = fmt.Sprint(rej), fmt.Sprint(n)
		fields["rate"] = fmt.Sprintf("%.4f", rate)
		ev := Event{Kind: RejectRate, Time: now, Fields: fields,
			Text: fmt.Sprintf("%s reject rate %.1f%% over %s (%d of %d shares), above %.1f%%", who, 100*rate, set.RejectWindow, rej, n, 100*set.RejectRate)}
		return m.raise(ctx, key, now, ev, false)
	}
	for _, w := range recent {
		accAll += w.Accepted
		rejAll += w.Rejected
		name := workerName(w.Address, w.Name)
		if err := eval(string(RejectRate)+":"+name, "worker "+name, w.Accepted, w.Rejected, map[string]string{"address": w.Address, "worker": w.Name}); err != nil {
			return err
		}
	}
	return eval(string(RejectRate)+":pool", "pool", accAll, rejAll, map[string]string{"scope": "pool"})
}

func (m *Monitor) checkNodes(ctx context.Context, now time.Time, errs *[]error) {
	if m.cfg.Node == nil {
		return
	}
	for _, n := range m.cfg.Node.Status().Nodes {
		key := string(NodeDown) + ":" + n.URL
		var err error
		if n.Up {
			err = m.ob.Clear(ctx, key)
		} else {
			ev := Event{Kind: NodeDown, Time: now, Fields: map[string]string{"node": n.URL, "error": n.LastError},
				Text: fmt.Sprintf("node %s down: %s", n.URL, n.LastError)}
			err = m.raise(ctx, key, now, ev, false)
		}
		if err != nil {
			*errs = append(*errs, err)
		}
	}
}

// once queues ev unless an event with its ID was ever queued. With quiet set it only
// remembers the ID.
func (m *Monitor) once(ctx context.Context, ev Event, quiet bool) error {
	added, err := m.add(ctx, ev, "", 0, quiet)
	if err != nil {
		return err
	}
	if added && !quiet {
		m.logEvent(ev)
	}
	return nil
}

// raise opens the condition key (if it is not open) and queues ev for it. The event's
// ID is the key and the time the condition began, so that the same episode is never
// announced twice and a later one is.
func (m *Monitor) raise(ctx context.Context, key string, since time.Time, ev Event, quiet bool) error {
	ev.ID = fmt.Sprintf("%s@%d", key, since.UTC().Unix())
	added, err := m.add(ctx, ev, key, since.UnixNano(), quiet)
	if err != nil {
		return err
	}
	if added && !quiet {
		m.logEvent(ev)
	}
	return nil
}

// add records ev in the outbox, opening the condition cond (when not "") that began
// at since (Unix nanoseconds).
func (m *Monitor) add(ctx context.Context, ev Event, cond string, since int64, quiet bool) (bool, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return false, fmt.Errorf("alert: encode: %w", err)
	}
	return m.ob.Add(ctx, NewAlert{ID: ev.ID, Condition: cond, Since: since, Kind: string(ev.Kind), Body: body, Quiet: quiet, At: m.cfg.Now()})
}

func (m *Monitor) logEvent(ev Event) {
	level := slog.LevelWarn
	if ev.Kind == BlockFound {
		level = slog.LevelInfo
	}
	m.log.Log(context.Background(), level, "alert: "+ev.Text, "kind", string(ev.Kind), "id", ev.ID)
}

func finderName(b hashgrid.Block) string { return workerName(b.Address, b.Worker) }

func workerName(addr, name string) string {
	if name == "" {
		return addr
	}
	return addr + "." + name
}

func short(hash string) string {
	if len(hash) > 16 {
		return hash[:8] + "…" + hash[len(hash)-8:]
	}
	return hash
}

// btc formats satoshis as BTC without going through a float.
func btc(sat int64) string {
	sign := ""
	if sat < 0 {
		sign, sat = "-", -sat
	}
	return fmt.Sprintf("%s%d.%08d", sign, sat/1e8, sat%1e8)
}
