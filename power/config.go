package power

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Limits on a site description, so a typo cannot ask for an absurd simulation.
const (
	MaxGroups         = 64
	MaxModesPerGroup  = 8
	MaxMachinesPerGrp = 1_000_000
	MaxMinDwell       = 24 * time.Hour
)

// Duration is a time.Duration that TOML reads from strings such as "30m".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config describes a site: where its power comes from, what it runs, and the
// economics it is judged by.
type Config struct {
	Name       string  `toml:"name"`
	Zone       string  `toml:"zone"`        // settlement point, e.g. LZ_WEST or LZ_WEST/LZEW
	CapacityMW float64 `toml:"capacity_mw"` // interconnection limit
	DataDir    string  `toml:"data_dir"`
	PoolFee    float64 `toml:"pool_fee"` // fraction, e.g. 0.02
	// ShedPrice is the emergency price: a published price at or above it sheds all
	// flexible load at once, whatever the minimum on time.
	ShedPrice float64 `toml:"shed_price"`
	// ShedWithin is the stated time within which a shed decision must be obeyed.
	ShedWithin Duration `toml:"shed_within"`
	// StaleAfter: a live feed with no new price for this long is treated as a spike
	// (the safe rule: curtail everything until a fresh price arrives).
	StaleAfter Duration `toml:"stale_after"`

	Prices         PriceFeed       `toml:"prices"`
	Bitcoin        Bitcoin         `toml:"bitcoin"`
	Economics      []Period        `toml:"economics"`
	Groups         []GroupConfig   `toml:"group"`
	AIHosting      []AIContract    `toml:"ai_hosting"`
	DemandResponse DemandResponse  `toml:"demand_response"`
	FourCP         FourCP          `toml:"fourcp"`
	Policy         PolicyConfig    `toml:"policy"`
	TwoStrike      TwoStrikeConfig `toml:"two_strike"`
	Control        ControlConfig   `toml:"control"`

	// ExtendEconomics lets a backtest run on dates the [[economics]] table does not
	// cover: the first row stands for every earlier date and the last row for every
	// later one. Off, such a date is an error (EconomicsGapError). It is not a key of
	// the file: the operator asks for it per run (power backtest --extend-economics).
	ExtendEconomics bool `toml:"-"`
}

// PriceFeed says where live prices come from.
type PriceFeed struct {
	URL   string   `toml:"url"`   // polled; ERCOT-style CSV or JSON
	File  string   `toml:"file"`  // replayed instead of a URL
	Speed float64  `toml:"speed"` // replay speed factor (1 = real time)
	Poll  Duration `toml:"poll"`
}

// Bitcoin holds the live economics inputs: the chain's from a node when one is given
// (difficulty, the subsidy by height, the fees of the block being mined next), the
// price of bitcoin from the operator.
type Bitcoin struct {
	Node            string  `toml:"node"`       // JSON-RPC URL of a bitcoind or btcd (the pool's)
	Difficulty      float64 `toml:"difficulty"` // used when no node is given
	BTCUSD          float64 `toml:"btc_usd"`
	PriceURL        string  `toml:"price_url"`          // JSON {"usd": N} or a bare number
	FeesBTCPerBlock float64 `toml:"fees_btc_per_block"` // used when no node is given
}

// Period is the economics assumed from a date on, for backtests: a row covers its
// dates up to the next row's from, and the last row to the end of the calendar
// quarter its from falls in (the table is written by quarter).
type Period struct {
	From            string  `toml:"from"` // YYYY-MM-DD, UTC
	BTCUSD          float64 `toml:"btc_usd"`
	Difficulty      float64 `toml:"difficulty"`
	FeesBTCPerBlock float64 `toml:"fees_btc_per_block"`
	Note            string  `toml:"note"`
	from            time.Time
}

