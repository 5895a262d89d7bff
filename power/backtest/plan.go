package backtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/hashgrid/hashgrid/power"
)

// PlanRow is one split of the site's capacity between AI hosting and mining.
type PlanRow struct {
	AIShare        float64     `json:"ai_share"` // fraction of capacity_mw rented to AI
	AIMW           float64     `json:"ai_mw"`
	Machines       int         `json:"machines"`
	MiningMicro    int64       `json:"mining_profit_micro_usd"`
	AIMicro        int64       `json:"ai_profit_micro_usd"`
	DRMicro        int64       `json:"demand_response_micro_usd"`
	TotalMicro     int64       `json:"total_micro_usd"`
	TotalUSD       json.Number `json:"total_usd"`
	AICurtailedH   float64     `json:"ai_hours_curtailed"`
	AIPenaltyMicro int64       `json:"ai_penalty_micro_usd"`
}

// Plan is the comparison of uses of power over a price history.
type Plan struct {
	Site string    `json:"site"`
	Rows []PlanRow `json:"splits"`
	Best int       `json:"best"` // index in Rows
}

// PlanSplits compares, over the history, mining only (share 0), AI hosting only
// (share 1) and the splits between in tenths of capacity, on the terms of the first AI
// contract. Mining runs the policy with the fleet scaled to the power left; AI load is
// curtailed while the last published price is at or above the contract's curtail_above,
// within its uptime allowance, so no penalty arises unless the allowance is exceeded.
// Demand-response availability is paid on the enrolled MW the mining fleet can cover.
func PlanSplits(c *power.Config, ivs []power.Interval) (*Plan, error) {
	if len(c.AIHosting) == 0 {
		return nil, fmt.Errorf("plan: no [[ai_hosting]] contract to compare with")
	}
	ai := c.AIHosting[0]
	var fullMW float64
	for _, g := range c.Groups {
		w := 0.0
		for _, m := range g.Modes {
			w = math.Max(w, m.Watts)
		}
		fullMW += w * float64(g.Count) / 1e6
	}
	p := &Plan{Site: c.Name}
	for k := 0; k <= 10; k++ {
		share := float64(k) / 10
		row := PlanRow{AIShare: share, AIMW: share * c.CapacityMW}
		scale := math.Min(1, (1-share)*c.CapacityMW/fullMW)
		cc := *c
		cc.Groups = nil
		for _, g := range c.Groups {
			g.Count = int(math.Floor(float64(g.Count) * scale))
			if g.Count > 0 {
				g.StaggerBatch = min(g.StaggerBatch, g.Count)
				cc.Groups = append(cc.Groups, g)
			}
		}
		miningMW := 0.0
		if len(cc.Groups) > 0 {
			sc, err := power.NewScenario(&cc, ivs)
			if err != nil {
				return nil, fmt.Errorf("plan: %w", err)
			}
			res, err := sc.Simulate(power.NewPolicy(), nil)
			if err != nil {
				return nil, fmt.Errorf("plan: %w", err)
			}
			for gi, r := range res {
				row.MiningMicro += int64(r.Profit())
				row.Machines += sc.Models[gi].Count
			}
			miningMW = fullMW * scale
		}
		row.AIMicro, row.AICurtailedH, row.AIPenaltyMicro = aiProfit(ai, row.AIMW, ivs)
		hours := float64(len(ivs)) / 4
		row.DRMicro = int64(power.MicroFromDollars(math.Min(c.DemandResponse.MW, miningMW) * c.DemandResponse.USDPerMWHour * hours))
		row.TotalMicro = row.MiningMicro + row.AIMicro + row.DRMicro
		row.TotalUSD = json.Number(power.Micro(row.TotalMicro).String())
		p.Rows = append(p.Rows, row)
		if row.TotalMicro > p.Rows[p.Best].TotalMicro {
			p.Best = len(p.Rows) - 1
		}
	}
	return p, nil
}

// aiProfit returns the host's profit from renting mw to the tenant over ivs.
func aiProfit(a power.AIContract, mw float64, ivs []power.Interval) (int64, float64, int64) {
	if mw <= 0 {
		return 0, 0, 0
	}
	wh := int64(math.Round(mw * 1e6 / 4)) // one interval at mw
	revenue := power.MicroFromDollars(a.USDPerMWh * mw / 4)
	budget := int(math.Floor((1 - a.Uptime) * float64(len(ivs))))
	curtailAbove := power.Price(math.Round(a.CurtailAbove * 100))
	var total power.Micro
	off := 0
	for t, iv := range ivs {
		if a.CurtailAbove > 0 && t > 0 && ivs[t-1].Price >= curtailAbove && off < budget {
			off++
			continue
		}
		total += revenue - power.EnergyCost(iv.Price, wh)
	}
	return int64(total), float64(off) / 4, 0
}

// WriteText writes the plan as a table.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "site %s: uses of power over the price history\n", p.Site)
	fmt.Fprintf(&b, "%-8s %7s %9s %15s %15s %13s %15s\n", "AI share", "AI MW", "machines", "mining $", "AI $", "DR $", "total $")
	for i, r := range p.Rows {
		label := fmt.Sprintf("%.0f%%", 100*r.AIShare)
		switch {
		case i == 0:
			label += " mining only"
		case i == len(p.Rows)-1:
			label += " AI only"
		}
		mark := ""
		if i == p.Best {
			mark = "  <- best"
		}
		fmt.Fprintf(&b, "%-8s %7.2f %9d %15s %15s %13s %15s%s\n", label, r.AIMW, r.Machines, power.Micro(r.MiningMicro),
			power.Micro(r.AIMicro), power.Micro(r.DRMicro), power.Micro(r.TotalMicro), mark)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
