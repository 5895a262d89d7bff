// Package power is hashgrid's energy-aware fleet controller: it decides, interval by
// interval, whether each group of mining machines runs at full power, in a lower power
// mode, or is curtailed, from published electricity prices, the fleet's state and the
// mining economics (hashprice and each mode's breakeven).
//
// The root package holds the domain: prices and money in fixed point, the site
// configuration, the economics, the interval model of a machine group (energy and hash
// for every transition, with staggered ramps and minimum on and off times), the
// strategies (the policy and the references always_on, two_strike and last_price) and
// the exact perfect-foresight optimum. Adapters live beside it: ercot (price files and
// feeds), control (the cgminer/LuxOS JSON API on TCP 4028), minersim (an emulated
// fleet), backtest (reports and charts over a price history) and controller (the live
// loop that commands machines).
//
// # Units
//
// Prices are Price, hundredths of a US dollar per MWh, exact for ERCOT's two-decimal
// prices. Money is Micro, millionths of a US dollar, in every stored and reported amount.
// Floats appear only for physics and rates: hashrate (TH/s), the hashprice and the
// price forecast of the policy. Each interval's revenue is rounded to Micro once, from
// those rates; energy cost is exact (Price × Wh / 100 µ$).
//
// # Decisions
//
// A Strategy sees only the prices already published (History holds the prices of the
// intervals before the one being decided) and the group's state; the same code runs in
// the live controller, the backtest and the tests. Only Optimum sees the future: it is a
// dynamic programme per machine group over (mode, dwell) states with integer rewards, so
// it is exact under the same constraints as the strategies.
//
// # Leased compute
//
// A group with a [group.compute] table can also lease its machines' cores through a
// compute market (package compute). The live controller prices leasing from the
// market every interval (LeaseMarket, QuoteLease: the providers' own earnings per
// leased core-hour over a recent window, times the market's occupancy, converted at
// the BTC price) and ChooseLease weighs it against the strategy's mining choice and
// curtailing at the last published price, under the same safety rules. Backtests and
// plans do not: no history of the compute market is kept.
//
// # Energy evidence
//
// The live controller, and the backtest when asked, append one JSON object per machine
// group per interval to <data dir>/energy.jsonl (see EnergyRecord):
//
//	{"start":"2019-08-13T21:15:00Z","end":"2019-08-13T21:30:00Z","site":"west-1","group":"s19","mode":"full","machines_on":100,"energy_wh":88250,"hashrate_ghs":9500000,"workload":"mining"}
//
// start and end are RFC 3339; mode is a mode name, "curtailed" or, for a group that
// leases compute, "leased"; machines_on, energy_wh (watt-hours used in the interval)
// and hashrate_ghs (average over the interval, GH/s) are integers; workload says what
// the energy went to, "mining" or "compute" (absent when curtailed).
//
// The package leaves out ERCOT's settlement arithmetic beyond the 15-minute real-time
// price (no ancillary-service clearing), and the 4CP charge is a per-interval tariff on
// peak intervals named in the configuration (or a stated price proxy).
package power

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// IntervalLength is the settlement interval of ERCOT's real-time market.
const IntervalLength = 15 * time.Minute

// intervalSeconds is IntervalLength in seconds, for the energy arithmetic.
const intervalSeconds = 900

// Price is an electricity price in hundredths of a US dollar per MWh.
type Price int64

// MaxPriceMagnitude bounds a parsed price: ten times ERCOT's historic cap, so a
// misplaced decimal point is refused instead of believed.
const MaxPriceMagnitude Price = 90_000_00

