// Package registry keeps a register of what an operator's machines do: operators, sites,
// devices and the workload declared for each device group under a classification of
// permitted activities. It attaches measured evidence (pool shares, power-controller
// energy, meter readings, AI job records, declared revenue), produces reports that set
// declared against measured and flag every discrepancy, and records all of it in an
// append-only log of hash-chained entries signed with the operator's Ed25519 key, which
// VerifyLog and VerifyReport check offline.
//
// The log is the only state: opening a registry replays it. Energy is counted in integer
// watt-hours, money in integer satoshis or micro-dollars, GPU time in integer
// milli-GPU-hours. The package does not read pool databases or the market itself; it
// consumes them through small interfaces (WorkSource) so that the caller wires the store.
//
// The signed log alone is self-attested: the operator holds the key and could rewrite
// and re-sign all of it, or drop entries from its end. An anchor closes that gap: a
// Bitcoin transaction whose OP_RETURN output commits to the head entry's hash and the
// entry count (AnchorScript, 47 bytes), recorded as the next log entry and attached to
// the report it covers. CheckReportAnchor then proves against a node's best chain
// (through the Chain interface) that the log up to that count existed at the block's
// height, unchanged since. The anchor is either a transaction the operator signs
// (BuildAnchorTx, one P2WPKH input, change back to the same script), which needs no
// pool and confirms in the next block, at the fee of a transaction of 166 vbytes (247
// or 248 bytes); or, for an operator who runs a pool, one more zero-value output in
// the pool's own coinbase (FindCoinbaseAnchor; the pool adds it from a file, see
// pool.ReadCommitment), which costs 56 bytes of block space and no fee but waits for
// the pool's next block. Both are checked alike.
//
// Pool evidence read from a store that lists its shares (ShareLister) also commits, per
// device group and period, to the accepted shares themselves: their number, total
// difficulty, the blocks they found, and a Merkle root built as the PPLNS window builds
// its own (payout's leaves and tree), so that whoever holds the shares can recompute it;
// and it carries a sample of those shares with their block headers, chosen by their
// hashes, that anyone can hash again and find under the root (SampledShare,
// CheckSamples). An anchor covers those roots and samples like every other entry.
package registry

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Entry kinds.
const (
	kindInit     = "init"
	kindOperator = "operator"
	kindSite     = "site"
	kindDevice   = "device"
	kindWorkload = "workload"
	kindEnergy   = "energy"
	kindMeter    = "meter"
	kindJobs     = "jobs"
	kindPool     = "pool"
	kindRevenue  = "revenue"
	kindReport   = "report"
	kindAnchor   = "anchor"
)

// LogFile is the name of the log inside the data directory.
const LogFile = "registry.jsonl"

// Operator is the legal person that runs sites and signs the log.
type Operator struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Country string `json:"country,omitempty"` // ISO 3166-1 alpha-2
	LegalID string `json:"legal_id,omitempty"`
}

// Site is a place with a grid connection.
type Site struct {
	ID         string `json:"id"`
	Operator   string `json:"operator"`
	Name       string `json:"name"`
	Location   string `json:"location"`
	Country    string `json:"country,omitempty"`
	Grid       string `json:"grid"`        // grid connection: supplier, voltage level, meter point id
	CapacityKW int64  `json:"capacity_kw"` // contracted connection capacity
}

// Device kinds.
const (
	DeviceASIC    = "asic"
	DeviceGPU     = "gpu"
	DeviceCPU     = "cpu"
	DeviceStorage = "storage"
)

// Device is a batch of identical machines in one group of a site.
type Device struct {
	ID     string `json:"id"`
	Site   string `json:"site"`
	Group  string `json:"group"`
	Kind   string `json:"kind"`
	Model  string `json:"model,omitempty"`
	Count  int64  `json:"count"`
	RatedW int64  `json:"rated_w"` // rated power of one machine
	GPUs   int64  `json:"gpus,omitempty"`
	// Cores is the CPU cores of one machine: what leased compute's CPU-hours are
	// checked against.
	Cores int64 `json:"cores,omitempty"`
	// PoolAddress and WorkerPattern map pool workers to this device: a worker belongs to
	// it when its payout address is PoolAddress and its name matches WorkerPattern (a
	// path.Match pattern; empty matches any name).
	PoolAddress   string `json:"pool_address,omitempty"`
	WorkerPattern string `json:"worker_pattern,omitempty"`
}

// Workload declares what a device group does from a point in time on, until the next
// declaration for the group. The class is copied into the log so that reports do not
// depend on the class file in use later.
type Workload struct {
	Site  string    `json:"site"`
	Group string    `json:"group"`
	Class Class     `json:"class"`
	From  time.Time `json:"from"`
	Note  string    `json:"note,omitempty"`
}

