package power

import (
	"math"
	"time"
)

// Economics holds what mining earns: the inputs of the hashprice.
type Economics struct {
	BTCUSD          float64
	Difficulty      float64
	FeesBTCPerBlock float64
	PoolFee         float64
	// SubsidyBTC is the block subsidy when a node gave it; 0: by date, from mainnet's
	// halvings (Subsidy).
	SubsidyBTC float64
}

// halvings are the dates of the block subsidy halvings (UTC), for backtests by date.
var halvings = [...]struct {
	at      time.Time
	subsidy float64
}{
	{time.Date(2016, 7, 9, 16, 46, 0, 0, time.UTC), 12.5},
	{time.Date(2020, 5, 11, 19, 23, 0, 0, time.UTC), 6.25},
	{time.Date(2024, 4, 20, 0, 9, 0, 0, time.UTC), 3.125},
}

// Subsidy returns the block subsidy in BTC at t (from 2012; 25 BTC before July 2016).
func Subsidy(t time.Time) float64 {
	s := 25.0
	for _, h := range halvings {
		if !t.Before(h.at) {
			s = h.subsidy
		}
	}
	return s
}

// HashpriceUSD returns the expected revenue of 1 TH/s for one day in US dollars at t,
// before pool fees: (subsidy + fees) · 86400·10^12 / (D·2^32) · BTCUSD. It is a rate:
// a float by nature.
func (e Economics) HashpriceUSD(t time.Time) float64 {
	if !(e.Difficulty > 0) {
		return 0
	}
	sub := e.SubsidyBTC
	if sub == 0 {
		sub = Subsidy(t)
	}
	btc := (sub + e.FeesBTCPerBlock) * 86400e12 / (e.Difficulty * math.Exp2(32))
	return btc * e.BTCUSD
}

// Breakeven returns the electricity price in $/MWh at which a machine making ths
// TH/s from watts W earns exactly its power bill, after the pool fee.
func (e Economics) Breakeven(t time.Time, ths, watts float64) float64 {
	if !(watts > 0) {
		return 0
	}
	return e.HashpriceUSD(t) * ths * (1 - e.PoolFee) * 1e6 / (24 * watts)
}