// GroupConfig describes identical machines controlled together.
type GroupConfig struct {
	Name         string       `toml:"name"`
	Model        string       `toml:"model"`
	Count        int          `toml:"count"`
	Modes        []ModeConfig `toml:"mode"`
	MinOn        Duration     `toml:"min_on"`
	MinOff       Duration     `toml:"min_off"`
	StaggerBatch int          `toml:"stagger_batch"` // machines switched together
	StaggerEvery Duration     `toml:"stagger_every"` // pause between batches
	Boot         Duration     `toml:"boot"`          // wake-up to full hashrate
	SleepWatts   float64      `toml:"sleep_watts"`   // draw when curtailed
	Protocol     string       `toml:"protocol"`      // "luxos" or "cgminer"
	Endpoints    []string     `toml:"endpoints"`     // host:port per machine (live only)
	// Compute, when set, says the group's machines can also lease compute through
	// a compute market (package compute): the live controller then weighs leasing
	// against mining and curtailing every interval (see ChooseLease).
	Compute *ComputeConfig `toml:"compute"`
}

// ComputeConfig is the [group.compute] table: how a group's machines lease compute.
// The expected revenue of leasing is read from the market each interval (see
// LeaseMarket and QuoteLease), never configured.
type ComputeConfig struct {
	// Market is the compute market's API base URL, http://HOST:PORT: its public
	// offers give the market's occupancy.
	Market string `toml:"market"`
	// Controls are the control addresses (host:port) of the provider agents
	// (`hashgrid provider --control`): one per machine, or one for the whole group.
	Controls []string `toml:"controls"`
	Cores    int      `toml:"cores"` // cores each machine offers
	Watts    float64  `toml:"watts"` // a machine's draw while leased work runs
	// Window is how far back the providers' own leases are read for the rate they
	// earn per leased core-hour (default 24h).
	Window Duration `toml:"window"`
	// FeeBps is the market's fee in basis points of what tenants pay, taken from the
	// providers' earnings (default 200, the market's default).
	FeeBps int64 `toml:"fee_bps"`
	// Drain bounds how long the controller waits, after pausing the offers, for
	// running leases to finish before waking the miners; those still running then are
	// handed back (default 5m, at most 10m; a shed hands them back at once).
	Drain Duration `toml:"drain"`
}

// Limits of a [group.compute] table.
const (
	MaxComputeCores  = 4096
	MaxComputeWindow = 30 * 24 * time.Hour
	MaxDrain         = 10 * time.Minute
)

// ModeConfig is one power mode of a machine.
type ModeConfig struct {
	Name    string  `toml:"name"`
	THs     float64 `toml:"ths"`
	Watts   float64 `toml:"watts"`
	Profile string  `toml:"profile"` // LuxOS profile name for profileset
}

// AIContract is power rented to an AI tenant.
type AIContract struct {
	Name      string  `toml:"name"`
	MW        float64 `toml:"mw"`
	USDPerMWh float64 `toml:"usd_per_mwh"` // paid by the tenant per MWh delivered
	Uptime    float64 `toml:"uptime"`      // committed fraction, e.g. 0.995
	// PenaltyUSDPerMWh is owed per MWh short of the commitment.
	PenaltyUSDPerMWh float64 `toml:"penalty_usd_per_mwh"`
	// CurtailAbove: the host curtails the tenant while the last published price is at or
	// above this, within the uptime allowance.
	CurtailAbove float64 `toml:"curtail_above"`
}

// DemandResponse is an enrolment in a demand-response programme.
type DemandResponse struct {
	Program      string    `toml:"program"`
	MW           float64   `toml:"mw"`
	USDPerMWHour float64   `toml:"usd_per_mw_hour"` // availability payment
	Events       []DREvent `toml:"event"`
}

// DREvent is a deployment: all flexible load is off for its duration.
type DREvent struct {
	Start   time.Time `toml:"start"`
	Minutes int       `toml:"minutes"`
}

// FourCP configures the transmission-charge peaks.
type FourCP struct {
	USDPerKWYear float64     `toml:"usd_per_kw_year"`
	Intervals    []time.Time `toml:"intervals"` // known peak interval starts
	// The policy avoids peaks by curtailing in this local-time window on June–September
	// weekdays when the last price is at or above AlertPrice.
	WindowStartHour int     `toml:"window_start_hour"`
	WindowEndHour   int     `toml:"window_end_hour"`
	AlertPrice      float64 `toml:"alert_price"`
}

