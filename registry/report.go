package registry

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
)

// Report tolerances and limits.
const (
	// EnergyTolerancePermille is how far two measurements of the same energy (a site
	// meter and its groups, a group meter and the controller, a group and its rating)
	// may differ before it is flagged: 2 %, above class-1 meter error plus interval
	// alignment.
	EnergyTolerancePermille = 20
	MaxReportPeriod         = 400 * 24 * time.Hour
)

// Discrepancy severities.
const (
	SeverityError   = "error"   // evidence contradicts the declaration
	SeverityWarning = "warning" // evidence is missing or does not add up
)

// Discrepancy is one finding of a report, with the evidence behind it.
type Discrepancy struct {
	Code     string   `json:"code"`
	Severity string   `json:"severity"`
	Group    string   `json:"group,omitempty"`
	Message  string   `json:"message"`
	Evidence []string `json:"evidence,omitempty"`
}

// ClassTotal is what a report measured for one workload class.
type ClassTotal struct {
	Class           string   `json:"class"`
	Name            string   `json:"name"`
	Industry        string   `json:"industry"`
	PositiveList    bool     `json:"on_positive_list"`
	Groups          []string `json:"groups"`
	EnergyWh        int64    `json:"energy_wh"`
	Accepted        uint64   `json:"accepted_shares"`
	Rejected        uint64   `json:"rejected_shares"`
	Hashes          string   `json:"hashes"` // decimal: accepted difficulty · 2^32
	GPUMilliHours   int64    `json:"gpu_milli_hours"`
	CPUMilliHours   int64    `json:"cpu_milli_hours,omitempty"` // leased compute's metered CPU time
	RevenueSat      int64    `json:"revenue_sat"`
	RevenueMicroUSD int64    `json:"revenue_micro_usd"`
	work            hashgrid.Work
}

// Declared is one declaration in force during a report's period.
type Declared struct {
	Class        string    `json:"class"`
	Name         string    `json:"name"`
	PositiveList bool      `json:"on_positive_list"`
	From         time.Time `json:"from"`
}

// GroupReport sets a device group's declaration against its measurements.
type GroupReport struct {
	Group              string     `json:"group"`
	Declared           []Declared `json:"declared"`
	Devices            []Device   `json:"devices"`
	RatedW             int64      `json:"rated_w"`
	GPUs               int64      `json:"gpus"`
	CapacityWh         int64      `json:"capacity_wh"`
	EnergyWh           int64      `json:"energy_wh"`
	EnergySource       string     `json:"energy_source"` // meter, controller or none
	ControllerWh       int64      `json:"controller_wh"`
	MeterWh            int64      `json:"meter_wh"`
	Accepted           uint64     `json:"accepted_shares"`
	Rejected           uint64     `json:"rejected_shares"`
	Hashes             string     `json:"hashes"`
	Workers            []string   `json:"workers,omitempty"`
	Jobs               int        `json:"jobs"`
	GPUMilliHours      int64      `json:"gpu_milli_hours"`
	GPUCapacityMilliHr int64      `json:"gpu_capacity_milli_hours"`
	CPUMilliHours      int64      `json:"cpu_milli_hours,omitempty"`          // leased compute's metered CPU time
	Cores              int64      `json:"cores,omitempty"`                    // Σ devices' count × cores
	CPUCapacityMilliHr int64      `json:"cpu_capacity_milli_hours,omitempty"` // the cores over the period
	RevenueSat         int64      `json:"revenue_sat"`
	RevenueMicroUSD    int64      `json:"revenue_micro_usd"`
	MeasuredAs         []string   `json:"measured_as"` // kinds of activity the evidence shows
	// ShareCommitments are the pool entries' commitments to this group's accepted
	// shares, one per snapshot in the period that has them.
	ShareCommitments []ShareCommitment `json:"share_commitments,omitempty"`
	work             hashgrid.Work
}

