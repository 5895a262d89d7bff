package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pool"
)

// Limits on imported evidence.
const (
	MaxImportBytes   = 256 << 20 // one imported file
	MaxLineBytes     = 64 << 10  // one JSON line or CSV record
	MaxInterval      = 31 * 24 * time.Hour
	MaxEnergyWh      = 1_000_000_000_000 // 1 TWh in one record
	MaxGPUMilliHours = 1_000_000_000_000
	MaxRevenue       = 1 << 53
)

// EnergyRecord is one interval of one machine group as the power controller measured it
// (the lines of <data>/energy.jsonl).
type EnergyRecord struct {
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Site        string    `json:"site"`
	Group       string    `json:"group"`
	Mode        string    `json:"mode"`
	MachinesOn  int64     `json:"machines_on"`
	EnergyWh    int64     `json:"energy_wh"`
	HashrateGHs float64   `json:"hashrate_ghs"` // display only
	// Workload is what the controller says the energy went to: "mining", "compute"
	// (a group leasing compute through a compute market) or empty (curtailed, or a
	// controller that does not say).
	Workload string `json:"workload,omitempty"`
}

func (e EnergyRecord) key() string {
	return e.Site + "\x00" + e.Group + "\x00" + e.Start.UTC().Format(time.RFC3339Nano) + "\x00" + e.End.UTC().Format(time.RFC3339Nano)
}

// MeterReading is one interval of one meter. A meter with no group measures the whole
// site.
type MeterReading struct {
	Meter    string    `json:"meter"`
	Site     string    `json:"site"`
	Group    string    `json:"group,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	EnergyWh int64     `json:"energy_wh"`
}

func (m MeterReading) key() string {
	return m.Meter + "\x00" + m.Start.UTC().Format(time.RFC3339Nano)
}

// MeterGap is a stretch of time a meter has no reading for.
type MeterGap struct {
	Meter string    `json:"meter"`
	Site  string    `json:"site"`
	Group string    `json:"group,omitempty"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Where string    `json:"where"` // lines of the imported file around the gap
}

// JobRecord is one AI job run on a device group.
type JobRecord struct {
	Job             string    `json:"job"`
	Site            string    `json:"site"`
	Group           string    `json:"group"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	GPUMilliHours   int64     `json:"gpu_milli_hours"`
	RevenueMicroUSD int64     `json:"revenue_micro_usd,omitempty"`
	// CPUMilliHours is CPU time, for jobs measured in CPU (leased compute: the
	// provider's agent meters its sandboxed processes); OutputsSHA256 commits to the
	// job's outputs, which a tenant or a spot check can compare.
	CPUMilliHours int64  `json:"cpu_milli_hours,omitempty"`
	OutputsSHA256 string `json:"outputs_sha256,omitempty"`
}

// PoolWorker is one pool worker's accepted and rejected shares in a snapshot.
type PoolWorker struct {
	Address  string        `json:"address"`
	Name     string        `json:"name"`
	Accepted uint64        `json:"accepted"`
	Rejected uint64        `json:"rejected"`
	Work     hashgrid.Work `json:"work"` // sum of accepted share difficulty
}

// PoolSnapshot is the pool's work from a site's declared payout addresses in [From, To).
type PoolSnapshot struct {
	Site    string       `json:"site"`
	From    time.Time    `json:"from"`
	To      time.Time    `json:"to"`
	Workers []PoolWorker `json:"workers"`
	// Groups, when the pool's store lists its shares, commits to each device group's
	// accepted shares (see PoolGroupShares).
	Groups []PoolGroupShares `json:"groups,omitempty"`
	// SharesListed says the store listed its shares, so that Groups is complete: a
	// group with accepted shares in Workers and none in Groups is then a discrepancy.
	SharesListed bool `json:"shares_listed,omitempty"`
}

// RevenueRecord is revenue the operator declares for a group over a period, with where
// the figure comes from (a pool payout, an invoice).
type RevenueRecord struct {
	Site     string    `json:"site"`
	Group    string    `json:"group"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Sat      int64     `json:"sat,omitempty"`
	MicroUSD int64     `json:"micro_usd,omitempty"`
	Source   string    `json:"source"`
}