// PolicyConfig tunes the policy.
type PolicyConfig struct {
	Horizon int `toml:"horizon"` // intervals looked ahead by the planner
	// PriorWeight is how many observations the persistence prior is worth.
	PriorWeight float64 `toml:"prior_weight"`
	// Margin is how many standard errors of the forecast a departure from the
	// last-price rule must survive (0, the default: the planner's choice suffices).
	Margin float64 `toml:"margin"`
	// Spread is how many standard deviations of the price change a departure from the
	// last-price rule must survive (0, the default: off). A risk-averse operator's knob:
	// it trades expected profit for fewer departures (docs/benchmarks.md).
	Spread float64 `toml:"spread"`
}

// TwoStrikeConfig sets the strikes of the two-strike reference, as multiples of the
// full mode's breakeven when the prices are zero.
type TwoStrikeConfig struct {
	Low  float64 `toml:"low"`
	High float64 `toml:"high"`
}

// ControlConfig tunes how the live controller talks to machines.
type ControlConfig struct {
	Timeout    Duration `toml:"timeout"`
	Retries    int      `toml:"retries"`
	Backoff    Duration `toml:"backoff"`
	Parallel   int      `toml:"parallel"`
	VerifyWait Duration `toml:"verify_wait"`
}

// LoadConfig reads and validates a TOML site description.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := ReadConfig(io.LimitReader(f, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ReadConfig parses and validates a TOML site description.
func ReadConfig(r io.Reader) (*Config, error) {
	c := &Config{}
	md, err := toml.NewDecoder(r).Decode(c)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// SetDefaults fills the zero values that have a sensible default.
func (c *Config) SetDefaults() {
	if c.ShedPrice == 0 {
		c.ShedPrice = 1000
	}
	if c.ShedWithin.Duration == 0 {
		c.ShedWithin.Duration = 10 * time.Second
	}
	if c.StaleAfter.Duration == 0 {
		c.StaleAfter.Duration = 2 * IntervalLength
	}
	if c.Prices.Speed == 0 {
		c.Prices.Speed = 1
	}
	if c.Prices.Poll.Duration == 0 {
		c.Prices.Poll.Duration = time.Minute
	}
	if c.Policy.Horizon == 0 {
		c.Policy.Horizon = 4
	}
	if c.Policy.PriorWeight == 0 {
		c.Policy.PriorWeight = 16
	}
	if c.TwoStrike.Low == 0 {
		c.TwoStrike.Low = 1
	}
	if c.TwoStrike.High == 0 {
		c.TwoStrike.High = 2
	}
	if c.FourCP.WindowEndHour == 0 && c.FourCP.WindowStartHour == 0 {
		c.FourCP.WindowStartHour, c.FourCP.WindowEndHour = 15, 18
	}
	if c.Control.Timeout.Duration == 0 {
		c.Control.Timeout.Duration = 2 * time.Second
	}
	if c.Control.Retries == 0 {
		c.Control.Retries = 3
	}
	if c.Control.Backoff.Duration == 0 {
		c.Control.Backoff.Duration = 200 * time.Millisecond
	}
	if c.Control.Parallel == 0 {
		c.Control.Parallel = 32
	}
	if c.Control.VerifyWait.Duration == 0 {
		c.Control.VerifyWait.Duration = 100 * time.Millisecond
	}
	for i := range c.Groups {
		g := &c.Groups[i]
		if g.StaggerBatch == 0 {
			g.StaggerBatch = g.Count
		}
		if g.MinOn.Duration == 0 {
			g.MinOn.Duration = IntervalLength
		}
		if g.MinOff.Duration == 0 {
			g.MinOff.Duration = IntervalLength
		}
		if g.Protocol == "" {
			g.Protocol = "luxos"
		}
		if cc := g.Compute; cc != nil {
			if cc.Window.Duration == 0 {
				cc.Window.Duration = 24 * time.Hour
			}
			if cc.FeeBps == 0 {
				cc.FeeBps = 200
			}
			if cc.Drain.Duration == 0 {
				cc.Drain.Duration = 5 * time.Minute
			}
		}
	}
}

// Validate reports the first problem with the configuration, naming the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" {
		bad("name: required")
	}
	if _, err := ParseZone(c.Zone); err != nil {
		bad("zone: %v", err)
	}
	if !(c.CapacityMW > 0) {
		bad("capacity_mw: must be positive")
	}
	if c.PoolFee < 0 || c.PoolFee >= 1 {
		bad("pool_fee: must be in [0,1)")
	}
	if !(c.ShedPrice > 0) || c.ShedPrice > MaxPriceMagnitude.Dollars() {
		bad("shed_price: must be positive and below %s", MaxPriceMagnitude)
	}
	if c.Prices.Speed < 0 || math.IsInf(c.Prices.Speed, 0) {
		bad("prices.speed: must be positive")
	}
	if c.Bitcoin.Difficulty < 0 || c.Bitcoin.BTCUSD < 0 || c.Bitcoin.FeesBTCPerBlock < 0 {
		bad("bitcoin: difficulty, btc_usd and fees must not be negative")
	}
	for i := range c.Economics {
		p := &c.Economics[i]
		t, err := time.Parse("2006-01-02", p.From)
		if err != nil {
			bad("economics[%d].from: want YYYY-MM-DD", i)
		}
		p.from = t
		if !(p.BTCUSD > 0) || !(p.Difficulty > 0) || p.FeesBTCPerBlock < 0 {
			bad("economics[%d]: btc_usd and difficulty must be positive, fees not negative", i)
		}
		if i > 0 && !p.from.After(c.Economics[i-1].from) {
			bad("economics[%d].from: periods must be in increasing order", i)
		}
	}
	if len(c.Groups) == 0 {
		bad("group: at least one machine group is required")
	}
	if len(c.Groups) > MaxGroups {
		bad("group: at most %d groups", MaxGroups)
	}
	names := map[string]bool{}
	var fullMW float64
	for i := range c.Groups {
		g := &c.Groups[i]
		where := fmt.Sprintf("group[%d]", i)
		if g.Name == "" || names[g.Name] {
			bad("%s.name: required and unique", where)
		}
		names[g.Name] = true
		if g.Count <= 0 || g.Count > MaxMachinesPerGrp {
			bad("%s.count: must be in 1..%d", where, MaxMachinesPerGrp)
		}
		if len(g.Modes) == 0 || len(g.Modes) > MaxModesPerGroup {
			bad("%s.mode: 1..%d power modes required", where, MaxModesPerGroup)
		}
		maxW := 0.0
		modeNames := map[string]bool{Curtailed: true}
		for j, m := range g.Modes {
			if m.Name == "" || modeNames[m.Name] {
				bad("%s.mode[%d].name: required, unique, not %q", where, j, Curtailed)
			}
			modeNames[m.Name] = true
			if !(m.THs > 0) || !(m.Watts > 0) || m.THs > 1e6 || m.Watts > 1e6 {
				bad("%s.mode[%d]: ths and watts must be positive and plausible", where, j)
			}
			maxW = math.Max(maxW, m.Watts)
		}
		if cc := g.Compute; cc != nil {
			if u, err := url.Parse(cc.Market); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("%s.compute.market: want the market's http(s)://HOST:PORT", where)
			}
			if len(cc.Controls) != 1 && len(cc.Controls) != g.Count {
				bad("%s.compute.controls: %d given: one per machine (%d) or one for the group", where, len(cc.Controls), g.Count)
			}
			for j, a := range cc.Controls {
				if _, _, err := net.SplitHostPort(a); err != nil {
					bad("%s.compute.controls[%d]: want host:port", where, j)
				}
			}
			if cc.Cores < 1 || cc.Cores > MaxComputeCores {
				bad("%s.compute.cores: must be in 1..%d", where, MaxComputeCores)
			}
			if !(cc.Watts > 0) || cc.Watts > 1e6 {
				bad("%s.compute.watts: must be positive and plausible", where)
			}
			if cc.Window.Duration < time.Minute || cc.Window.Duration > MaxComputeWindow {
				bad("%s.compute.window: must be within 1m..%v", where, MaxComputeWindow)
			}
			if cc.FeeBps < 0 || cc.FeeBps >= 10_000 {
				bad("%s.compute.fee_bps: must be in 0..9999", where)
			}
			if cc.Drain.Duration < 0 || cc.Drain.Duration > MaxDrain {
				bad("%s.compute.drain: must be within 0..%v", where, MaxDrain)
			}
			maxW = math.Max(maxW, cc.Watts)
		}
		fullMW += maxW * float64(g.Count) / 1e6
		if g.StaggerBatch <= 0 {
			bad("%s.stagger_batch: must be positive", where)
		}
		if g.StaggerEvery.Duration < 0 || g.Boot.Duration < 0 || g.SleepWatts < 0 {
			bad("%s: stagger_every, boot and sleep_watts must not be negative", where)
		}
		if g.MinOn.Duration > MaxMinDwell || g.MinOff.Duration > MaxMinDwell || g.MinOn.Duration < 0 || g.MinOff.Duration < 0 {
			bad("%s: min_on and min_off must be within 0..%v", where, MaxMinDwell)
		}
		if g.Protocol != "luxos" && g.Protocol != "cgminer" {
			bad("%s.protocol: want luxos or cgminer", where)
		}
		if len(g.Endpoints) > 0 && len(g.Endpoints) != g.Count {
			bad("%s.endpoints: %d given for %d machines", where, len(g.Endpoints), g.Count)
		}
	}
	var aiMW float64
	for i, a := range c.AIHosting {
		if !(a.MW > 0) || a.USDPerMWh < 0 || a.Uptime <= 0 || a.Uptime > 1 || a.PenaltyUSDPerMWh < 0 {
			bad("ai_hosting[%d]: mw positive, usd_per_mwh and penalty not negative, uptime in (0,1]", i)
		}
		aiMW += a.MW
	}
	if c.CapacityMW > 0 && fullMW > c.CapacityMW*(1+1e-9) {
		bad("group: the fleet at full power (%.3f MW) exceeds capacity_mw (%.3f)", fullMW, c.CapacityMW)
	}
	if c.CapacityMW > 0 && aiMW > c.CapacityMW*(1+1e-9) {
		bad("ai_hosting: %.3f MW exceeds capacity_mw", aiMW)
	}
	if c.DemandResponse.MW < 0 || c.DemandResponse.USDPerMWHour < 0 {
		bad("demand_response: mw and usd_per_mw_hour must not be negative")
	}
	for i, e := range c.DemandResponse.Events {
		if e.Minutes <= 0 || e.Start.IsZero() {
			bad("demand_response.event[%d]: start and positive minutes required", i)
		}
	}
	if c.FourCP.USDPerKWYear < 0 || c.FourCP.WindowStartHour < 0 || c.FourCP.WindowEndHour > 24 || c.FourCP.WindowStartHour >= c.FourCP.WindowEndHour {
		bad("fourcp: usd_per_kw_year not negative, 0 <= window_start_hour < window_end_hour <= 24")
	}
	if c.Policy.Horizon < 1 || c.Policy.Horizon > 96 || c.Policy.PriorWeight < 0 || c.Policy.Margin < 0 || c.Policy.Margin > 10 ||
		c.Policy.Spread < 0 || c.Policy.Spread > 10 {
		bad("policy: horizon in 1..96, prior_weight not negative, margin and spread in 0..10")
	}
	if c.TwoStrike.Low <= 0 || c.TwoStrike.High < c.TwoStrike.Low {
		bad("two_strike: 0 < low <= high")
	}
	if c.Control.Retries < 0 || c.Control.Parallel < 1 {
		bad("control: retries not negative, parallel positive")
	}
	return errors.Join(errs...)
}