// Limits on declared values.
const (
	MaxDeviceCount  = 1_000_000
	MaxRatedW       = 1_000_000 // one machine; a 1 MW container is declared as its parts
	MaxGPUsPerUnit  = 1024
	MaxCoresPerUnit = 65536
	MaxCapacityKW   = 10_000_000
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkID(what, id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%s id %q: want 1-64 letters, digits, '.', '_' or '-'", what, id)
	}
	return nil
}

// groupKey identifies a device group.
type groupKey struct{ Site, Group string }

// State is the registry as replayed from its log.
type State struct {
	PublicKey ed25519.PublicKey
	Operators map[string]Operator
	Sites     map[string]Site
	Devices   map[string]Device
	Workloads []Workload // in log order
	Energy    []EnergyRecord
	Meters    []MeterReading
	MeterGaps []MeterGap
	Jobs      []JobRecord
	Pool      []PoolSnapshot
	Revenue   []RevenueRecord
	Imports   []ImportRef
	Reports   []ReportRef
	Anchors   []Anchor // in log order
	HeadSeq   uint64
	HeadHash  string

	energyKeys map[string]EnergyRecord
	meterKeys  map[string]MeterReading
	jobKeys    map[string]JobRecord
}

func newState() *State {
	return &State{
		Operators:  map[string]Operator{},
		Sites:      map[string]Site{},
		Devices:    map[string]Device{},
		energyKeys: map[string]EnergyRecord{},
		meterKeys:  map[string]MeterReading{},
		jobKeys:    map[string]JobRecord{},
	}
}

// ImportRef records one evidence import: which entry, from what source, how many records.
type ImportRef struct {
	Seq     uint64 `json:"seq"`
	Kind    string `json:"kind"`
	Source  string `json:"source"`
	SHA256  string `json:"sha256,omitempty"` // of the imported file, when there was one
	Records int    `json:"records"`
}

// ReportRef records one report entry.
type ReportRef struct {
	Seq  uint64 `json:"seq"`
	Body reportEntryBody
}