// evidenceBody is the body of an import entry; exactly one slice is set.
type evidenceBody struct {
	Source  string          `json:"source"`
	SHA256  string          `json:"sha256,omitempty"`
	Energy  []EnergyRecord  `json:"energy,omitempty"`
	Meters  []MeterReading  `json:"meters,omitempty"`
	Gaps    []MeterGap      `json:"gaps,omitempty"`
	Jobs    []JobRecord     `json:"jobs,omitempty"`
	Pool    *PoolSnapshot   `json:"pool,omitempty"`
	Revenue []RevenueRecord `json:"revenue,omitempty"`
}

// ImportResult says what an import added.
type ImportResult struct {
	Seq     uint64     // entry appended; 0 if nothing was new
	Added   int        // new records
	Skipped int        // records already in the registry
	Gaps    []MeterGap // meter gaps recorded (only with allowGaps)
}

func checkInterval(start, end time.Time) error {
	if start.IsZero() || end.IsZero() {
		return errors.New("start and end are required")
	}
	if !end.After(start) {
		return fmt.Errorf("end %s is not after start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	if end.Sub(start) > MaxInterval {
		return fmt.Errorf("interval longer than %s", MaxInterval)
	}
	return nil
}

// applyEvidence validates and applies an import entry.
func (s *State) applyEvidence(e *Entry, strict func(any) error) error {
	var b evidenceBody
	if err := strict(&b); err != nil {
		return err
	}
	n := 0
	switch e.Kind {
	case kindEnergy:
		for _, r := range b.Energy {
			if _, ok := s.Sites[r.Site]; !ok {
				return fmt.Errorf("energy: unknown site %q", r.Site)
			}
			if err := checkInterval(r.Start, r.End); err != nil {
				return fmt.Errorf("energy %s/%s: %w", r.Site, r.Group, err)
			}
			if _, dup := s.energyKeys[r.key()]; dup {
				return fmt.Errorf("energy %s/%s at %s: already recorded", r.Site, r.Group, r.Start.Format(time.RFC3339))
			}
		}
		for _, r := range b.Energy {
			s.energyKeys[r.key()] = r
			s.Energy = append(s.Energy, r)
		}
		n = len(b.Energy)
	case kindMeter:
		for _, m := range b.Meters {
			if _, ok := s.Sites[m.Site]; !ok {
				return fmt.Errorf("meter %q: unknown site %q", m.Meter, m.Site)
			}
			if _, dup := s.meterKeys[m.key()]; dup {
				return fmt.Errorf("meter %q at %s: already recorded", m.Meter, m.Start.Format(time.RFC3339))
			}
		}
		for _, m := range b.Meters {
			s.meterKeys[m.key()] = m
			s.Meters = append(s.Meters, m)
		}
		s.MeterGaps = append(s.MeterGaps, b.Gaps...)
		n = len(b.Meters)
	case kindJobs:
		for _, j := range b.Jobs {
			if _, dup := s.jobKeys[j.Job]; dup {
				return fmt.Errorf("job %q: already recorded", j.Job)
			}
			if len(s.devicesIn(groupKey{j.Site, j.Group})) == 0 {
				return fmt.Errorf("job %q: unknown device group %s/%s", j.Job, j.Site, j.Group)
			}
		}
		for _, j := range b.Jobs {
			s.jobKeys[j.Job] = j
			s.Jobs = append(s.Jobs, j)
		}
		n = len(b.Jobs)
	case kindPool:
		p := b.Pool
		if p == nil {
			return errors.New("pool: no snapshot")
		}
		if _, ok := s.Sites[p.Site]; !ok {
			return fmt.Errorf("pool: unknown site %q", p.Site)
		}
		if err := checkInterval(p.From, p.To); err != nil {
			return fmt.Errorf("pool: %w", err)
		}
		for _, o := range s.Pool {
			if o.Site == p.Site && p.From.Before(o.To) && o.From.Before(p.To) {
				return fmt.Errorf("pool: site %q already has shares for %s..%s, which overlaps %s..%s",
					p.Site, o.From.Format(time.RFC3339), o.To.Format(time.RFC3339), p.From.Format(time.RFC3339), p.To.Format(time.RFC3339))
			}
		}
		if len(p.Groups) > 0 && !p.SharesListed {
			return errors.New("pool: share commitments without shares_listed")
		}
		for i, g := range p.Groups {
			if len(s.devicesIn(groupKey{p.Site, g.Group})) == 0 {
				return fmt.Errorf("pool: shares of unknown device group %s/%s", p.Site, g.Group)
			}
			if i > 0 && p.Groups[i-1].Group >= g.Group {
				return errors.New("pool: share groups not sorted or repeated")
			}
			if b, err := hex.DecodeString(g.Root); err != nil || len(b) != 32 || g.Accepted == 0 || g.FirstSeq > g.LastSeq {
				return fmt.Errorf("pool: malformed share commitment of group %s", g.Group)
			}
		}
		s.Pool = append(s.Pool, *p)
		n = len(p.Workers)
	case kindRevenue:
		for _, v := range b.Revenue {
			if len(s.devicesIn(groupKey{v.Site, v.Group})) == 0 {
				return fmt.Errorf("revenue: unknown device group %s/%s", v.Site, v.Group)
			}
			if err := checkInterval(v.From, v.To); err != nil {
				return fmt.Errorf("revenue: %w", err)
			}
			if v.Sat < 0 || v.MicroUSD < 0 || v.Sat > MaxRevenue || v.MicroUSD > MaxRevenue {
				return errors.New("revenue: amount out of range")
			}
		}
		s.Revenue = append(s.Revenue, b.Revenue...)
		n = len(b.Revenue)
	}
	s.Imports = append(s.Imports, ImportRef{Seq: e.Seq, Kind: e.Kind, Source: b.Source, SHA256: b.SHA256, Records: n})
	return nil
}

// lineReader reads a bounded input line by line and hashes everything it reads.
type lineReader struct {
	sc   *bufio.Scanner
	lim  *io.LimitedReader
	line int
}

// err reports a read error or an input over MaxImportBytes, naming the line.
func (lr *lineReader) err(what string) error {
	if err := lr.sc.Err(); err != nil {
		return fmt.Errorf("%s: line %d: %w", what, lr.line+1, err)
	}
	if lr.lim.N <= 0 {
		return fmt.Errorf("%s: larger than %d bytes", what, MaxImportBytes)
	}
	return nil
}

func newLineReader(r io.Reader) (*lineReader, func() string) {
	h := sha256.New()
	lim := &io.LimitedReader{R: r, N: MaxImportBytes + 1}
	sc := bufio.NewScanner(io.TeeReader(lim, h))
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	return &lineReader{sc: sc, lim: lim}, func() string { return hex.EncodeToString(h.Sum(nil)) }
}

// parseTime accepts RFC 3339 with or without fractional seconds.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time", field, s)
	}
	return t.UTC(), nil
}