// EconomicsGapError is a date the [[economics]] table does not cover.
type EconomicsGapError struct {
	At time.Time // the first date not covered
	// Row is the nearest row: the first when At precedes the table, else the last.
	Row Period
	// From and Until are the dates the table covers: [From, Until).
	From, Until time.Time
}

func (e *EconomicsGapError) Error() string {
	const day = "2006-01-02"
	row := e.Row.From
	if e.Row.Note != "" {
		row += " (" + e.Row.Note + ")"
	}
	if e.At.Before(e.From) {
		return fmt.Sprintf("economics: no [[economics]] row covers %s UTC: the table starts on %s with the row from %s; add earlier rows, or extend the first row back (power backtest --extend-economics)",
			e.At.UTC().Format("2006-01-02 15:04"), e.From.Format(day), row)
	}
	return fmt.Sprintf("economics: no [[economics]] row covers %s UTC: the last covered quarter is the row from %s, which ends on %s; add rows up to the prices' last date, or extend the last row (power backtest --extend-economics)",
		e.At.UTC().Format("2006-01-02 15:04"), row, e.Until.AddDate(0, 0, -1).Format(day))
}

// EconomicsCovered returns the dates the [[economics]] table covers, [from, until):
// from its first row's date to the end of the calendar quarter of its last. ok is
// false when there is no table (the [bitcoin] figures then stand for every date).
func (c *Config) EconomicsCovered() (from, until time.Time, ok bool) {
	if len(c.Economics) == 0 {
		return time.Time{}, time.Time{}, false
	}
	last := c.Economics[len(c.Economics)-1].from
	q := (int(last.Month()) - 1) / 3
	return c.Economics[0].from, time.Date(last.Year(), time.Month(3*q+4), 1, 0, 0, 0, 0, time.UTC), true
}

