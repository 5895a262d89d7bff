package compute

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/ledger"
)

// Limits on what tenants and providers may send.
const (
	MaxUnits          = 4096     // work units in one order
	MaxModuleBytes    = 16 << 20 // a WebAssembly module
	MaxUnitBytes      = 1 << 20  // one unit's input
	MaxOrderBytes     = 48 << 20 // a whole order request (module, inputs, base64 included)
	MaxOutputBytes    = 64 << 10 // one unit's stdout kept by the market; more is refused
	MaxStderrBytes    = 16 << 10 // one unit's stderr kept (the tail)
	MaxArgs           = 64
	MaxOpenOrders     = 256 // orders of one account not yet closed
	MaxProviders      = 4096
	MaxLogLines       = 512               // an order's event log keeps the last lines
	MaxPrice          = 1_000_000_000_000 // sat per core-hour or per GiB-hour
	MaxWait           = 20 * time.Second  // longest long-poll (below the market's 30 s write timeout)
	MaxPolls          = 4                 // long-polls one provider may have waiting at once
	maxFieldLen       = 128
	maxCores          = 4096
	maxChecksPerOrder = 3
)

// Time and size units of the prices.
const (
	nsPerHour = int64(time.Hour)
	gib       = 1 << 30
)

// Accounts authenticates the market's API keys: tenants and providers are market
// accounts (*market.Market implements it).
type Accounts interface {
	Authenticate(key string) (account string, err error)
}

// Config configures a Book.
type Config struct {
	// Ledger is the market's book: tenants' balances (market:buyer:ACCOUNT) are there,
	// and providers' earnings become payable there (miner:ADDRESS:balance), which the
	// pool's payout engine pays when it is the pool's book.
	Ledger   ledger.Book
	Accounts Accounts
	// Network is the chain providers' payout addresses must belong to.
	Network *chaincfg.Params
	// FeeBps is the market's fee in basis points of what tenants pay; default 200.
	FeeBps int64
	// Interval is the metered interval: providers report usage this often, and each
	// report is settled. Default one minute.
	Interval time.Duration
	// MissedReports is how many intervals a lease may go without a report before its
	// provider loses it. Default 3.
	MissedReports int
	// SampleBps is the share of a deterministic job's units re-run on another
	// provider, in basis points (at least one unit is). Default 1000 (10%).
	SampleBps int64
	// UnitTimeout bounds one unit's run on a provider. Default 10 minutes.
	UnitTimeout time.Duration
	// Retention is how long a closed order, its leases and outputs stay readable.
	// Default 24 hours.
	Retention time.Duration
	// Rand picks the spot-checked units: a number in [0, n). Default math/rand/v2.
	Rand   func(n int) int
	Logger *slog.Logger
	Now    func() time.Time
}