// wholeNumber parses a JSON number that must be a non-negative integer up to max.
func wholeNumber(field string, n json.Number, max int64) (int64, error) {
	if n == "" {
		return 0, fmt.Errorf("%s is required", field)
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %s is not a whole number", field, n)
	}
	if v < 0 || v > max {
		return 0, fmt.Errorf("%s: %d out of range 0..%d", field, v, max)
	}
	return v, nil
}

type energyLine struct {
	Start       string      `json:"start"`
	End         string      `json:"end"`
	Site        string      `json:"site"`
	Group       string      `json:"group"`
	Mode        string      `json:"mode"`
	MachinesOn  json.Number `json:"machines_on"`
	EnergyWh    json.Number `json:"energy_wh"`
	HashrateGHs json.Number `json:"hashrate_ghs"`
	Workload    string      `json:"workload"`
}

// ParseEnergy reads the power controller's energy log: one JSON object per line with
// start, end (RFC 3339), site, group, mode, machines_on, energy_wh (integer Wh),
// hashrate_ghs and, optionally, workload ("mining" or "compute"). Blank lines are
// skipped; errors name the line.
func ParseEnergy(r io.Reader) ([]EnergyRecord, string, error) {
	lr, sum := newLineReader(r)
	var out []EnergyRecord
	for lr.sc.Scan() {
		lr.line++
		b := bytes.TrimSpace(lr.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rec, err := parseEnergyLine(b)
		if err != nil {
			return nil, "", fmt.Errorf("energy: line %d: %w", lr.line, err)
		}
		out = append(out, rec)
	}
	if err := lr.err("energy"); err != nil {
		return nil, "", err
	}
	return out, sum(), nil
}

func parseEnergyLine(b []byte) (EnergyRecord, error) {
	var l energyLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&l); err != nil {
		return EnergyRecord{}, err
	}
	if dec.More() {
		return EnergyRecord{}, errors.New("more than one object on the line")
	}
	var rec EnergyRecord
	var err error
	if rec.Start, err = parseTime("start", l.Start); err != nil {
		return rec, err
	}
	if rec.End, err = parseTime("end", l.End); err != nil {
		return rec, err
	}
	if err := checkInterval(rec.Start, rec.End); err != nil {
		return rec, err
	}
	if l.Site == "" || l.Group == "" {
		return rec, errors.New("site and group are required")
	}
	rec.Site, rec.Group, rec.Mode = l.Site, l.Group, l.Mode
	switch l.Workload {
	case "", WorkloadMining, WorkloadCompute:
		rec.Workload = l.Workload
	default:
		return rec, fmt.Errorf("workload: %q is not %q or %q", l.Workload, WorkloadMining, WorkloadCompute)
	}
	if rec.MachinesOn, err = wholeNumber("machines_on", l.MachinesOn, MaxDeviceCount); err != nil {
		return rec, err
	}
	if rec.EnergyWh, err = wholeNumber("energy_wh", l.EnergyWh, MaxEnergyWh); err != nil {
		return rec, err
	}
	if l.HashrateGHs != "" {
		h, err := strconv.ParseFloat(string(l.HashrateGHs), 64)
		if err != nil || h < 0 || math.IsInf(h, 0) || math.IsNaN(h) {
			return rec, fmt.Errorf("hashrate_ghs: %s is not a non-negative number", l.HashrateGHs)
		}
		rec.HashrateGHs = h
	}
	return rec, nil
}