// EconomicsAt returns the economics in force at t: the [[economics]] row covering t,
// or the [bitcoin] figures when there is no table. A date outside the table is an
// *EconomicsGapError, unless ExtendEconomics, which stretches the first row back and
// the last row forward.
func (c *Config) EconomicsAt(t time.Time) (Economics, error) {
	e := Economics{PoolFee: c.PoolFee, BTCUSD: c.Bitcoin.BTCUSD, Difficulty: c.Bitcoin.Difficulty, FeesBTCPerBlock: c.Bitcoin.FeesBTCPerBlock}
	from, until, ok := c.EconomicsCovered()
	if !ok {
		return e, nil
	}
	if !c.ExtendEconomics {
		switch {
		case t.Before(from):
			return Economics{}, &EconomicsGapError{At: t, Row: c.Economics[0], From: from, Until: until}
		case !t.Before(until):
			return Economics{}, &EconomicsGapError{At: t, Row: c.Economics[len(c.Economics)-1], From: from, Until: until}
		}
	}
	i := sort.Search(len(c.Economics), func(i int) bool { return c.Economics[i].from.After(t) }) - 1
	if i < 0 {
		i = 0
	}
	p := c.Economics[i]
	return Economics{PoolFee: c.PoolFee, BTCUSD: p.BTCUSD, Difficulty: p.Difficulty, FeesBTCPerBlock: p.FeesBTCPerBlock}, nil
}