// ShareCommitment is one pool entry's commitment to a group's shares.
type ShareCommitment struct {
	Entry uint64    `json:"entry"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	PoolGroupShares
}

// SiteEnergy compares the site meters with the sum of the groups.
type SiteEnergy struct {
	SiteMetered   bool  `json:"site_metered"`
	SiteMeterWh   int64 `json:"site_meter_wh"`
	GroupsWh      int64 `json:"groups_wh"`
	UnaccountedWh int64 `json:"unaccounted_wh"` // site meter minus groups, when metered
	CapacityWh    int64 `json:"capacity_wh"`    // connection capacity over the period
}

// Report is a site's declared workloads set against the evidence for a period.
type Report struct {
	Format        string        `json:"format"`
	Operator      Operator      `json:"operator"`
	Site          Site          `json:"site"`
	From          time.Time     `json:"from"`
	To            time.Time     `json:"to"`
	Generated     time.Time     `json:"generated"`
	LogHeadSeq    uint64        `json:"log_head_seq"` // last entry the report was built from
	LogHeadHash   string        `json:"log_head_hash"`
	Energy        SiteEnergy    `json:"energy"`
	Classes       []ClassTotal  `json:"classes"`
	Groups        []GroupReport `json:"groups"`
	Discrepancies []Discrepancy `json:"discrepancies"`
	Evidence      []ImportRef   `json:"evidence"` // import entries that contributed
	PoolExcluded  []string      `json:"pool_excluded,omitempty"`
}

const reportFormat = "hashgrid-registry-report/1"

// reportEntryBody is the log entry of a report: hashes of what was written.
type reportEntryBody struct {
	Site          string    `json:"site"`
	From          time.Time `json:"from"`
	To            time.Time `json:"to"`
	ContentSHA256 string    `json:"content_sha256"` // of the compacted report JSON
	HTMLSHA256    string    `json:"html_sha256"`
	LogHeadSeq    uint64    `json:"log_head_seq"`
	LogHeadHash   string    `json:"log_head_hash"`
}

// prorate returns the share of v that falls in [from, to) of an interval [s, e),
// assuming an even rate, rounded down.
func prorate(v int64, s, e, from, to time.Time) int64 {
	lo, hi := s, e
	if from.After(lo) {
		lo = from
	}
	if to.Before(hi) {
		hi = to
	}
	if !hi.After(lo) {
		return 0
	}
	if !lo.After(s) && !hi.Before(e) {
		return v
	}
	x := new(big.Int).Mul(big.NewInt(v), big.NewInt(int64(hi.Sub(lo))))
	return x.Quo(x, big.NewInt(int64(e.Sub(s)))).Int64()
}

// overPeriod returns w (per hour) over d, as watt-hours, rounded down.
func overPeriod(w int64, d time.Duration) int64 {
	x := new(big.Int).Mul(big.NewInt(w), big.NewInt(int64(d)))
	return x.Quo(x, big.NewInt(int64(time.Hour))).Int64()
}

func over(a, b int64) bool { return a*1000 > b*(1000+EnergyTolerancePermille) }

// buildReport computes a report from the state. It does not touch the log.
func buildReport(s *State, site string, from, to, now time.Time) (*Report, error) {
	st, ok := s.Sites[site]
	if !ok {
		return nil, fmt.Errorf("report: unknown site %q", site)
	}
	if !to.After(from) || to.Sub(from) > MaxReportPeriod {
		return nil, fmt.Errorf("report: period %s..%s is empty or longer than %s", from.Format(time.RFC3339), to.Format(time.RFC3339), MaxReportPeriod)
	}
	period := to.Sub(from)
	rep := &Report{
		Format: reportFormat, Operator: s.Operators[st.Operator], Site: st, From: from, To: to,
		Generated: now, LogHeadSeq: s.HeadSeq, LogHeadHash: s.HeadHash,
		Discrepancies: []Discrepancy{}, Evidence: []ImportRef{},
	}
	flag := func(sev, code, group, msg string, ev ...string) {
		rep.Discrepancies = append(rep.Discrepancies, Discrepancy{Code: code, Severity: sev, Group: group, Message: msg, Evidence: ev})
	}
	used := map[uint64]bool{}

	classes := map[string]*ClassTotal{}
	classOf := func(g string, t time.Time) *ClassTotal {
		w, ok := s.declaredAt(groupKey{site, g}, t)
		id, k := ClassUndeclared, Class{ID: ClassUndeclared, Name: "No declared workload"}
		if ok {
			id, k = w.Class.ID, w.Class
		}
		c := classes[id]
		if c == nil {
			c = &ClassTotal{Class: id, Name: k.Name, Industry: k.Industry, PositiveList: k.PositiveList}
			classes[id] = c
		}
		if !contains(c.Groups, g) {
			c.Groups = append(c.Groups, g)
		}
		return c
	}
	pow := func(g string, t time.Time) (bool, string) {
		w, ok := s.declaredAt(groupKey{site, g}, t)
		if !ok {
			return false, "no declared workload"
		}
		return w.Class.ProofOfWork, "declared " + w.Class.ID
	}

	groups := map[string]*GroupReport{}
	var names []string
	group := func(g string) *GroupReport {
		if gr := groups[g]; gr != nil {
			return gr
		}
		gr := &GroupReport{Group: g, Declared: []Declared{}, Devices: s.devicesIn(groupKey{site, g}), MeasuredAs: []string{}}
		for _, d := range gr.Devices {
			gr.RatedW += d.Count * d.RatedW
			gr.GPUs += d.Count * d.GPUs
			gr.Cores += d.Count * d.Cores
		}
		gr.CapacityWh = overPeriod(gr.RatedW, period)
		gr.GPUCapacityMilliHr = overPeriod(gr.GPUs*1000, period)
		gr.CPUCapacityMilliHr = overPeriod(gr.Cores*1000, period)
		// Declarations in force during the period: the one at its start and any later.
		if w, ok := s.declaredAt(groupKey{site, g}, from); ok {
			gr.Declared = append(gr.Declared, Declared{w.Class.ID, w.Class.Name, w.Class.PositiveList, w.From})
		}
		for _, w := range s.Workloads {
			if w.Site == site && w.Group == g && w.From.After(from) && w.From.Before(to) {
				gr.Declared = append(gr.Declared, Declared{w.Class.ID, w.Class.Name, w.Class.PositiveList, w.From})
			}
		}
		sort.Slice(gr.Declared, func(i, j int) bool { return gr.Declared[i].From.Before(gr.Declared[j].From) })
		groups[g] = gr
		names = append(names, g)
		return gr
	}
	for _, g := range s.groups(site) {
		group(g)
	}

	// Energy: a group with meter readings in the period is counted from its meter, the
	// controller's figure is kept for comparison.
	metered := map[string]bool{}
	for _, m := range s.Meters {
		if m.Site == site && m.Group != "" && m.Start.Before(to) && m.End.After(from) {
			metered[m.Group] = true
		}
	}
	type hashSeen struct {
		n   int
		max float64
	}
	hashing := map[string]*hashSeen{}
	type computeSeen struct{ n, wh int64 }
	leasing := map[string]*computeSeen{}
	seqOf := s.importSeqs()
	undeclaredWh := map[string]int64{}
	for _, r := range s.Energy {
		if r.Site != site {
			continue
		}
		wh := prorate(r.EnergyWh, r.Start, r.End, from, to)
		if wh == 0 && !(r.Start.Before(to) && r.End.After(from)) {
			continue
		}
		used[seqOf[r.key()]] = true
		gr := group(r.Group)
		gr.ControllerWh += wh
		if !metered[r.Group] {
			gr.EnergyWh += wh
			classOf(r.Group, r.Start).EnergyWh += wh
			if _, ok := s.declaredAt(groupKey{site, r.Group}, r.Start); !ok {
				undeclaredWh[r.Group] += wh
			}
		}
		if r.Workload == WorkloadCompute {
			if ok, _ := pow(r.Group, r.Start); ok {
				c := leasing[r.Group]
				if c == nil {
					c = &computeSeen{}
					leasing[r.Group] = c
				}
				c.n++
				c.wh += wh
			}
		}
		if r.HashrateGHs > 0 {
			if ok, _ := pow(r.Group, r.Start); !ok {
				h := hashing[r.Group]
				if h == nil {
					h = &hashSeen{}
					hashing[r.Group] = h
				}
				h.n++
				h.max = max(h.max, r.HashrateGHs)
			}
		}
	}
	for _, m := range s.Meters {
		if m.Site != site || !(m.Start.Before(to) && m.End.After(from)) {
			continue
		}
		used[seqOf["m\x00"+m.key()]] = true
		wh := prorate(m.EnergyWh, m.Start, m.End, from, to)
		if m.Group == "" {
			rep.Energy.SiteMetered = true
			rep.Energy.SiteMeterWh += wh
			continue
		}
		gr := group(m.Group)
		gr.MeterWh += wh
		gr.EnergyWh += wh
		classOf(m.Group, m.Start).EnergyWh += wh
		if _, ok := s.declaredAt(groupKey{site, m.Group}, m.Start); !ok {
			undeclaredWh[m.Group] += wh
		}
	}
	for _, g := range s.MeterGaps {
		if g.Site == site && g.Start.Before(to) && g.End.After(from) {
			flag(SeverityWarning, "meter_gap", g.Group, fmt.Sprintf("meter %s has no readings for %s..%s", g.Meter, g.Start.Format(time.RFC3339), g.End.Format(time.RFC3339)), "meter import: "+g.Where)
		}
	}

	// Pool shares, mapped to groups by the declared payout addresses and worker patterns.
	for _, p := range s.Pool {
		if p.Site != site || !(p.From.Before(to) && p.To.After(from)) {
			continue
		}
		if p.From.Before(from) || p.To.After(to) {
			rep.PoolExcluded = append(rep.PoolExcluded, fmt.Sprintf("entry %d: %s..%s straddles the period", seqOf[poolKey(p)], p.From.Format(time.RFC3339), p.To.Format(time.RFC3339)))
			continue
		}
		seq := seqOf[poolKey(p)]
		used[seq] = true
		summed := map[string]uint64{}
		for _, w := range p.Workers {
			gs := s.workerGroups(site, w)
			name := w.Address + "." + w.Name
			switch len(gs) {
			case 0:
				flag(SeverityWarning, "unmapped_pool_worker", "", fmt.Sprintf("pool worker %s matches no declared device pattern", name),
					fmt.Sprintf("pool entry %d (%s..%s): %d accepted shares, %s hashes", seq, p.From.Format(time.RFC3339), p.To.Format(time.RFC3339), w.Accepted, w.Work.Big().String()))
				continue
			case 1:
			default:
				flag(SeverityWarning, "ambiguous_pool_worker", gs[0], fmt.Sprintf("pool worker %s matches devices of groups %s; counted in %s", name, strings.Join(gs, ", "), gs[0]))
			}
			g := gs[0]
			summed[g] += w.Accepted
			gr := group(g)
			gr.Accepted += w.Accepted
			gr.Rejected += w.Rejected
			gr.work = gr.work.Plus(w.Work)
			if !contains(gr.Workers, name) {
				gr.Workers = append(gr.Workers, name)
			}
			c := classOf(g, p.From)
			c.Accepted += w.Accepted
			c.Rejected += w.Rejected
			c.work = c.work.Plus(w.Work)
			if ok, why := pow(g, p.From); !ok && w.Accepted > 0 {
				flag(SeverityError, "pow_shares_undeclared", g,
					fmt.Sprintf("group %s (%s) submitted proof-of-work shares", g, why),
					fmt.Sprintf("pool entry %d (%s..%s): worker %s, %d accepted, %d rejected shares, %s hashes", seq,
						p.From.Format(time.RFC3339), p.To.Format(time.RFC3339), name, w.Accepted, w.Rejected, w.Work.Big().String()))
			}
		}
		if p.SharesListed {
			committed := map[string]uint64{}
			for _, c := range p.Groups {
				committed[c.Group] = c.Accepted
				gr := group(c.Group)
				gr.ShareCommitments = append(gr.ShareCommitments, ShareCommitment{Entry: seq, From: p.From, To: p.To, PoolGroupShares: c})
			}
			var gs []string
			for g := range summed {
				gs = append(gs, g)
			}
			for g := range committed {
				if _, ok := summed[g]; !ok {
					gs = append(gs, g)
				}
			}
			sort.Strings(gs)
			for _, g := range gs {
				if summed[g] != committed[g] {
					flag(SeverityWarning, "pool_share_count_mismatch", g, fmt.Sprintf("group %s: the pool's worker counts and its listed shares disagree", g),
						fmt.Sprintf("pool entry %d (%s..%s): workers %d accepted, %d accepted shares listed", seq, p.From.Format(time.RFC3339), p.To.Format(time.RFC3339), summed[g], committed[g]))
				}
			}
		}
	}
	for g, c := range leasing {
		_, why := pow(g, from)
		flag(SeverityWarning, "controller_compute_on_pow_group", g,
			fmt.Sprintf("the power controller reports group %s leasing compute (%s): its energy then went to compute, not mining", g, why),
			fmt.Sprintf("%d energy intervals with workload compute, %d Wh", c.n, c.wh))
	}
	for g, h := range hashing {
		_, why := pow(g, from)
		flag(SeverityError, "controller_hashrate_undeclared", g,
			fmt.Sprintf("the power controller reports hashrate for group %s (%s)", g, why),
			fmt.Sprintf("%d energy intervals with hashrate, up to %.3f GH/s", h.n, h.max))
	}

	// AI jobs.
	for _, j := range s.Jobs {
		if j.Site != site || !(j.Start.Before(to) && j.End.After(from)) {
			continue
		}
		used[seqOf["j\x00"+j.Job]] = true
		gr := group(j.Group)
		mh := prorate(j.GPUMilliHours, j.Start, j.End, from, to)
		gr.Jobs++
		gr.GPUMilliHours += mh
		c := classOf(j.Group, j.Start)
		c.GPUMilliHours += mh
		ch := prorate(j.CPUMilliHours, j.Start, j.End, from, to)
		gr.CPUMilliHours += ch
		c.CPUMilliHours += ch
		rev := prorate(j.RevenueMicroUSD, j.Start, j.End, from, to)
		gr.RevenueMicroUSD += rev
		c.RevenueMicroUSD += rev
		if w, ok := s.declaredAt(groupKey{site, j.Group}, j.Start); !ok || !w.Class.Jobs {
			why := "no declared workload"
			if ok {
				why = "declared " + w.Class.ID
			}
			flag(SeverityError, "jobs_undeclared", j.Group, fmt.Sprintf("group %s (%s) ran AI job %s", j.Group, why, j.Job),
				fmt.Sprintf("job %s %s..%s, %s GPU-hours", j.Job, j.Start.Format(time.RFC3339), j.End.Format(time.RFC3339), milli(j.GPUMilliHours)))
		}
		if jc := overPeriod(gr.GPUs*1000, j.End.Sub(j.Start)); j.GPUMilliHours > jc {
			flag(SeverityError, "gpu_hours_exceed_capacity", j.Group,
				fmt.Sprintf("job %s claims more GPU-hours than group %s has GPUs for", j.Job, j.Group),
				fmt.Sprintf("job %s: %s GPU-hours in %s; group has %d GPUs, at most %s GPU-hours", j.Job, milli(j.GPUMilliHours), j.End.Sub(j.Start), gr.GPUs, milli(jc)))
		}
		if jc := overPeriod(gr.Cores*1000, j.End.Sub(j.Start)); j.CPUMilliHours > jc {
			flag(SeverityError, "cpu_hours_exceed_capacity", j.Group,
				fmt.Sprintf("job %s claims more CPU-hours than group %s has cores for", j.Job, j.Group),
				fmt.Sprintf("job %s: %s CPU-hours in %s; group has %d cores, at most %s CPU-hours", j.Job, milli(j.CPUMilliHours), j.End.Sub(j.Start), gr.Cores, milli(jc)))
		}
	}

	// Revenue.
	for _, v := range s.Revenue {
		if v.Site != site || !(v.From.Before(to) && v.To.After(from)) {
			continue
		}
		gr := group(v.Group)
		c := classOf(v.Group, v.From)
		sat, usd := prorate(v.Sat, v.From, v.To, from, to), prorate(v.MicroUSD, v.From, v.To, from, to)
		gr.RevenueSat += sat
		gr.RevenueMicroUSD += usd
		c.RevenueSat += sat
		c.RevenueMicroUSD += usd
	}

	// Per-group checks.
	poolCovered := false
	for _, p := range s.Pool {
		if p.Site == site && !p.From.Before(from) && !p.To.After(to) {
			poolCovered = true
		}
	}
	sort.Strings(names)
	for _, g := range names {
		gr := groups[g]
		gr.Hashes = gr.work.Big().String()
		if gr.Accepted > 0 || hashing[g] != nil {
			gr.MeasuredAs = append(gr.MeasuredAs, "proof-of-work")
		}
		if gr.Jobs > 0 {
			gr.MeasuredAs = append(gr.MeasuredAs, "ai-jobs")
		}
		switch {
		case gr.MeterWh > 0 || metered[g]:
			gr.EnergySource = "meter"
		case gr.ControllerWh > 0:
			gr.EnergySource = "controller"
		default:
			gr.EnergySource = "none"
		}
		rep.Energy.GroupsWh += gr.EnergyWh
		if len(gr.Devices) == 0 {
			flag(SeverityError, "energy_unregistered_group", g, fmt.Sprintf("energy or work recorded for group %s, which has no registered devices", g),
				fmt.Sprintf("%d Wh", gr.EnergyWh))
		} else if wh := undeclaredWh[g]; wh > 0 {
			flag(SeverityError, "energy_undeclared", g, fmt.Sprintf("group %s used energy while no workload was declared for it", g),
				fmt.Sprintf("%d Wh without a declaration", wh))
		}
		if len(gr.Devices) > 0 && over(gr.EnergyWh, gr.CapacityWh) {
			flag(SeverityError, "energy_exceeds_rating", g, fmt.Sprintf("group %s used more energy than its declared devices are rated for", g),
				fmt.Sprintf("%d Wh measured (%s); rated %d W over %s is %d Wh", gr.EnergyWh, gr.EnergySource, gr.RatedW, period, gr.CapacityWh))
		}
		if metered[g] && gr.ControllerWh > 0 && (over(gr.MeterWh, gr.ControllerWh) || over(gr.ControllerWh, gr.MeterWh)) {
			flag(SeverityWarning, "meter_controller_mismatch", g, fmt.Sprintf("group %s: meter and power controller disagree", g),
				fmt.Sprintf("meter %d Wh, controller %d Wh", gr.MeterWh, gr.ControllerWh))
		}
		if len(gr.Devices) > 0 && gr.GPUMilliHours > gr.GPUCapacityMilliHr {
			flag(SeverityError, "gpu_hours_exceed_capacity", g, fmt.Sprintf("group %s: job records claim more GPU-hours than its GPUs can give in the period", g),
				fmt.Sprintf("%s GPU-hours from %d jobs; %d GPUs over %s is %s GPU-hours", milli(gr.GPUMilliHours), gr.Jobs, gr.GPUs, period, milli(gr.GPUCapacityMilliHr)))
		}
		if len(gr.Devices) > 0 && gr.CPUMilliHours > gr.CPUCapacityMilliHr {
			flag(SeverityError, "cpu_hours_exceed_capacity", g, fmt.Sprintf("group %s: job records claim more CPU-hours than its cores can give in the period", g),
				fmt.Sprintf("%s CPU-hours from %d jobs; %d cores over %s is %s CPU-hours", milli(gr.CPUMilliHours), gr.Jobs, gr.Cores, period, milli(gr.CPUCapacityMilliHr)))
		}
		for _, d := range gr.Declared {
			if !d.PositiveList {
				flag(SeverityWarning, "class_not_on_positive_list", g, fmt.Sprintf("group %s is declared as %s, which is not on the positive list", g, d.Class),
					"declared from "+d.From.Format(time.RFC3339))
			}
		}
		if w, ok := s.declaredAt(groupKey{site, g}, from); ok && len(gr.Declared) == 1 && len(gr.Devices) > 0 {
			switch {
			case w.Class.ProofOfWork && !poolCovered:
				flag(SeverityWarning, "no_pool_evidence", g, fmt.Sprintf("group %s is declared %s but no pool shares were imported for the period", g, w.Class.ID))
			case w.Class.ProofOfWork && gr.Accepted == 0 && gr.EnergyWh > 0:
				flag(SeverityWarning, "pow_declared_no_shares", g, fmt.Sprintf("group %s is declared %s and used energy but submitted no accepted shares", g, w.Class.ID),
					fmt.Sprintf("%d Wh measured (%s)", gr.EnergyWh, gr.EnergySource))
			case w.Class.Jobs && gr.Jobs == 0 && gr.EnergyWh > 0:
				flag(SeverityWarning, "jobs_declared_none_recorded", g, fmt.Sprintf("group %s is declared %s and used energy but no job records were imported", g, w.Class.ID),
					fmt.Sprintf("%d Wh measured (%s)", gr.EnergyWh, gr.EnergySource))
			}
		}
		if len(gr.Declared) > 0 && gr.EnergySource == "none" {
			flag(SeverityWarning, "no_energy_evidence", g, fmt.Sprintf("group %s has a declared workload but no energy evidence for the period", g))
		}
		rep.Groups = append(rep.Groups, *gr)
	}

	rep.Energy.CapacityWh = overPeriod(st.CapacityKW*1000, period)
	if rep.Energy.SiteMetered {
		rep.Energy.UnaccountedWh = rep.Energy.SiteMeterWh - rep.Energy.GroupsWh
		switch {
		case over(rep.Energy.SiteMeterWh, rep.Energy.GroupsWh):
			flag(SeverityError, "energy_unaccounted", "", "the site meters show energy that no device group accounts for",
				fmt.Sprintf("site meters %d Wh, groups %d Wh, unaccounted %d Wh", rep.Energy.SiteMeterWh, rep.Energy.GroupsWh, rep.Energy.UnaccountedWh))
		case over(rep.Energy.GroupsWh, rep.Energy.SiteMeterWh):
			flag(SeverityWarning, "energy_exceeds_site_meter", "", "the device groups account for more energy than the site meters show",
				fmt.Sprintf("site meters %d Wh, groups %d Wh", rep.Energy.SiteMeterWh, rep.Energy.GroupsWh))
		}
	}
	if site := max(rep.Energy.SiteMeterWh, rep.Energy.GroupsWh); over(site, rep.Energy.CapacityWh) {
		flag(SeverityError, "energy_exceeds_site_capacity", "", "the site used more energy than its connection capacity allows",
			fmt.Sprintf("%d Wh; %d kW over %s is %d Wh", site, st.CapacityKW, period, rep.Energy.CapacityWh))
	}

	ids := make([]string, 0, len(classes))
	for id := range classes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := classes[id]
		c.Hashes = c.work.Big().String()
		sort.Strings(c.Groups)
		rep.Classes = append(rep.Classes, *c)
	}
	if rep.Classes == nil {
		rep.Classes = []ClassTotal{}
	}
	if rep.Groups == nil {
		rep.Groups = []GroupReport{}
	}
	for _, im := range s.Imports {
		if used[im.Seq] {
			rep.Evidence = append(rep.Evidence, im)
		}
	}
	return rep, nil
}

// workerGroups returns the groups (sorted) whose devices claim a pool worker.
func (s *State) workerGroups(site string, w PoolWorker) []string {
	var gs []string
	for _, d := range s.Devices {
		if d.Site != site || d.PoolAddress != w.Address {
			continue
		}
		if ok, _ := path.Match(d.WorkerPattern, w.Name); d.WorkerPattern == "" || ok {
			if !contains(gs, d.Group) {
				gs = append(gs, d.Group)
			}
		}
	}
	sort.Strings(gs)
	return gs
}

func poolKey(p PoolSnapshot) string {
	return "p\x00" + p.Site + "\x00" + p.From.Format(time.RFC3339Nano)
}

// importSeqs maps each evidence record to the entry that imported it.
func (s *State) importSeqs() map[string]uint64 {
	m := map[string]uint64{}
	// Records are appended in log order, so walking the imports in order and counting
	// records assigns each its entry.
	var ie, im, ij, ip int
	for _, ref := range s.Imports {
		switch ref.Kind {
		case kindEnergy:
			for k := 0; k < ref.Records; k++ {
				m[s.Energy[ie].key()] = ref.Seq
				ie++
			}
		case kindMeter:
			for k := 0; k < ref.Records; k++ {
				m["m\x00"+s.Meters[im].key()] = ref.Seq
				im++
			}
		case kindJobs:
			for k := 0; k < ref.Records; k++ {
				m["j\x00"+s.Jobs[ij].Job] = ref.Seq
				ij++
			}
		case kindPool:
			m[poolKey(s.Pool[ip])] = ref.Seq
			ip++
		}
	}
	return m
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// milli formats thousandths as a decimal.
func milli(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%03d", sign, v/1000, v%1000)
}

// ReportFile is what a report is stored as: the report, the signed log entry that
// records its hash, and the key that signed it.
type ReportFile struct {
	Format    string          `json:"format"`
	PublicKey string          `json:"public_key"`
	Entry     Entry           `json:"entry"`
	Report    json.RawMessage `json:"report"`
	// Anchor, once the log is anchored after the report, names the transaction that
	// commits to it (see AttachAnchor). It is outside the signature: the chain vouches
	// for it.
	Anchor *Anchor `json:"anchor,omitempty"`
}

const reportFileFormat = "hashgrid-registry-report-file/1"

// Report builds the report of site for [from, to), renders it as HTML, and records both
// hashes in a signed log entry. It returns the report file (JSON) and the HTML page.
func (r *Registry) Report(site string, from, to time.Time) (ReportFile, *Report, []byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return ReportFile{}, nil, nil, errors.New("registry: closed after a failed write; reopen it")
	}
	rep, err := buildReport(r.state, site, from.UTC(), to.UTC(), r.now().UTC())
	if err != nil {
		return ReportFile{}, nil, nil, fmt.Errorf("registry: %w", err)
	}
	content, err := json.Marshal(rep)
	if err != nil {
		return ReportFile{}, nil, nil, fmt.Errorf("registry: report: %w", err)
	}
	body := reportEntryBody{Site: site, From: rep.From, To: rep.To, ContentSHA256: sha256Hex(content), LogHeadSeq: rep.LogHeadSeq, LogHeadHash: rep.LogHeadHash}
	var page bytes.Buffer
	if err := renderHTML(&page, rep, r.last.Seq+1, body.ContentSHA256); err != nil {
		return ReportFile{}, nil, nil, fmt.Errorf("registry: report: %w", err)
	}
	body.HTMLSHA256 = sha256Hex(page.Bytes())
	e, err := r.append(kindReport, body)
	if err != nil {
		return ReportFile{}, nil, nil, err
	}
	return ReportFile{Format: reportFileFormat, PublicKey: fmtHex(r.state.PublicKey), Entry: e, Report: content}, rep, page.Bytes(), nil
}

// SaveReport writes a report file and its HTML page into dir as report-<seq>.json and
// report-<seq>.html and returns their paths.
func SaveReport(dir string, f ReportFile, page []byte) (string, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("registry: %w", err)
	}
	base := filepath.Join(dir, fmt.Sprintf("report-%d", f.Entry.Seq))
	if err := writeReportFile(base+".json", f); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".html", page, 0o644); err != nil {
		return "", "", fmt.Errorf("registry: %w", err)
	}
	return base + ".json", base + ".html", nil
}

func writeReportFile(path string, f ReportFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	// Through a temporary file, so that AttachAnchor never leaves half a report.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// MaxReportFileBytes bounds a report file read back.
const MaxReportFileBytes = 256 << 20

func readFileBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxReportFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if len(b) > MaxReportFileBytes {
		return nil, fmt.Errorf("registry: %s: larger than %d bytes", path, MaxReportFileBytes)
	}
	return b, nil
}

// ReportCheck is what VerifyReport found.
type ReportCheck struct {
	Seq        uint64
	Site       string
	From, To   time.Time
	KeyPinned  bool // the key came from pin or from the log, not from the file itself
	HTMLOK     bool // an HTML page was given and matches
	InLog      bool // a log was given and holds this entry
	PublicKey  ed25519.PublicKey
	ContentSHA string
}

// VerifyReport checks a report file offline: the report's content hash is the one in
// its entry, the entry's hash and signature hold, and, when given, the HTML page's hash
// matches and the log holds the same entry. The signing key is pin if set, else the
// log's, else the one the file carries (then KeyPinned is false: the file is only shown
// to be self-consistent). A failure is a *ChainError naming the report's entry.
func VerifyReport(file []byte, pin ed25519.PublicKey, html []byte, logFile []byte) (ReportCheck, error) {
	var l *Log
	if logFile != nil {
		var err error
		if l, err = ReadLog(bytes.NewReader(logFile), pin); err != nil {
			return ReportCheck{}, fmt.Errorf("registry: log: %w", err)
		}
	}
	return VerifyReportIn(file, pin, html, l)
}

// VerifyReportIn is VerifyReport against a log already read; l may be nil.
func VerifyReportIn(file []byte, pin ed25519.PublicKey, html []byte, l *Log) (ReportCheck, error) {
	var f ReportFile
	dec := json.NewDecoder(bytes.NewReader(file))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return ReportCheck{}, fmt.Errorf("registry: report file: %w", err)
	}
	if f.Format != reportFileFormat || f.Entry.Kind != kindReport {
		return ReportCheck{}, fmt.Errorf("registry: report file: not a %s with a report entry", reportFileFormat)
	}
	bad := func(p string) (ReportCheck, error) {
		return ReportCheck{}, &ChainError{Seq: f.Entry.Seq, Problem: p}
	}
	chk := ReportCheck{Seq: f.Entry.Seq}
	var logEntries []Entry
	switch {
	case l != nil:
		if pin != nil && !l.PublicKey.Equal(pin) {
			return bad("the log's key differs from the pinned key")
		}
		logEntries, chk.PublicKey, chk.KeyPinned = l.Entries, l.PublicKey, true
	case pin != nil:
		chk.PublicKey, chk.KeyPinned = pin, true
	default:
		k, err := hexKey(f.PublicKey)
		if err != nil {
			return bad("malformed public key in report file")
		}
		chk.PublicKey = k
	}
	if f.PublicKey != fmtHex(chk.PublicKey) {
		return bad("report file names a different signing key")
	}
	if p := checkEntry(&f.Entry, chk.PublicKey); p != "" {
		return bad("report entry: " + p)
	}
	var body reportEntryBody
	if err := json.Unmarshal(f.Entry.Body, &body); err != nil {
		return bad("malformed report entry body")
	}
	var content bytes.Buffer
	if err := json.Compact(&content, f.Report); err != nil {
		return bad("malformed report: " + err.Error())
	}
	chk.ContentSHA = sha256Hex(content.Bytes())
	if chk.ContentSHA != body.ContentSHA256 {
		return bad("report content does not match the hash in its signed entry (report altered)")
	}
	if html != nil {
		if sha256Hex(html) != body.HTMLSHA256 {
			return bad("HTML page does not match the hash in the signed entry (page altered)")
		}
		chk.HTMLOK = true
	}
	if logEntries != nil {
		if f.Entry.Seq == 0 || f.Entry.Seq > uint64(len(logEntries)) || logEntries[f.Entry.Seq-1].Hash != f.Entry.Hash {
			return bad("the log does not hold this report entry")
		}
		chk.InLog = true
	}
	chk.Site, chk.From, chk.To = body.Site, body.From, body.To
	return chk, nil
}

func hexKey(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("malformed Ed25519 public key (want 64 hex digits)")
	}
	return ed25519.PublicKey(b), nil
}

// ParsePublicKey parses a hex Ed25519 public key (as printed by init and verify).
func ParsePublicKey(s string) (ed25519.PublicKey, error) { return hexKey(strings.TrimSpace(s)) }