// devicesIn returns the devices of a group, sorted by id.
func (s *State) devicesIn(k groupKey) []Device {
	var out []Device
	for _, d := range s.Devices {
		if d.Site == k.Site && d.Group == k.Group {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// groups returns the device groups of a site, sorted.
func (s *State) groups(site string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range s.Devices {
		if d.Site == site && !seen[d.Group] {
			seen[d.Group] = true
			out = append(out, d.Group)
		}
	}
	sort.Strings(out)
	return out
}

// declaredAt returns the workload declared for a group at t, if any.
func (s *State) declaredAt(k groupKey, t time.Time) (Workload, bool) {
	var best Workload
	found := false
	for _, w := range s.Workloads {
		if w.Site == k.Site && w.Group == k.Group && !w.From.After(t) && (!found || !w.From.Before(best.From)) {
			best, found = w, true
		}
	}
	return best, found
}

// apply validates one entry's body against the state and, only if it is valid, applies
// it. Replaying a log and appending a new entry go through the same checks.
func (s *State) apply(e *Entry) error {
	strict := func(v any) error {
		dec := json.NewDecoder(bytes.NewReader(e.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%s body: %w", e.Kind, err)
		}
		return nil
	}
	switch e.Kind {
	case kindInit:
		// readLog has checked the key.
		return nil
	case kindOperator:
		var o Operator
		if err := strict(&o); err != nil {
			return err
		}
		if err := checkID("operator", o.ID); err != nil {
			return err
		}
		if _, ok := s.Operators[o.ID]; ok {
			return fmt.Errorf("duplicate operator %q", o.ID)
		}
		if o.Name == "" {
			return fmt.Errorf("operator %q: name is required", o.ID)
		}
		s.Operators[o.ID] = o
	case kindSite:
		var st Site
		if err := strict(&st); err != nil {
			return err
		}
		if err := checkID("site", st.ID); err != nil {
			return err
		}
		if _, ok := s.Sites[st.ID]; ok {
			return fmt.Errorf("duplicate site %q", st.ID)
		}
		if _, ok := s.Operators[st.Operator]; !ok {
			return fmt.Errorf("site %q: unknown operator %q", st.ID, st.Operator)
		}
		if st.Location == "" || st.Grid == "" {
			return fmt.Errorf("site %q: location and grid connection are required", st.ID)
		}
		if st.CapacityKW <= 0 || st.CapacityKW > MaxCapacityKW {
			return fmt.Errorf("site %q: capacity %d kW out of range 1..%d", st.ID, st.CapacityKW, MaxCapacityKW)
		}
		s.Sites[st.ID] = st
	case kindDevice:
		var d Device
		if err := strict(&d); err != nil {
			return err
		}
		if err := s.checkDevice(d); err != nil {
			return err
		}
		s.Devices[d.ID] = d
	case kindWorkload:
		var w Workload
		if err := strict(&w); err != nil {
			return err
		}
		k := groupKey{w.Site, w.Group}
		if _, ok := s.Sites[w.Site]; !ok {
			return fmt.Errorf("workload: unknown site %q", w.Site)
		}
		if len(s.devicesIn(k)) == 0 {
			return fmt.Errorf("workload: site %q has no devices in group %q", w.Site, w.Group)
		}
		if !classIDPattern.MatchString(w.Class.ID) || w.Class.Name == "" || w.Class.Industry == "" {
			return fmt.Errorf("workload: incomplete class %q", w.Class.ID)
		}
		if w.From.IsZero() {
			return errors.New("workload: start time is required")
		}
		for _, o := range s.Workloads {
			if o.Site == w.Site && o.Group == w.Group && o.From.Equal(w.From) {
				return fmt.Errorf("workload: group %s/%s already has a declaration from %s", w.Site, w.Group, w.From.Format(time.RFC3339))
			}
		}
		s.Workloads = append(s.Workloads, w)
	case kindEnergy, kindMeter, kindJobs, kindPool, kindRevenue:
		if err := s.applyEvidence(e, strict); err != nil {
			return err
		}
	case kindReport:
		var b reportEntryBody
		if err := strict(&b); err != nil {
			return err
		}
		s.Reports = append(s.Reports, ReportRef{Seq: e.Seq, Body: b})
	case kindAnchor:
		var a anchorBody
		if err := strict(&a); err != nil {
			return err
		}
		return s.applyAnchor(e, a)
	default:
		return fmt.Errorf("unknown entry kind %q", e.Kind)
	}
	return nil
}

func (s *State) checkDevice(d Device) error {
	if err := checkID("device", d.ID); err != nil {
		return err
	}
	if _, ok := s.Devices[d.ID]; ok {
		return fmt.Errorf("duplicate device %q", d.ID)
	}
	if _, ok := s.Sites[d.Site]; !ok {
		return fmt.Errorf("device %q: unknown site %q", d.ID, d.Site)
	}
	if err := checkID("group", d.Group); err != nil {
		return fmt.Errorf("device %q: %w", d.ID, err)
	}
	switch d.Kind {
	case DeviceASIC, DeviceGPU, DeviceCPU, DeviceStorage:
	default:
		return fmt.Errorf("device %q: kind %q is not asic, gpu, cpu or storage", d.ID, d.Kind)
	}
	if d.Count <= 0 || d.Count > MaxDeviceCount {
		return fmt.Errorf("device %q: count %d out of range 1..%d", d.ID, d.Count, MaxDeviceCount)
	}
	if d.RatedW <= 0 || d.RatedW > MaxRatedW {
		return fmt.Errorf("device %q: rated power %d W out of range 1..%d", d.ID, d.RatedW, MaxRatedW)
	}
	if d.GPUs < 0 || d.GPUs > MaxGPUsPerUnit {
		return fmt.Errorf("device %q: gpus %d out of range 0..%d", d.ID, d.GPUs, MaxGPUsPerUnit)
	}
	if d.Cores < 0 || d.Cores > MaxCoresPerUnit {
		return fmt.Errorf("device %q: cores %d out of range 0..%d", d.ID, d.Cores, MaxCoresPerUnit)
	}
	if d.Kind == DeviceGPU && d.GPUs == 0 {
		return fmt.Errorf("device %q: a gpu device needs its number of GPUs per machine", d.ID)
	}
	if _, err := path.Match(d.WorkerPattern, ""); err != nil {
		return fmt.Errorf("device %q: worker pattern %q: %w", d.ID, d.WorkerPattern, err)
	}
	if d.WorkerPattern != "" && d.PoolAddress == "" {
		return fmt.Errorf("device %q: a worker pattern needs a pool address", d.ID)
	}
	return nil
}

// Config configures a Registry.
type Config struct {
	Dir    string             // data directory holding LogFile
	Key    ed25519.PrivateKey // signs new entries; never logged
	Now    func() time.Time   // clock; time.Now when nil
	Logger *slog.Logger       // discards when nil
}

// Registry is an open registry log. Its methods are safe for concurrent use by one
// process; two processes must not append to the same log at once.
type Registry struct {
	mu    sync.Mutex
	path  string
	key   ed25519.PrivateKey
	now   func() time.Time
	log   *slog.Logger
	state *State
	last  Entry
}

func (c Config) fill() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("registry: no data directory")
	}
	if len(c.Key) != ed25519.PrivateKeySize {
		return c, errors.New("registry: no signing key")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Create starts a new log in cfg.Dir whose first entry carries cfg.Key's public key. It
// fails if a log exists there already.
func Create(cfg Config) (*Registry, error) {
	cfg, err := cfg.fill()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	p := filepath.Join(cfg.Dir, LogFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	f.Close()
	r := &Registry{path: p, key: cfg.Key, now: cfg.Now, log: cfg.Logger.With("subsystem", "registry"), state: newState()}
	pub := cfg.Key.Public().(ed25519.PublicKey)
	r.state.PublicKey = pub
	if _, err := r.append(kindInit, initBody{Format: logFormat, PublicKey: fmtHex(pub)}); err != nil {
		os.Remove(p)
		return nil, err
	}
	return r, nil
}

// Open replays the log in cfg.Dir. The log must verify under cfg.Key's public key and
// every entry must be valid against the entries before it.
func Open(cfg Config) (*Registry, error) {
	cfg, err := cfg.fill()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(cfg.Dir, LogFile)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	defer f.Close()
	pub := cfg.Key.Public().(ed25519.PublicKey)
	es, _, err := readLog(bufio.NewReader(f), pub)
	if err != nil {
		return nil, err
	}
	st := newState()
	st.PublicKey = pub
	for i := range es {
		if err := st.apply(&es[i]); err != nil {
			return nil, &ChainError{Seq: es[i].Seq, Line: i + 1, Problem: "invalid entry: " + err.Error()}
		}
		st.HeadSeq, st.HeadHash = es[i].Seq, es[i].Hash
	}
	return &Registry{path: p, key: cfg.Key, now: cfg.Now, log: cfg.Logger.With("subsystem", "registry"), state: st, last: es[len(es)-1]}, nil
}

// append seals, validates, applies and writes one entry. The caller holds r.mu or has
// sole access.
func (r *Registry) append(kind string, body any) (Entry, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Entry{}, fmt.Errorf("registry: %s: %w", kind, err)
	}
	e := Entry{Seq: r.last.Seq + 1, Time: r.now().UTC(), Kind: kind, Prev: r.last.Hash, Body: b}
	if e.Seq == 1 {
		e.Prev = genesisPrev
	}
	if err := seal(&e, r.key); err != nil {
		return Entry{}, fmt.Errorf("registry: %w", err)
	}
	if err := r.state.apply(&e); err != nil {
		return Entry{}, fmt.Errorf("registry: %w", err)
	}
	line, err := jsonLine(e)
	if err != nil {
		return Entry{}, fmt.Errorf("registry: %w", err)
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return Entry{}, r.fatal(fmt.Errorf("registry: %w", err))
	}
	_, werr := f.Write(line)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return Entry{}, r.fatal(fmt.Errorf("registry: write entry %d: %w", e.Seq, err))
	}
	r.last = e
	r.state.HeadSeq, r.state.HeadHash = e.Seq, e.Hash
	r.log.Info("entry appended", "seq", e.Seq, "kind", kind)
	return e, nil
}

// fatal poisons the registry after a failed write: the in-memory state is ahead of the
// file, so the only safe next step is to reopen.
func (r *Registry) fatal(err error) error {
	r.state = nil
	return err
}

func (r *Registry) do(kind string, body any) (Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return Entry{}, errors.New("registry: closed after a failed write; reopen it")
	}
	return r.append(kind, body)
}

// AddOperator records an operator.
func (r *Registry) AddOperator(o Operator) error { _, err := r.do(kindOperator, o); return err }

// AddSite records a site of a known operator.
func (r *Registry) AddSite(s Site) error { _, err := r.do(kindSite, s); return err }

// AddDevice records a device; its id must be new.
func (r *Registry) AddDevice(d Device) error { _, err := r.do(kindDevice, d); return err }

// Declare records a workload declaration for a device group, with the class looked up
// in classes (an unknown class is an error).
func (r *Registry) Declare(classes *Classes, site, group, classID string, from time.Time, note string) error {
	k, err := classes.Get(classID)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	_, err = r.do(kindWorkload, Workload{Site: site, Group: group, Class: k, From: from.UTC(), Note: note})
	return err
}

// State returns a copy of the replayed state's top-level collections. The records inside
// are values; callers must not modify the maps of a State obtained while appending.
func (r *Registry) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return State{}
	}
	return *r.state
}

// Path returns the path of the log file.
func (r *Registry) Path() string { return r.path }