// MachineCount returns the number of machines on the site.
func (c *Config) MachineCount() int {
	n := 0
	for _, g := range c.Groups {
		n += g.Count
	}
	return n
}

// Zone is a settlement point: a name such as LZ_WEST and, for load zones, whether the
// energy-weighted (LZEW) variant is meant.
type Zone struct {
	Name           string
	EnergyWeighted bool
}

// ParseZone parses "LZ_WEST" (the plain load-zone price) or "LZ_WEST/LZEW".
func ParseZone(s string) (Zone, error) {
	name, variant, found := strings.Cut(s, "/")
	if name == "" {
		return Zone{}, fmt.Errorf("zone: empty")
	}
	for _, c := range name {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return Zone{}, fmt.Errorf("zone %q: want upper-case letters, digits and _", s)
		}
	}
	if found && variant != "LZEW" {
		return Zone{}, fmt.Errorf("zone %q: the only variant is /LZEW", s)
	}
	if found && !strings.HasPrefix(name, "LZ_") {
		return Zone{}, fmt.Errorf("zone %q: only load zones have an LZEW variant", s)
	}
	return Zone{Name: name, EnergyWeighted: found}, nil
}

func (z Zone) String() string {
	if z.EnergyWeighted {
		return z.Name + "/LZEW"
	}
	return z.Name
}

// SetEfficiency rescales the power of every mode of every group so that the first mode
// runs at j joules per terahash, keeping hashrates and the ratios between modes; for
// benchmarking one site at several machine efficiencies.
func SetEfficiency(c *Config, j float64) {
	for gi := range c.Groups {
		g := &c.Groups[gi]
		if len(g.Modes) == 0 {
			continue
		}
		f := j * g.Modes[0].THs / g.Modes[0].Watts
		for mi := range g.Modes {
			g.Modes[mi].Watts *= f
		}
	}
}