// ParsePrice parses a decimal price in USD/MWh such as "27.67", "-21.17", "33" or
// "1,688.26" (ERCOT's quoted thousands). At most two decimals are accepted.
func ParsePrice(s string) (Price, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("price: empty")
	}
	neg := false
	body := s
	if body[0] == '-' || body[0] == '+' {
		neg = body[0] == '-'
		body = body[1:]
	}
	intPart, frac, hasDot := strings.Cut(body, ".")
	if hasDot && (len(frac) == 0 || len(frac) > 2) {
		return 0, fmt.Errorf("price %q: want at most two decimals", s)
	}
	if strings.Contains(intPart, ",") {
		// Thousands separators must group by three: "1,688" or "12,000".
		groups := strings.Split(intPart, ",")
		if len(groups[0]) == 0 || len(groups[0]) > 3 {
			return 0, fmt.Errorf("price %q: bad thousands separator", s)
		}
		for _, g := range groups[1:] {
			if len(g) != 3 {
				return 0, fmt.Errorf("price %q: bad thousands separator", s)
			}
		}
		intPart = strings.Join(groups, "")
	}
	if intPart == "" {
		return 0, fmt.Errorf("price %q: no digits", s)
	}
	var v int64
	for _, c := range intPart + frac + strings.Repeat("0", 2-len(frac)) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("price %q: not a number", s)
		}
		v = v*10 + int64(c-'0')
		if v > int64(MaxPriceMagnitude) {
			return 0, fmt.Errorf("price %q: beyond %s $/MWh", s, MaxPriceMagnitude)
		}
	}
	if neg {
		v = -v
	}
	return Price(v), nil
}

// PriceFromFloat rounds a $/MWh float (from a JSON feed) to a Price.
func PriceFromFloat(f float64) (Price, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f*100) > float64(MaxPriceMagnitude) {
		return 0, fmt.Errorf("price %v: out of range", f)
	}
	return Price(math.Round(f * 100)), nil
}

// Dollars returns the price in $/MWh as a float, for display and forecasts.
func (p Price) Dollars() float64 { return float64(p) / 100 }

// String formats the price in $/MWh with two decimals.
func (p Price) String() string {
	sign := ""
	v := int64(p)
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// Micro is an amount of US dollars in millionths.
type Micro int64

// MicroFromDollars rounds a dollar amount to Micro.
func MicroFromDollars(d float64) Micro { return Micro(math.Round(d * 1e6)) }

// Dollars returns m as a float, for display only.
func (m Micro) Dollars() float64 { return float64(m) / 1e6 }

// String formats m in dollars with two decimals (rounded half away from zero).
func (m Micro) String() string {
	v := int64(m)
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	cents := (v + 5000) / 10000
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}

// EnergyCost returns the cost of wh watt-hours at price p, exactly: p is in
// hundredths of a dollar per MWh, so the cost is p·wh/100 µ$ (truncated toward zero).
func EnergyCost(p Price, wh int64) Micro { return Micro(int64(p) * wh / 100) }

// Interval is one published settlement price.
type Interval struct {
	Start time.Time // interval start, UTC
	Price Price
}

// End returns the end of the interval.
func (iv Interval) End() time.Time { return iv.Start.Add(IntervalLength) }

// PricesOf returns the prices of ivs, in order: a history, as Scenario.Earlier takes.
func PricesOf(ivs []Interval) []Price {
	out := make([]Price, len(ivs))
	for i, iv := range ivs {
		out[i] = iv.Price
	}
	return out
}

// Curtailed is the mode name recorded for a group that is switched off.
const Curtailed = "curtailed"

// EnergyRecord is one line of energy.jsonl: what one machine group did in one interval.
type EnergyRecord struct {
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Site        string    `json:"site"`
	Group       string    `json:"group"`
	Mode        string    `json:"mode"`
	MachinesOn  int       `json:"machines_on"`
	EnergyWh    int64     `json:"energy_wh"`
	HashrateGHs int64     `json:"hashrate_ghs"`
	// Workload is what the energy went to: "mining" in a mining mode, "compute" while
	// the group leases compute (mode "leased"); absent when curtailed.
	Workload string `json:"workload,omitempty"`
}

// EnergyWriter appends EnergyRecords as JSON lines.
type EnergyWriter struct{ w io.Writer }

// NewEnergyWriter returns a writer of energy.jsonl lines to w.
func NewEnergyWriter(w io.Writer) *EnergyWriter { return &EnergyWriter{w: w} }

// Write appends one record.
func (e *EnergyWriter) Write(r EnergyRecord) error {
	r.Start, r.End = r.Start.UTC(), r.End.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("energy record: %w", err)
	}
	b = append(b, '\n')
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("energy record: %w", err)
	}
	return nil
}

// formatFloat prints a float compactly, for error messages.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