// MeterHeader is the header line a meter CSV must start with. group may be empty for a
// meter of the whole site; start and end are RFC 3339; energy_wh is integer Wh for
// [start, end).
const MeterHeader = "meter_id,site,group,start,end,energy_wh"

// meterRow is a parsed reading with the line it came from.
type meterRow struct {
	MeterReading
	line int
}

// ParseMeters reads a meter CSV (see MeterHeader). It checks each meter's readings for
// overlaps (always an error) and gaps: a gap is an error unless allowGaps, in which case
// it is returned. prior readings (already in the registry) take part in the checks.
func ParseMeters(r io.Reader, prior []MeterReading, allowGaps bool) ([]MeterReading, []MeterGap, string, error) {
	rows, sum, err := parseMeterCSV(r)
	if err != nil {
		return nil, nil, "", err
	}
	gaps, err := checkMeters(rows, prior, allowGaps)
	if err != nil {
		return nil, nil, "", err
	}
	out := make([]MeterReading, len(rows))
	for i, r := range rows {
		out[i] = r.MeterReading
	}
	return out, gaps, sum, nil
}

// parseMeterCSV parses the records of a meter CSV with their line numbers.
func parseMeterCSV(r io.Reader) ([]meterRow, string, error) {
	h := sha256.New()
	lr := io.LimitReader(r, MaxImportBytes+1)
	cr := csv.NewReader(io.TeeReader(lr, h))
	cr.FieldsPerRecord = 6
	head, err := cr.Read()
	if err != nil {
		return nil, "", fmt.Errorf("meter csv: line 1: %w", err)
	}
	if got := strings.Join(head, ","); strings.TrimPrefix(got, "\ufeff") != MeterHeader {
		return nil, "", fmt.Errorf("meter csv: line 1: header %q, want %q", got, MeterHeader)
	}
	var rows []meterRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("meter csv: %w", err)
		}
		line, _ := cr.FieldPos(0)
		m, err := parseMeterRow(rec)
		if err != nil {
			return nil, "", fmt.Errorf("meter csv: line %d: %w", line, err)
		}
		if len(rows) >= MaxImportBytes/16 {
			return nil, "", fmt.Errorf("meter csv: line %d: too many records", line)
		}
		rows = append(rows, meterRow{m, line})
	}
	if lr.(*io.LimitedReader).N <= 0 {
		return nil, "", fmt.Errorf("meter csv: larger than %d bytes", MaxImportBytes)
	}
	return rows, hex.EncodeToString(h.Sum(nil)), nil
}

