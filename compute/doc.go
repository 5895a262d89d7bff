// Package compute is hashgrid's compute-leasing market: machines lease spare CPU and
// memory to tenants, who pay per metered interval of work, settled in the same
// ledger, and paid out by the same payout engine, as hashrate.
//
// Providers run `hashgrid provider` (package compute/provider), which discovers the
// machine's cores, memory and GPUs and offers them at a price floor. Tenants, with
// the market's API key, submit an order: a job of work units (a WebAssembly module
// run once per unit, the unit's bytes on its standard input, by the provider's
// sandbox; or an OCI image, see below) or a long-running service (kind "service": the
// module started once and kept running, answering requests; see below), the cores and
// memory it needs, the most it pays and a budget. The order is leased to an offer the
// tenant accepts, or to the cheapest that fits.
//
// OCI images: an order may name an image (OrderRequest.Image) instead of a module,
// pinned by digest (registry-host/repository@sha256:HEX; a tag is refused, so every
// provider and every spot check's re-run runs the same bytes). An offer lists the
// runtimes its provider has (Resources.Runtimes: "wasm", and "oci" where the agent
// found runc and a probe container ran); an image order is leased only to an offer
// with "oci". The provider fetches the image anonymously (plain HTTP only from the
// registries it lists as insecure), verifies and unpacks it into its cache, and runs
// each unit as a container (package compute/oci): no network, a read-only root with
// a small /tmp, no capabilities, the lease's share of cores and memory as cgroup
// limits, and metering read from the container's cgroup. The rest (reports,
// settlement, spot checks, outputs) is as for WebAssembly. Services run WebAssembly
// only.
//
// Prices are integers: sat per core-hour of CPU time, and sat per GiB-hour of memory
// held. A core-hour is the unit compute is sold in elsewhere, so tenants and providers
// compare prices directly. A whole sat is a coarse tick for the cheapest cores (a cheap
// cloud vCPU-hour costs on the order of ten to a hundred sat), but only the price is
// rounded, never a charge: costs accrue exactly, as (price·CPU-ns·2^30 + memory price·
// Σ RSS·wall-ns) / (3.6·10^12·2^30), and are charged as differences of that cumulative
// floor, so no fraction is charged twice and none drifts.
//
// Metering: the provider's agent reports, every Config.Interval (a minute by default),
// each lease's cumulative CPU time, wall time and resident memory, measured by the
// sandbox from the operating system (/proc; a container's cgroup), never declared. The market bounds what
// it accepts by what the lease holds: wall time by its own clock since the last
// report (plus half an interval for the trip), CPU time by the leased cores over that
// wall time, memory by the memory leased. Each report is settled at once: the
// interval's cost moves from the order's escrow (compute:escrow:ORDER, funded from
// the tenant's market balance market:buyer:ACCOUNT when the order is placed) to the
// lease's held account (compute:held:LEASE). A lease whose escrow would not pay for
// another full interval (every leased core busy) is stopped in the reply to that
// report, so it stops within one interval of its budget running out and no provider
// works an interval nobody pays. Nothing is charged for work not reported.
//
// Cancelling: a lease not yet fetched ends at once; a running lease stops at its
// provider's next report, which is metered and charged like any other (at most an
// interval's work), so a provider is paid for what it did up to the stop and a tenant
// cannot take outputs and cancel before they are charged. A lease that does not
// report within an interval and a half of the cancel ends with what it reported.
//
// Pausing: a provider that registers with Paused (its agent does when a power
// controller moves the machine back to mining, see compute/provider's control
// endpoint) is offered to nobody and assigned no new lease, spot checks included;
// the leases it runs go on to their end, and its view says paused. Registering again
// without Paused offers it again, and open orders are tried on it at once.
//
// Liveness: a lease whose provider misses Config.MissedReports intervals (3) is lost;
// what it reported is paid, the rest of the escrow returns to the tenant.
//
// Services: a service's module is started once per instance by the provider's agent
// (compute/sandbox's serve mode: requests and responses framed on its standard
// streams as a 4-byte big-endian length and that many bytes) and runs until the
// tenant cancels it, its budget runs out (it is stopped within one interval, by the
// same rule as a job) or its provider is lost; it is metered and settled as a job
// is, and never spot-checked. The tenant sends requests through the market (at most
// MaxRequestBytes each, MaxQueuedRequests waiting per service, more answered 429);
// POST .../requests waits up to MaxWait for the answer and otherwise answers 202
// with the request's id to ask again by. The agent long-polls a lease's requests
// (MaxRequestBatch at a time) and posts each answer. A request not answered within
// RequestTimeout fails; every request waiting when the service stops fails with the
// reason, and requests sent after are refused (409). An instance that crashes fails
// the request it was answering and is started again, at most MaxServiceRestarts
// times per lease; the next crash ends the lease ("ended") and fails the order, the
// rest of the escrow refunded (an instance that exits while idle counts as a crash
// too). The order's log records the service's start, its restarts and its stop;
// OrderView and LeaseView carry its state and its counts of requests served and
// failed.
//
// Spot checks: a deterministic job's units are sampled (Config.SampleBps of them, at
// least one, picked by the market and not told to the provider) and re-run by a check
// lease on another provider, in parallel with the job; each sampled unit is compared
// byte for byte (standard output and exit code) as soon as both have run it. A
// disagreement is ruled by a third provider; the one it contradicts is faulted: its
// lease ends, the provider is marked (offered no more leases), and what its lease was
// charged returns to the tenant. A busy third provider is waited for; with none
// online that could rule, the job is faulted.
// Check leases take free capacity before orders still open; a job is left unchecked
// (verdict "unchecked", paid as metered) only when, for MissedReports intervals, no
// other provider that could run the order is online. The tenant pays for the re-runs
// (a tenth of the units by default) out of the same escrow.
//
// Money: every change is a ledger entry with an idempotency key (compute:fund:ORDER,
// compute:settle:LEASE:N, compute:release:LEASE, compute:payable:LEASE,
// compute:forfeit:LEASE, compute:refund:ORDER), in integer satoshis. What a lease was
// charged is held until its order has a spot-check verdict, because a payout on chain
// cannot be taken back; then it is released: the market's fee (Config.FeeBps of it)
// to compute:fees, the rest to compute:provider:ID and, in the same transaction, on
// to miner:ADDRESS:balance, where the pool's payout engine pays it above its
// threshold exactly as it pays miners and the hashrate market's sellers. For the
// engine to pay, the book must be the pool's (`hashgrid market --pool-data` or
// --postgres). For every order, what the tenant was charged equals what providers
// earned plus the fee, to the satoshi, plus what was forfeited back to the tenant.
//
// HTTP API, served by the market under /api/v1/compute/ (market.HTTPConfig.Compute);
// every route but the offers takes "Authorization: Bearer KEY", a market API key:
//
//	GET  /api/v1/compute/offers                   providers' offers, cheapest first
//	GET  /api/v1/compute/leases                   pending and running leases, newest first (no tenant, no order)
//	POST /api/v1/compute/orders                   submit an order (OrderRequest) → OrderView
//	GET  /api/v1/compute/orders                   the tenant's orders
//	GET  /api/v1/compute/orders/{id}              an order, its leases and their metering
//	GET  /api/v1/compute/orders/{id}/offers       offers that fit the order (its bids)
//	POST /api/v1/compute/orders/{id}/accept       {"provider": ID} or {} for the cheapest
//	POST /api/v1/compute/orders/{id}/cancel       stop its leases at their next report, refund the rest
//	GET  /api/v1/compute/orders/{id}/outputs      each unit's stdout, stderr, exit code
//	GET  /api/v1/compute/orders/{id}/log          the order's events
//	POST /api/v1/compute/providers                register or refresh an offer (ProviderRequest; paused: no new leases)
//	GET  /api/v1/compute/providers/{id}           the provider's leases and earnings
//	GET  /api/v1/compute/providers/{id}/work      long-poll (?wait_ms=, at most 20 s; MaxPolls at once) for leases
//	POST /api/v1/compute/leases/{id}/usage        report usage (UsageReport) → ReportReply
//	POST /api/v1/compute/leases/{id}/results      one unit's outputs (UnitResult)
//	POST /api/v1/compute/orders/{id}/requests     a request to a service (ServiceRequest; ?wait_ms=, default and at most 20 s) → RequestView, 202 if not answered yet
//	GET  /api/v1/compute/orders/{id}/requests/{rid}  a request and its answer (?wait_ms= to wait for it)
//	GET  /api/v1/compute/leases/{id}/requests     long-poll (?wait_ms=) for a service lease's requests → []ServiceWork
//	POST /api/v1/compute/leases/{id}/responses    a service's answer to one request (ServiceResponse)
//
// Left out: orders, leases and outputs are kept in memory, and closed orders for
// Config.Retention (a day): a restarted market loses them; when the book starts
// again, the escrow of orders left open returns to their tenants, while what their
// leases held for spot checks stays in compute:held: accounts, logged, for the
// operator to settle;
// private registries (images are fetched anonymously); a service's requests are kept
// in memory like the rest (a restarted market fails nothing explicitly: the requests
// are simply gone), are answered one at a time by each instance (one instance per
// leased core, at most provider.MaxServiceInstances), and carry no headers or
// streaming, only a body each way; services run WebAssembly, not images; GPUs are
// discovered and offered but no job can use one; a lost job's remaining units, or a
// lost service, are refunded, not moved to another provider, and so are those of a
// lease its provider hands back (a power controller moving the machine to mining).
package compute