func (c *Config) defaults() {
	if c.FeeBps == 0 {
		c.FeeBps = 200
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.MissedReports == 0 {
		c.MissedReports = 3
	}
	if c.SampleBps == 0 {
		c.SampleBps = 1000
	}
	if c.UnitTimeout == 0 {
		c.UnitTimeout = 10 * time.Minute
	}
	if c.Retention == 0 {
		c.Retention = 24 * time.Hour
	}
	if c.Rand == nil {
		c.Rand = rand.IntN
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Ledger == nil:
		return errors.New("compute: no ledger")
	case c.Accounts == nil:
		return errors.New("compute: no accounts")
	case c.Network == nil:
		return errors.New("compute: no network")
	case c.FeeBps < 0 || c.FeeBps >= 10_000:
		return errors.New("compute: fee out of range 0..9999 bps")
	case c.Interval < 10*time.Millisecond:
		return errors.New("compute: interval below 10ms")
	case c.MissedReports < 1:
		return errors.New("compute: MissedReports below 1")
	case c.SampleBps < 1 || c.SampleBps > 10_000:
		return errors.New("compute: SampleBps out of range 1..10000")
	}
	return nil
}

// Resources are what a provider offers or a lease holds.
type Resources struct {
	Cores  int    `json:"cores"`
	Memory uint64 `json:"memory"` // bytes
	// GPUs are the devices found on the provider's machine (/dev/nvidia0, …). They are
	// shown in offers; no job can use them yet (see the package doc).
	GPUs []string `json:"gpus,omitempty"`
	// Runtimes are the kinds of job the provider runs (RuntimeWasm, RuntimeOCI); an
	// offer listing none runs WebAssembly only.
	Runtimes []string `json:"runtimes,omitempty"`
}

// ProviderRequest is POST /api/v1/compute/providers: a provider's offer.
type ProviderRequest struct {
	Name          string    `json:"name"`
	PayoutAddress string    `json:"payout_address"`
	Resources     Resources `json:"resources"`
	Price         int64     `json:"price"`     // floor, sat per core-hour of CPU time
	MemPrice      int64     `json:"mem_price"` // floor, sat per GiB-hour of memory held
	// Paused asks the market to take no new leases for the provider: it is offered to
	// nobody and assigned nothing, while the leases it runs finish (a power controller
	// pauses a machine's offer before the machine goes back to mining).
	Paused bool `json:"paused,omitempty"`
}

// Offer is a provider's standing offer as tenants see it.
type Offer struct {
	Provider  string    `json:"provider"`
	Name      string    `json:"name"`
	Resources Resources `json:"resources"`
	Free      Resources `json:"free"`
	Price     int64     `json:"price"`
	MemPrice  int64     `json:"mem_price"`
}

// ProviderView is a provider's own view: its offer, its leases and its earnings.
type ProviderView struct {
	ID            string      `json:"id"`
	Name          string      `json:"name"`
	PayoutAddress string      `json:"payout_address"`
	Resources     Resources   `json:"resources"`
	Price         int64       `json:"price"`
	MemPrice      int64       `json:"mem_price"`
	Online        bool        `json:"online"`
	Marked        bool        `json:"marked"` // caught returning wrong results: offered no more leases
	Paused        bool        `json:"paused"` // the provider asked for no new leases (ProviderRequest.Paused)
	Faults        int         `json:"faults"`
	IntervalMS    int64       `json:"interval_ms"` // report usage this often
	Leases        []LeaseView `json:"leases"`
	// Earned is what the market has made payable to the provider's address (after the
	// fee); Held is what tenants have been charged for its leases and waits for their
	// spot checks; Payable is the address's balance in the payout engine's book (with
	// any pool or hashrate earnings of the same address).
	Earned  int64 `json:"earned"`
	Held    int64 `json:"held"`
	Payable int64 `json:"payable"`
}

// OrderRequest is POST /api/v1/compute/orders: a job of work units, each a run of
// Module, or of Image, with the unit's bytes as standard input, or (Kind "service") a
// service: Module started once and kept running, answering requests (see service.go).
type OrderRequest struct {
	Kind   string `json:"kind,omitempty"`   // "job" (the default) or "service"
	Module []byte `json:"module,omitempty"` // WebAssembly (wasip1) module, base64 in JSON
	// Image is an OCI image, instead of a module: registry-host/repository@sha256:HEX,
	// pinned by digest (a tag is refused). It is leased only to providers that offer
	// the "oci" runtime, which fetch it from the registry (anonymously) and run it
	// under runc with no network, a read-only root and the lease's cores and memory.
	Image string `json:"image,omitempty"`
	// Args are the module's arguments, or, for an image, replace its Cmd after its
	// Entrypoint.
	Args   []string `json:"args,omitempty"`
	Units  [][]byte `json:"units,omitempty"` // each unit's input, base64 in JSON; none for a service
	Cores  int      `json:"cores"`
	Memory uint64   `json:"memory"` // bytes
	// MaxPrice and MaxMemPrice are the most the tenant pays, sat per core-hour and per
	// GiB-hour; Budget (sat) is held in escrow from the tenant's market balance.
	MaxPrice    int64 `json:"max_price"`
	MaxMemPrice int64 `json:"max_mem_price"`
	Budget      int64 `json:"budget"`
	// Provider accepts that provider's offer. Empty: the market takes the cheapest
	// offer that fits, unless Manual asks to wait for POST .../accept.
	Provider string `json:"provider,omitempty"`
	Manual   bool   `json:"manual,omitempty"`
	// NoVerify says the job is not deterministic: no unit is re-run elsewhere. (A
	// service is never re-run; it must not set it.)
	NoVerify bool `json:"no_verify,omitempty"`
}

// Order statuses.
const (
	OrderOpen      = "open" // waiting for an offer (or the tenant's accept)
	OrderRunning   = "running"
	OrderDone      = "done"
	OrderExhausted = "exhausted" // the budget ran out
	OrderLost      = "lost"      // the provider stopped reporting
	OrderFailed    = "failed"    // wrong results, or the provider ended without them
	OrderCancelled = "cancelled"
)

// Lease statuses.
const (
	LeasePending    = "pending" // assigned, not yet fetched by the provider
	LeaseRunning    = "running"
	LeaseDone       = "done"
	LeaseExhausted  = "exhausted"
	LeaseLost       = "lost"
	LeaseFaulted    = "faulted" // returned outputs a spot check refuted
	LeaseIncomplete = "incomplete"
	LeaseCancelled  = "cancelled"
	// LeaseEnded (service.go): a service that ended by itself.
)

// OrderView is an order as its tenant sees it.
type OrderView struct {
	ID       string      `json:"id"`
	Kind     string      `json:"kind"` // "job" or "service"
	Status   string      `json:"status"`
	Reason   string      `json:"reason,omitempty"`
	Units    int         `json:"units"`
	Done     int         `json:"units_done"`
	Budget   int64       `json:"budget"`
	Charged  int64       `json:"charged"`  // taken from the escrow for metered work
	Refunded int64       `json:"refunded"` // returned to the balance (leftover and forfeits)
	Verdict  string      `json:"verdict,omitempty"`
	Checked  int         `json:"units_checked"` // units whose outputs a spot check confirmed
	Closed   bool        `json:"closed"`        // all money of the order is settled
	Leases   []LeaseView `json:"leases"`
	Created  time.Time   `json:"created"`
	// Service is a service's state and request counts; nil for a job.
	Service *ServiceView `json:"service,omitempty"`
}

// LeaseView is one lease. A tenant sees its order's leases (Kind "job" or "check",
// or "service").
type LeaseView struct {
	ID       string    `json:"id"`
	Order    string    `json:"order"`
	Provider string    `json:"provider"`
	Kind     string    `json:"kind"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	Units    int       `json:"units"`
	Done     int       `json:"units_done"`
	Cores    int       `json:"cores"`
	Memory   uint64    `json:"memory"`
	Price    int64     `json:"price"`
	MemPrice int64     `json:"mem_price"`
	CPUMS    int64     `json:"cpu_ms"`  // CPU time metered
	WallMS   int64     `json:"wall_ms"` // wall time metered
	Charged  int64     `json:"charged"`
	Reports  uint64    `json:"reports"`
	Settled  string    `json:"settled,omitempty"` // "released" to the provider or "forfeited" to the tenant
	Created  time.Time `json:"created"`
	// Service is the service's state and request counts, for a service's lease.
	Service *ServiceView `json:"service,omitempty"`
}

// LeaseWork is a lease as its provider fetches it.
type LeaseWork struct {
	ID            string   `json:"id"`
	Kind          string   `json:"kind"` // "job", "check" (run the units) or "service" (serve requests)
	Module        []byte   `json:"module,omitempty"`
	Image         string   `json:"image,omitempty"` // instead of Module: a pinned OCI image reference
	Args          []string `json:"args,omitempty"`
	Units         [][]byte `json:"units"`
	Cores         int      `json:"cores"`
	Memory        uint64   `json:"memory"`
	UnitTimeoutMS int64    `json:"unit_timeout_ms"`
	IntervalMS    int64    `json:"interval_ms"`
}

// UsageReport is POST /api/v1/compute/leases/{id}/usage: the lease's usage so far,
// measured by the provider's agent from the operating system. Counters are
// cumulative, so a lost or repeated report loses or double-counts nothing.
type UsageReport struct {
	Seq    uint64 `json:"seq"`     // increases with every report of the lease
	CPUNS  int64  `json:"cpu_ns"`  // CPU time of all the lease's processes
	WallNS int64  `json:"wall_ns"` // time since the lease started
	RSS    uint64 `json:"rss"`     // memory held now, bytes
	Final  bool   `json:"final"`   // the provider has run every unit, or the service ended
	// A service's lease: Restarts is how many times the agent started the service
	// again after a crash (cumulative); Reason why it crashed last, or, with Final,
	// why it ended.
	Restarts int    `json:"restarts,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// ReportReply answers a usage report.
type ReportReply struct {
	Stop    bool   `json:"stop"` // end the lease's processes now
	Reason  string `json:"reason,omitempty"`
	Charged int64  `json:"charged"`
}

// UnitResult is POST /api/v1/compute/leases/{id}/results: one unit's outputs. Unit is
// the index in the lease's Units.
type UnitResult struct {
	Unit     int    `json:"unit"`
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr,omitempty"`
	ExitCode int    `json:"exit_code"`
	Err      string `json:"error,omitempty"`
}

// UnitOutput is one unit of an order's outputs.
type UnitOutput struct {
	Unit     int    `json:"unit"`
	Done     bool   `json:"done"`
	Stdout   []byte `json:"stdout,omitempty"`
	Stderr   []byte `json:"stderr,omitempty"`
	ExitCode int    `json:"exit_code"`
	Err      string `json:"error,omitempty"`
	Checked  bool   `json:"checked"` // confirmed by a re-run on another provider
}