// checkMeters checks new rows together with prior readings: overlaps are an error, gaps
// are returned if allowGaps and an error otherwise.
func checkMeters(rows []meterRow, prior []MeterReading, allowGaps bool) ([]MeterGap, error) {
	all := append([]meterRow(nil), rows...)
	for _, p := range prior {
		all = append(all, meterRow{p, 0})
	}
	gaps, err := meterContinuity(all)
	if err != nil {
		return nil, fmt.Errorf("meter csv: %w", err)
	}
	if len(gaps) > 0 && !allowGaps {
		var b strings.Builder
		for i, g := range gaps {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "meter %s: no reading %s..%s (%s)", g.Meter, g.Start.Format(time.RFC3339), g.End.Format(time.RFC3339), g.Where)
		}
		return nil, fmt.Errorf("meter csv: %d gap(s): %s", len(gaps), b.String())
	}
	return gaps, nil
}

func parseMeterRow(f []string) (MeterReading, error) {
	m := MeterReading{Meter: strings.TrimSpace(f[0]), Site: strings.TrimSpace(f[1]), Group: strings.TrimSpace(f[2])}
	if m.Meter == "" || m.Site == "" {
		return m, errors.New("meter_id and site are required")
	}
	var err error
	if m.Start, err = parseTime("start", f[3]); err != nil {
		return m, err
	}
	if m.End, err = parseTime("end", f[4]); err != nil {
		return m, err
	}
	if err := checkInterval(m.Start, m.End); err != nil {
		return m, err
	}
	if m.EnergyWh, err = wholeNumber("energy_wh", json.Number(strings.TrimSpace(f[5])), MaxEnergyWh); err != nil {
		return m, err
	}
	return m, nil
}

func where(line int) string {
	if line == 0 {
		return "registry"
	}
	return "line " + strconv.Itoa(line)
}

// meterContinuity checks that each meter's readings neither overlap nor leave gaps, and
// that a meter always names the same site and group.
func meterContinuity(rows []meterRow) ([]MeterGap, error) {
	by := map[string][]meterRow{}
	var ids []string
	for _, r := range rows {
		if _, ok := by[r.Meter]; !ok {
			ids = append(ids, r.Meter)
		}
		by[r.Meter] = append(by[r.Meter], r)
	}
	sort.Strings(ids)
	var gaps []MeterGap
	for _, id := range ids {
		rs := by[id]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Start.Before(rs[j].Start) })
		for i, r := range rs {
			if r.Site != rs[0].Site || r.Group != rs[0].Group {
				return nil, fmt.Errorf("%s: meter %s is for %s/%s here but for %s/%s at %s", where(r.line), id, r.Site, r.Group, rs[0].Site, rs[0].Group, where(rs[0].line))
			}
			if i == 0 {
				continue
			}
			p := rs[i-1]
			switch {
			case r.Start.Before(p.End):
				if r.line == 0 && p.line == 0 {
					continue // both already in the registry
				}
				return nil, fmt.Errorf("%s: meter %s reading %s..%s overlaps %s (%s..%s)", where(r.line), id,
					r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339), where(p.line), p.Start.Format(time.RFC3339), p.End.Format(time.RFC3339))
			case r.Start.After(p.End):
				if r.line == 0 && p.line == 0 {
					continue // recorded when imported
				}
				gaps = append(gaps, MeterGap{Meter: id, Site: r.Site, Group: r.Group, Start: p.End, End: r.Start,
					Where: "between " + where(p.line) + " and " + where(r.line)})
			}
		}
	}
	return gaps, nil
}

type jobLine struct {
	Job             string      `json:"job"`
	DeviceGroup     string      `json:"device_group"`
	Start           string      `json:"start"`
	End             string      `json:"end"`
	GPUHours        json.Number `json:"gpu_hours"`
	RevenueMicroUSD json.Number `json:"revenue_micro_usd"`
	CPUHours        json.Number `json:"cpu_hours"`
	OutputsSHA256   string      `json:"outputs_sha256"`
}

// ParseJobs reads AI job records, one JSON object per line: job, device_group, start,
// end (RFC 3339), gpu_hours or cpu_hours or both (numbers, kept to 0.001 hour), and
// optionally revenue_micro_usd (integer) and outputs_sha256 (64 hex digits: what
// `hashgrid provider --job-log` writes for a leased job). site is the site the device
// groups belong to.
func ParseJobs(r io.Reader, site string) ([]JobRecord, string, error) {
	lr, sum := newLineReader(r)
	var out []JobRecord
	seen := map[string]int{}
	for lr.sc.Scan() {
		lr.line++
		b := bytes.TrimSpace(lr.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		j, err := parseJobLine(b, site)
		if err != nil {
			return nil, "", fmt.Errorf("jobs: line %d: %w", lr.line, err)
		}
		if l, ok := seen[j.Job]; ok {
			return nil, "", fmt.Errorf("jobs: line %d: job %q already on line %d", lr.line, j.Job, l)
		}
		seen[j.Job] = lr.line
		out = append(out, j)
	}
	if err := lr.err("jobs"); err != nil {
		return nil, "", err
	}
	return out, sum(), nil
}

func parseJobLine(b []byte, site string) (JobRecord, error) {
	var l jobLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&l); err != nil {
		return JobRecord{}, err
	}
	if dec.More() {
		return JobRecord{}, errors.New("more than one object on the line")
	}
	j := JobRecord{Job: l.Job, Site: site, Group: l.DeviceGroup}
	if j.Job == "" || j.Group == "" {
		return j, errors.New("job and device_group are required")
	}
	var err error
	if j.Start, err = parseTime("start", l.Start); err != nil {
		return j, err
	}
	if j.End, err = parseTime("end", l.End); err != nil {
		return j, err
	}
	if err := checkInterval(j.Start, j.End); err != nil {
		return j, err
	}
	if l.GPUHours == "" && l.CPUHours == "" {
		return j, errors.New("gpu_hours or cpu_hours is required")
	}
	hours := func(field string, n json.Number) (int64, error) {
		if n == "" {
			return 0, nil
		}
		h, err := strconv.ParseFloat(string(n), 64)
		if err != nil || !(h >= 0) || h*1000 > MaxGPUMilliHours {
			return 0, fmt.Errorf("%s: %s is not a number in range 0..%d", field, n, MaxGPUMilliHours/1000)
		}
		return int64(math.Round(h * 1000)), nil
	}
	if j.GPUMilliHours, err = hours("gpu_hours", l.GPUHours); err != nil {
		return j, err
	}
	if j.CPUMilliHours, err = hours("cpu_hours", l.CPUHours); err != nil {
		return j, err
	}
	if l.OutputsSHA256 != "" {
		if b, err := hex.DecodeString(l.OutputsSHA256); err != nil || len(b) != sha256.Size {
			return j, errors.New("outputs_sha256: want 64 hex digits")
		}
		j.OutputsSHA256 = l.OutputsSHA256
	}
	if l.RevenueMicroUSD != "" {
		if j.RevenueMicroUSD, err = wholeNumber("revenue_micro_usd", l.RevenueMicroUSD, MaxRevenue); err != nil {
			return j, err
		}
	}
	return j, nil
}

// ImportEnergy reads a power-controller energy log and records the intervals not yet in
// the registry. If site is not empty, lines of other sites are skipped; otherwise a line
// for an unregistered site is an error. The same interval recorded with different
// values is an error naming the line.
func (r *Registry) ImportEnergy(rd io.Reader, source, site string) (ImportResult, error) {
	recs, sum, err := ParseEnergy(rd)
	if err != nil {
		return ImportResult{}, fmt.Errorf("registry: %s: %w", source, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return ImportResult{}, errors.New("registry: closed after a failed write; reopen it")
	}
	var res ImportResult
	var add []EnergyRecord
	seen := map[string]bool{}
	for i, rec := range recs {
		if site != "" && rec.Site != site {
			continue
		}
		if _, ok := r.state.Sites[rec.Site]; !ok {
			return ImportResult{}, fmt.Errorf("registry: %s: record %d: unknown site %q", source, i+1, rec.Site)
		}
		k := rec.key()
		if old, ok := r.state.energyKeys[k]; ok {
			if !sameEnergy(old, rec) {
				return ImportResult{}, fmt.Errorf("registry: %s: record %d: %s/%s at %s differs from the recorded interval", source, i+1, rec.Site, rec.Group, rec.Start.Format(time.RFC3339))
			}
			res.Skipped++
			continue
		}
		if seen[k] {
			return ImportResult{}, fmt.Errorf("registry: %s: record %d: %s/%s at %s appears twice", source, i+1, rec.Site, rec.Group, rec.Start.Format(time.RFC3339))
		}
		seen[k] = true
		add = append(add, rec)
	}
	if len(add) == 0 {
		return res, nil
	}
	e, err := r.append(kindEnergy, evidenceBody{Source: source, SHA256: sum, Energy: add})
	if err != nil {
		return ImportResult{}, err
	}
	res.Seq, res.Added = e.Seq, len(add)
	return res, nil
}

func sameEnergy(a, b EnergyRecord) bool {
	return a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.Site == b.Site && a.Group == b.Group &&
		a.Mode == b.Mode && a.MachinesOn == b.MachinesOn && a.EnergyWh == b.EnergyWh && a.HashrateGHs == b.HashrateGHs &&
		a.Workload == b.Workload
}

// Workloads an energy record may name (power.WorkloadMining, power.WorkloadCompute).
const (
	WorkloadMining  = "mining"
	WorkloadCompute = "compute"
)

// ImportMeters reads a meter CSV and records the readings not yet in the registry. Gaps
// in a meter's readings are an error unless allowGaps, in which case they are recorded
// and every report that covers them flags them.
func (r *Registry) ImportMeters(rd io.Reader, source string, allowGaps bool) (ImportResult, error) {
	rows, sum, err := parseMeterCSV(rd)
	if err != nil {
		return ImportResult{}, fmt.Errorf("registry: %s: %w", source, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return ImportResult{}, errors.New("registry: closed after a failed write; reopen it")
	}
	// Readings already recorded are skipped before the continuity check, so that
	// importing a file that has grown is not an overlap.
	var res ImportResult
	var fresh []meterRow
	for _, m := range rows {
		if old, ok := r.state.meterKeys[m.key()]; ok {
			if old != m.MeterReading {
				return ImportResult{}, fmt.Errorf("registry: %s: line %d: meter %s at %s differs from the recorded reading", source, m.line, m.Meter, m.Start.Format(time.RFC3339))
			}
			res.Skipped++
			continue
		}
		if _, ok := r.state.Sites[m.Site]; !ok {
			return ImportResult{}, fmt.Errorf("registry: %s: line %d: unknown site %q", source, m.line, m.Site)
		}
		fresh = append(fresh, m)
	}
	gaps, err := checkMeters(fresh, r.state.Meters, allowGaps)
	if err != nil {
		return ImportResult{}, fmt.Errorf("registry: %s: %w", source, err)
	}
	if len(fresh) == 0 {
		return res, nil
	}
	recs := make([]MeterReading, len(fresh))
	for i, m := range fresh {
		recs[i] = m.MeterReading
	}
	e, err := r.append(kindMeter, evidenceBody{Source: source, SHA256: sum, Meters: recs, Gaps: gaps})
	if err != nil {
		return ImportResult{}, err
	}
	res.Seq, res.Added, res.Gaps = e.Seq, len(recs), gaps
	return res, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fmtHex(b []byte) string { return hex.EncodeToString(b) }

// ImportJobs reads AI job records for the device groups of site and records the jobs not
// yet in the registry. A job id recorded before with different values is an error.
func (r *Registry) ImportJobs(rd io.Reader, source, site string) (ImportResult, error) {
	jobs, sum, err := ParseJobs(rd, site)
	if err != nil {
		return ImportResult{}, fmt.Errorf("registry: %s: %w", source, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return ImportResult{}, errors.New("registry: closed after a failed write; reopen it")
	}
	if _, ok := r.state.Sites[site]; !ok {
		return ImportResult{}, fmt.Errorf("registry: jobs: unknown site %q", site)
	}
	var res ImportResult
	var add []JobRecord
	for _, j := range jobs {
		if len(r.state.devicesIn(groupKey{site, j.Group})) == 0 {
			return ImportResult{}, fmt.Errorf("registry: %s: job %q: unknown device group %q at site %q", source, j.Job, j.Group, site)
		}
		if old, ok := r.state.jobKeys[j.Job]; ok {
			if old != j {
				return ImportResult{}, fmt.Errorf("registry: %s: job %q differs from the recorded job", source, j.Job)
			}
			res.Skipped++
			continue
		}
		add = append(add, j)
	}
	if len(add) == 0 {
		return res, nil
	}
	e, err := r.append(kindJobs, evidenceBody{Source: source, SHA256: sum, Jobs: add})
	if err != nil {
		return ImportResult{}, err
	}
	res.Seq, res.Added = e.Seq, len(add)
	return res, nil
}

// WorkSource is where pool shares come from; hashgrid.ShareStore implements it.
type WorkSource interface {
	// WorkBetween returns per-worker accepted and rejected counts and accepted work of
	// shares received in [from, to).
	WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error)
}

// ImportPool records the pool's work in [from, to) from the payout addresses declared by
// the devices of site (workers of other addresses are not the operator's and are left
// out). A snapshot is recorded even when there were no shares: that too is evidence.
// Snapshots of one site must not overlap. Share samples are taken as from a pool that
// keeps headers at pool.DefaultSampleRate; ImportPoolSampled names the rate.
func (r *Registry) ImportPool(ctx context.Context, src WorkSource, site string, from, to time.Time) (ImportResult, error) {
	return r.ImportPoolSampled(ctx, src, site, from, to, pool.DefaultSampleRate)
}

// ImportPoolSampled is ImportPool from a pool that keeps the headers of one share in
// sampleRate (pool.Config.SampleRate): a power of two, at or above the pool's real rate
// (below it, shares the sample needs have no header and the import fails; above it,
// the sample is smaller).
func (r *Registry) ImportPoolSampled(ctx context.Context, src WorkSource, site string, from, to time.Time, sampleRate uint64) (ImportResult, error) {
	if err := checkInterval(from, to); err != nil {
		return ImportResult{}, fmt.Errorf("registry: pool: %w", err)
	}
	ws, err := src.WorkBetween(ctx, from, to)
	if err != nil {
		return ImportResult{}, fmt.Errorf("registry: pool: %w", err)
	}
	var groups []PoolGroupShares
	l, listed := src.(ShareLister)
	if listed {
		r.mu.Lock()
		if r.state == nil {
			r.mu.Unlock()
			return ImportResult{}, errors.New("registry: closed after a failed write; reopen it")
		}
		st := &State{Devices: map[string]Device{}}
		for id, d := range r.state.Devices {
			st.Devices[id] = d
		}
		r.mu.Unlock()
		groups, err = groupShares(ctx, l, from.UTC(), to.UTC(), func(address, worker string) string {
			if gs := st.workerGroups(site, PoolWorker{Address: address, Name: worker}); len(gs) > 0 {
				return gs[0]
			}
			return ""
		}, sampleRate)
		if err != nil {
			return ImportResult{}, fmt.Errorf("registry: pool: shares: %w", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return ImportResult{}, errors.New("registry: closed after a failed write; reopen it")
	}
	addrs := map[string]bool{}
	for _, d := range r.state.Devices {
		if d.Site == site && d.PoolAddress != "" {
			addrs[d.PoolAddress] = true
		}
	}
	snap := PoolSnapshot{Site: site, From: from.UTC(), To: to.UTC(), Workers: []PoolWorker{}, Groups: groups, SharesListed: listed}
	for _, w := range ws {
		if addrs[w.Address] {
			snap.Workers = append(snap.Workers, PoolWorker{Address: w.Address, Name: w.Name, Accepted: w.Accepted, Rejected: w.Rejected, Work: w.Work})
		}
	}
	sort.Slice(snap.Workers, func(i, j int) bool {
		a, b := snap.Workers[i], snap.Workers[j]
		return a.Address < b.Address || a.Address == b.Address && a.Name < b.Name
	})
	e, err := r.append(kindPool, evidenceBody{Source: "pool", Pool: &snap})
	if err != nil {
		return ImportResult{}, err
	}
	return ImportResult{Seq: e.Seq, Added: len(snap.Workers)}, nil
}

// AddRevenue records revenue for a device group.
func (r *Registry) AddRevenue(v RevenueRecord) error {
	v.From, v.To = v.From.UTC(), v.To.UTC()
	if v.Source == "" {
		return errors.New("registry: revenue: source is required")
	}
	_, err := r.do(kindRevenue, evidenceBody{Source: v.Source, Revenue: []RevenueRecord{v}})
	return err
}
