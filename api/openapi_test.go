package api_test

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
)

var update = flag.Bool("update", false, "rewrite docs/openapi.json from the route table below")

// The OpenAPI document, docs/openapi.json, is written from the table below (what each
// route is for, its parameters, auth and errors) and from the Go types the handlers
// really encode and decode (their JSON schemas are derived by reflection, so a field
// added to a reply type changes the document). TestOpenAPI fails when
//   - a route registered on the pool's or the market's mux is missing from the
//     document, or the document has a route that neither serves;
//   - the document on disk differs from what the table and the types give
//     (run: go test ./api -run TestOpenAPI -update);
//   - the binary serves a different document than docs/openapi.json.

// Who serves a route.
const (
	svcPool   = "pool"
	svcMarket = "market"
)

// Security schemes.
const (
	authPoolAdmin   = "poolAdmin"
	authMarketKey   = "marketKey"
	authMarketAdmin = "marketAdmin"
)

type param struct {
	name, in, typ, desc string
	required            bool
	enum                []string
}

type route struct {
	services []string
	pattern  string // exactly as registered on the mux
	summary  string
	desc     string
	auth     string
	params   []param // query parameters, and descriptions of path parameters
	body     any     // request body (a value of its Go type), nil for none
	bodyDesc string
	status   int    // success status; 200 when zero
	reply    any    // JSON reply (a value of its Go type)
	content  string // non-JSON reply media type
	errors   []string
}

var addrParam = param{name: "address", in: "path", typ: "string", desc: "a payout address (ASCII letters and digits, at most 100)"}

// openAPIRoutes is every HTTP route of the pool (api.New) and the market
// (market.NewHandler).
var openAPIRoutes = []route{
	// Both services.
	{services: []string{svcPool, svcMarket}, pattern: "GET /api/v1/openapi.json", summary: "This OpenAPI document",
		desc: "The OpenAPI 3 document of every route of the pool and the market, as built into the binary.", reply: map[string]any{}},

	// Pool: core JSON.
	{services: []string{svcPool}, pattern: "GET /api/v1/pool", summary: "Pool statistics",
		desc:  "The block being mined, connections, share totals and the pool's hashrate over hashrate_window_seconds (or over the time since the pool's first share, when that is shorter).",
		reply: api.PoolInfo{}, errors: []string{hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/workers/{address}", summary: "Workers of an address",
		desc:   "Every worker name that has sent shares for the address, with all-time share counts and the recent hashrate.",
		params: []param{addrParam}, reply: api.AddressInfo{}, errors: []string{hashgrid.EINVALID, hashgrid.ENOTFOUND, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/blocks", summary: "Blocks found",
		desc:  "The newest 500 blocks the pool found, newest first, with their status (submitted, accepted, rejected, confirmed, orphaned).",
		reply: []api.BlockInfo{}, errors: []string{hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/blocks/{hash}", summary: "One block",
		params: []param{{name: "hash", in: "path", typ: "string", desc: "block hash, 64 hex digits in display order"}},
		reply:  api.BlockInfo{}, errors: []string{hashgrid.EINVALID, hashgrid.ENOTFOUND, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /healthz", summary: "Health",
		desc:  "200 with status ok when the pool has a block template, every node is up and the store answers; 503 with status degraded and the problems otherwise (the body has the same shape in both cases).",
		reply: api.Health{}},
	{services: []string{svcPool, svcMarket}, pattern: "GET /metrics", summary: "Prometheus metrics",
		desc: "Metrics in the Prometheus text exposition format: the pool's (served when the pool runs with metrics; docs/grafana/hashgrid.json is a dashboard for them), or the market's (hashgrid_market_* of hashrate orders and sellers, hashgrid_compute_* of compute leasing).", content: "text/plain"},

	// Pool: dashboard.
	{services: []string{svcPool}, pattern: "GET /{$}", summary: "Dashboard page",
		desc: "The live dashboard (HTML; its script and style come from /static/).", content: "text/html"},
	{services: []string{svcPool}, pattern: "GET /address/{address}", summary: "Dashboard page of one address",
		params: []param{addrParam}, content: "text/html", errors: []string{hashgrid.EINVALID}},
	{services: []string{svcPool}, pattern: "GET /static/", summary: "Dashboard files",
		desc: "The dashboard's script, style sheet and icon, embedded in the binary.", content: "application/octet-stream",
		params: []param{{name: "file", in: "path", typ: "string", desc: "app.js, style.css or icon.svg"}}, errors: []string{hashgrid.ENOTFOUND}},
	{services: []string{svcPool}, pattern: "GET /api/v1/dashboard", summary: "Dashboard snapshot",
		desc:   "Everything the dashboard shows at one moment; with address, that address's view too.",
		params: []param{{name: "address", in: "query", typ: "string", desc: "a payout address to include"}},
		reply:  api.Snapshot{}, errors: []string{hashgrid.EINVALID, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/events", summary: "Live snapshots (server-sent events)",
		desc:    "A text/event-stream: a \"snapshot\" event (data: a Snapshot as GET /api/v1/dashboard gives it) every live interval, a \"problem\" event (data: an ErrorReply) when a snapshot cannot be built. At most 256 streams at once; more are refused with 503.",
		params:  []param{{name: "address", in: "query", typ: "string", desc: "a payout address to include"}},
		content: "text/event-stream", errors: []string{hashgrid.EINVALID, hashgrid.EUNAVAILABLE}},
	{services: []string{svcPool}, pattern: "GET /api/v1/history", summary: "Hashrate history",
		desc:   "The hashrate per bucket (default one minute over three hours), oldest first; the last bucket is the current one, rated over its elapsed time.",
		params: []param{{name: "address", in: "query", typ: "string", desc: "one payout address instead of the whole pool"}},
		reply:  api.HistoryReply{}, errors: []string{hashgrid.EINVALID, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/address/{address}", summary: "One address's dashboard view",
		desc:   "All-time shares, recent hashrate, workers, recent shares, best difficulty and blocks of one payout address. 404 when the pool knows nothing of it (no share, no connection).",
		params: []param{addrParam}, reply: api.AddressView{}, errors: []string{hashgrid.EINVALID, hashgrid.ENOTFOUND, hashgrid.EINTERNAL}},

	// Pool: public-pool compatible.
	{services: []string{svcPool}, pattern: "GET /api/info", summary: "public-pool: info",
		desc: "public-pool's GET /api/info: blocks found, user agents, the ten best share difficulties, uptime. Cached for a minute.", reply: api.PPInfo{}, errors: []string{hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/info/chart", summary: "public-pool: pool hashrate chart",
		desc: "Ten-minute buckets over a day, the current one left out.", reply: []api.PPChartPoint{}, errors: []string{hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/pool", summary: "public-pool: pool", reply: api.PPPool{}, errors: []string{hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/network", summary: "public-pool: network",
		desc: "The fields of bitcoind's getmininginfo.", reply: api.PPNetwork{}},
	{services: []string{svcPool}, pattern: "GET /api/client/{address}", summary: "public-pool: one address's connected workers",
		params: []param{addrParam}, reply: api.PPClient{}, errors: []string{hashgrid.EINVALID, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/client/{address}/chart", summary: "public-pool: one address's hashrate chart",
		params: []param{addrParam}, reply: []api.PPChartPoint{}, errors: []string{hashgrid.EINVALID, hashgrid.EINTERNAL}},

	// Pool: admin.
	{services: []string{svcPool}, pattern: "GET /api/v1/admin/sessions", summary: "Open Stratum sessions", auth: authPoolAdmin,
		reply: []pool.SessionInfo{}, errors: []string{hashgrid.EUNAUTHORIZED}},
	{services: []string{svcPool}, pattern: "POST /api/v1/admin/kick", summary: "Close a Stratum session", auth: authPoolAdmin,
		body: api.KickRequest{}, bodyDesc: "session: the session ID from GET /api/v1/admin/sessions",
		reply: map[string]string{}, desc: "Answers {\"kicked\": SESSION}.", errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.EUNAVAILABLE}},
	{services: []string{svcPool}, pattern: "POST /api/v1/admin/ban", summary: "Ban an IP from Stratum", auth: authPoolAdmin,
		body: api.BanRequest{}, bodyDesc: "ip, and seconds between 1 and one year",
		reply: map[string]any{}, desc: "Answers {\"banned\": IP, \"seconds\": N}.", errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.EUNAVAILABLE}},
	{services: []string{svcPool}, pattern: "GET /api/v1/admin/settings", summary: "Alert thresholds", auth: authPoolAdmin,
		reply: api.SettingsBody{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.EUNAVAILABLE}},
	{services: []string{svcPool}, pattern: "PUT /api/v1/admin/settings", summary: "Change the alert thresholds", auth: authPoolAdmin,
		body: api.SettingsBody{}, reply: api.SettingsBody{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.EUNAVAILABLE, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/admin/alerts", summary: "Recent alerts", auth: authPoolAdmin,
		desc: "The newest 100 alerts of the outbox, newest first, with their delivery state.", reply: []alert.Record{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.EINTERNAL}},

	// Pool: payouts (served when the pool runs a payout scheme).
	{services: []string{svcPool}, pattern: "GET /api/v1/miners/{address}", summary: "A miner's shares, balances and credits",
		desc:   "Served when the pool runs a payout scheme. Balances and credits come from the ledger, in satoshis.",
		params: []param{addrParam}, reply: api.MinerInfo{}, errors: []string{hashgrid.EINVALID, hashgrid.ENOTFOUND, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/payouts", summary: "Payouts",
		desc:   "Served when the pool runs a payout scheme: the payments of payout batches.",
		params: []param{{name: "address", in: "query", typ: "string", desc: "only this address's payments"}},
		reply:  []payout.PayoutView{}, errors: []string{hashgrid.EINVALID, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "GET /api/v1/blocks/{hash}/window", summary: "A block's published share window",
		desc: "Served when the pool runs a payout scheme: the shares a block's credits were computed from, in pages, so that anyone can recompute them (hashgrid verify).",
		params: []param{{name: "hash", in: "path", typ: "string", desc: "block hash, 64 hex digits"},
			{name: "after", in: "query", typ: "integer", desc: "share sequence to continue after (the previous page's next)"},
			{name: "limit", in: "query", typ: "integer", desc: fmt.Sprintf("shares per page, 1..%d", payout.MaxWindowPage)}},
		reply: payout.WindowView{}, errors: []string{hashgrid.EINVALID, hashgrid.ENOTFOUND, hashgrid.EINTERNAL}},
	{services: []string{svcPool}, pattern: "POST /api/v1/admin/payouts/{batch}/paid", summary: "Record that a payout batch was paid", auth: authPoolAdmin,
		desc:   "Served when the payout service exports batches for the operator to sign and broadcast. Answers {\"batch\": N, \"txid\": TXID, \"status\": \"paid\"}.",
		params: []param{{name: "batch", in: "path", typ: "integer", desc: "the batch number"}},
		body: struct {
			TxID string `json:"txid"`
		}{}, bodyDesc: "txid: the transaction that paid the batch",
		reply: map[string]any{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT, hashgrid.EINTERNAL}},

	// Market.
	{services: []string{svcMarket}, pattern: "GET /{$}", summary: "Market page",
		desc: "The market's page for buyers: the order book, their orders with delivered speed over time, their balance (HTML; its script and style come from /static/).", content: "text/html"},
	{services: []string{svcMarket}, pattern: "GET /static/{file}", summary: "Market page files",
		desc: "The market page's script, style sheet and icon, embedded in the binary.", content: "application/octet-stream",
		params: []param{{name: "file", in: "path", typ: "string", desc: "a file of the page"}}, errors: []string{hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/orders/{id}/speed", summary: "Delivered speed of an order over time", auth: authMarketKey,
		desc:   "One point per completed bucket from the first delivery on, oldest first, gaps as zero, and the speed now.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "order ID"}}, reply: market.SpeedHistory{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/orderbook", summary: "Order book",
		desc: "Active and paused orders by price, highest first, without destinations or owners.", reply: market.Book{}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/orders/{id}/shares", summary: "Delivered share sample of an order", auth: authMarketKey + "|" + authMarketAdmin,
		desc:   "The last shares delivered for the order, with everything needed to re-hash them (hashgrid market audit). With a buyer's key: the shares delivered to that buyer, sellers as per-order pseudonyms; with the admin token: all of them.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "order ID"}}, reply: []market.ShareSample{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/sellers/{address}", summary: "A seller's workers and earnings",
		params: []param{addrParam}, reply: market.SellerView{}, errors: []string{hashgrid.EINVALID, hashgrid.ENOTFOUND, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/contracts/quote", summary: "Quote a fixed-term contract",
		params: []param{{name: "speed", in: "query", typ: "number", desc: "TH/s", required: true},
			{name: "start", in: "query", typ: "string", desc: "RFC 3339 time", required: true},
			{name: "end", in: "query", typ: "string", desc: "RFC 3339 time", required: true}},
		reply: market.Quote{}, errors: []string{hashgrid.EINVALID}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/accounts", summary: "Create a buyer account",
		desc:   "Answers the account ID and its API key; the key is shown only here. Use it as \"Authorization: Bearer KEY\". Limited per remote address (IPv4 address or IPv6 /64); beyond the limit, 429.",
		status: http.StatusCreated, reply: market.AccountCreated{}, errors: []string{hashgrid.ERATELIMITED, hashgrid.ECONFLICT, hashgrid.EUNAVAILABLE, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/admin/deposits", summary: "Credit a deposit to an account", auth: authMarketAdmin,
		desc: "The operator records a deposit received outside the market (the admin token is HASHGRID_MARKET_ADMIN_TOKEN or --admin-token). Idempotent by reference.",
		body: market.DepositRequest{}, reply: market.AccountView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/account", summary: "The caller's account", auth: authMarketKey,
		reply: market.AccountView{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/orders", summary: "The caller's orders", auth: authMarketKey,
		reply: []market.OrderView{}, errors: []string{hashgrid.EUNAUTHORIZED}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/orders", summary: "Place a spot order", auth: authMarketKey,
		desc: "Moves budget from the balance into escrow and points sellers at pool_url while the price is among the best. Destinations on loopback or private networks are refused unless the operator allows them.",
		body: market.OrderRequest{}, bodyDesc: "price in sat per PH/s per day, limit in TH/s (0: none), budget in satoshis",
		status: http.StatusCreated, reply: market.OrderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ECONFLICT, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/orders/{id}", summary: "One of the caller's orders", auth: authMarketKey,
		params: []param{{name: "id", in: "path", typ: "string", desc: "order ID"}}, reply: market.OrderView{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "PATCH /api/v1/orders/{id}", summary: "Change a spot order's price or limit", auth: authMarketKey,
		params: []param{{name: "id", in: "path", typ: "string", desc: "order ID"}}, body: market.OrderEdit{}, bodyDesc: "fields left out are kept",
		reply: market.OrderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/orders/{id}/{action}", summary: "Pause, resume, refill or cancel an order", auth: authMarketKey,
		desc: "refill takes a body {\"amount\": SAT} moved from the balance into the order's escrow; the others take no body. cancel refunds what is left.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "order ID"},
			{name: "action", in: "path", typ: "string", desc: "what to do", enum: []string{"pause", "resume", "refill", "cancel"}}},
		body: struct {
			Amount int64 `json:"amount"`
		}{}, bodyDesc: "refill only: amount in satoshis",
		reply: market.OrderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/contracts", summary: "Buy a fixed-term contract", auth: authMarketKey,
		desc: "Escrows the whole term's price (at least the quote) and delivers speed TH/s to pool_url from start to end, ahead of every spot order.",
		body: market.ContractRequest{}, status: http.StatusCreated, reply: market.OrderView{},
		errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ECONFLICT, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/contracts/{id}/transfer", summary: "Offer a contract to another account", auth: authMarketKey,
		params: []param{{name: "id", in: "path", typ: "string", desc: "contract (order) ID"}}, body: market.TransferRequest{},
		bodyDesc: "to: the account offered to; price: what it pays, in satoshis",
		reply:    market.OrderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/contracts/{id}/accept", summary: "Accept a contract offered to the caller", auth: authMarketKey,
		desc:   "Pays the offer's price to the owner and delivers the rest of the term to the caller's destination.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "contract (order) ID"}}, body: market.Destination{},
		bodyDesc: "the caller's pool: url, user, password",
		reply:    market.OrderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT, hashgrid.EINTERNAL}},

	// Market: compute leasing (package compute). Tenants and providers are market
	// accounts. Prices are integers: sat per core-hour of CPU time and sat per GiB-hour
	// of memory held.
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/offers", summary: "Compute offers",
		desc:  "Every online, unmarked provider's offer, cheapest first: its resources, what is free now, and its price floors (price in sat per core-hour of CPU time, mem_price in sat per GiB-hour of memory held).",
		reply: []compute.Offer{}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/leases", summary: "Live compute leases",
		desc:  fmt.Sprintf("Every pending and running lease, newest first (at most %d): the provider's name, kind (job or check), the cores and memory held, the prices, and the CPU time, wall time and charge metered so far. Tenants and orders are not shown.", compute.MaxLiveLeases),
		reply: []compute.LiveLease{}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/orders", summary: "Submit a compute order", auth: authMarketKey,
		desc: fmt.Sprintf("Moves budget from the caller's market balance into the order's escrow, then leases the order to the provider named, or to the cheapest offer that fits unless manual (then POST .../accept). A job is a WebAssembly (wasip1) module run once per unit, the unit's bytes on its standard input. At most %d units, a %d-byte module, %d-byte units, %d open orders per account, a %d-byte request.",
			compute.MaxUnits, compute.MaxModuleBytes, compute.MaxUnitBytes, compute.MaxOpenOrders, compute.MaxOrderBytes),
		body: compute.OrderRequest{}, bodyDesc: "module and units base64; memory in bytes; max_price in sat per core-hour, max_mem_price in sat per GiB-hour; budget in satoshis",
		status: http.StatusCreated, reply: compute.OrderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/orders", summary: "The caller's compute orders", auth: authMarketKey,
		desc: "Newest first, with their leases and metering.", reply: []compute.OrderView{}, errors: []string{hashgrid.EUNAUTHORIZED}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/orders/{id}", summary: "One of the caller's compute orders", auth: authMarketKey,
		desc:   "The order, its leases and their metering: CPU and wall time in ms, charges in satoshis.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"}}, reply: compute.OrderView{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/orders/{id}/offers", summary: "Offers that fit a compute order", auth: authMarketKey,
		desc:   "The offers that fit the caller's order now (price, free cores and memory), cheapest first: the bids it may accept.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"}}, reply: []compute.Offer{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/orders/{id}/accept", summary: "Lease a compute order to an offer", auth: authMarketKey,
		desc:   "Leases the caller's open order to the provider named, or with {} to the cheapest offer that fits.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"}}, body: compute.AcceptRequest{}, bodyDesc: "provider: a provider ID from the order's offers; empty for the cheapest",
		reply: compute.OrderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/orders/{id}/cancel", summary: "Cancel a compute order", auth: authMarketKey,
		desc:   "Its leases stop at their next usage report; work reported so far is paid, the rest of the escrow returns to the balance. An order no longer open or running is answered as it is.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"}}, reply: compute.OrderView{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/orders/{id}/outputs", summary: "A compute order's outputs", auth: authMarketKey,
		desc:   fmt.Sprintf("Each unit's standard output (at most %d bytes, base64), the tail of its standard error (%d bytes), exit code, and whether a spot check on another provider confirmed it.", compute.MaxOutputBytes, compute.MaxStderrBytes),
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"}}, reply: []compute.UnitOutput{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/orders/{id}/log", summary: "A compute order's events", auth: authMarketKey,
		desc:   fmt.Sprintf("The order's event log, one line per event, oldest first; the last %d lines are kept.", compute.MaxLogLines),
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"}}, reply: []string{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/providers", summary: "Register or refresh a compute offer", auth: authMarketKey,
		desc: fmt.Sprintf("What hashgrid provider sends: the machine's resources and its price floors. The same account and name refresh the same provider. At most %d providers.", compute.MaxProviders),
		body: compute.ProviderRequest{}, bodyDesc: "memory in bytes; price in sat per core-hour of CPU time, mem_price in sat per GiB-hour of memory held; payout_address on the market's chain",
		reply: compute.ProviderView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.EUNAVAILABLE}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/providers/{id}", summary: "A provider's leases and earnings", auth: authMarketKey,
		desc:   "The caller's provider: its offer, leases, and earned, held and payable satoshis.",
		params: []param{{name: "id", in: "path", typ: "string", desc: "provider ID"}}, reply: compute.ProviderView{}, errors: []string{hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/providers/{id}/work", summary: "Leases for a provider to run (long poll)", auth: authMarketKey,
		desc: fmt.Sprintf("The caller's provider's leases not yet fetched (at once, possibly none); with wait_ms, waits for one up to that long (at most %d ms). At most %d polls of one provider wait at once; more are refused with 429. Polling keeps the provider online.", compute.MaxWait.Milliseconds(), compute.MaxPolls),
		params: []param{{name: "id", in: "path", typ: "string", desc: "provider ID"},
			{name: "wait_ms", in: "query", typ: "integer", desc: fmt.Sprintf("milliseconds to wait for a lease, 0..%d (more is taken as %d)", compute.MaxWait.Milliseconds(), compute.MaxWait.Milliseconds())}},
		reply: []compute.LeaseWork{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ERATELIMITED}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/leases/{id}/usage", summary: "Report a lease's usage", auth: authMarketKey,
		desc:   "Cumulative CPU time, wall time and resident memory of the lease, measured from the operating system, every metered interval (interval_ms). Each report is settled at once from the order's escrow; stop in the reply ends the lease (budget spent, order cancelled or faulted).",
		params: []param{{name: "id", in: "path", typ: "string", desc: "lease ID"}}, body: compute.UsageReport{}, bodyDesc: "cpu_ns and wall_ns in nanoseconds, rss in bytes, all cumulative; seq increases with every report",
		reply: compute.ReportReply{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.EINTERNAL}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/leases/{id}/results", summary: "One unit's outputs", auth: authMarketKey,
		desc:   fmt.Sprintf("The outputs of one unit of the lease (unit: its index in the lease's units). Standard output over %d bytes is refused. Answers {}.", compute.MaxOutputBytes),
		params: []param{{name: "id", in: "path", typ: "string", desc: "lease ID"}}, body: compute.UnitResult{}, bodyDesc: "stdout and stderr base64",
		reply: struct{}{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/orders/{id}/requests", summary: "Send a request to a compute service", auth: authMarketKey,
		desc: fmt.Sprintf("Queues the body for the order's running service (an order of kind service) and waits up to wait_ms for its answer: 200 with status done (response) or failed (error), or 202 with status queued or delivered when the wait ran out (ask GET .../requests/{rid}). A body over %d bytes is refused (400); a service with %d requests waiting or being answered refuses more (429); a service not running, or stopped (cancelled, budget spent, provider lost, crashed), refuses it (409). A request not answered within %d s fails.",
			compute.MaxRequestBytes, compute.MaxQueuedRequests, int(compute.RequestTimeout.Seconds())),
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"},
			{name: "wait_ms", in: "query", typ: "integer", desc: fmt.Sprintf("milliseconds to wait for the answer, 0..%d (the default; more is taken as %d)", compute.MaxWait.Milliseconds(), compute.MaxWait.Milliseconds())}},
		body: compute.ServiceRequest{}, bodyDesc: "body: the request's bytes, base64",
		reply: compute.RequestView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT, hashgrid.ERATELIMITED}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/orders/{id}/requests/{rid}", summary: "A request to a compute service",
		auth: authMarketKey,
		desc: fmt.Sprintf("The request's status and, once answered, the service's response; with wait_ms, waits for the answer up to that long. 202 while not answered. The last %d answered requests of a service are kept, and at most %d bytes of their responses.", compute.MaxKeptRequests, compute.MaxKeptBytes),
		params: []param{{name: "id", in: "path", typ: "string", desc: "compute order ID"}, {name: "rid", in: "path", typ: "string", desc: "request ID"},
			{name: "wait_ms", in: "query", typ: "integer", desc: fmt.Sprintf("milliseconds to wait for the answer, 0..%d", compute.MaxWait.Milliseconds())}},
		reply: compute.RequestView{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
	{services: []string{svcMarket}, pattern: "GET /api/v1/compute/leases/{id}/requests", summary: "Requests for a service lease (long poll)", auth: authMarketKey,
		desc: fmt.Sprintf("The requests waiting for the caller's service lease, at most %d, oldest first (at once, possibly none); with wait_ms, waits for one up to that long. A lease that is over answers 409: stop the service. At most %d polls of one lease wait at once.", compute.MaxRequestBatch, compute.MaxPolls),
		params: []param{{name: "id", in: "path", typ: "string", desc: "lease ID"},
			{name: "wait_ms", in: "query", typ: "integer", desc: fmt.Sprintf("milliseconds to wait for a request, 0..%d", compute.MaxWait.Milliseconds())}},
		reply: []compute.ServiceWork{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND, hashgrid.ECONFLICT, hashgrid.ERATELIMITED}},
	{services: []string{svcMarket}, pattern: "POST /api/v1/compute/leases/{id}/responses", summary: "A service's answer to one request", auth: authMarketKey,
		desc:   fmt.Sprintf("The service's response to a request it was handed (at most %d bytes), or error when it crashed on it. A request no longer waiting (timed out, or the service stopped) answers 404. Answers {}.", compute.MaxResponseBytes),
		params: []param{{name: "id", in: "path", typ: "string", desc: "lease ID"}}, body: compute.ServiceResponse{}, bodyDesc: "response base64",
		reply: struct{}{}, errors: []string{hashgrid.EINVALID, hashgrid.EUNAUTHORIZED, hashgrid.ENOTFOUND}},
}

// splitPattern turns a ServeMux pattern into an HTTP method and an OpenAPI path.
func splitPattern(p string) (method, path string) {
	method, path, ok := strings.Cut(p, " ")
	if !ok {
		return "", p
	}
	path = strings.ReplaceAll(path, "{$}", "")
	path = strings.ReplaceAll(path, "...}", "}")
	if strings.HasSuffix(path, "/") && path != "/" {
		path += "{file}" // a subtree pattern: every file below it
	}
	return strings.ToLower(method), path
}

var pathParam = regexp.MustCompile(`\{([a-zA-Z_][a-zA-Z0-9_]*)\}`)

// schemas derives JSON schemas from Go types, as encoding/json encodes them.
type schemas struct {
	comps map[string]any
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

func (s *schemas) of(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		return s.of(t.Elem())
	}
	if t == reflect.TypeFor[time.Time]() {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	if t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) {
		panic(fmt.Sprintf("openapi: %v has its own MarshalJSON: describe it by hand", t))
	}
	if t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if t == reflect.TypeFor[time.Duration]() {
			return map[string]any{"type": "integer", "format": "int64", "description": "nanoseconds"}
		}
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": s.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.of(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if t.Name() == "" {
			return s.object(t)
		}
		name := strings.TrimPrefix(t.PkgPath(), "github.com/hashgrid/hashgrid")
		name = strings.TrimPrefix(name, "/")
		if name == "" {
			name = "hashgrid"
		}
		name += "." + t.Name()
		if _, ok := s.comps[name]; !ok {
			s.comps[name] = nil // recursion guard
			s.comps[name] = s.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	panic(fmt.Sprintf("openapi: no schema for %v", t))
}

// object is a struct's schema: its JSON fields, embedded structs' fields inlined
// (where names collide, the least nested field wins, as in encoding/json).
func (s *schemas) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	depth := map[string]int{}
	req := map[string]bool{}
	var walk func(t reflect.Type, d int)
	walk = func(t reflect.Type, d int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, d+1)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if old, ok := depth[name]; ok && old <= d {
				continue
			}
			sc := s.of(f.Type)
			if strings.Contains(opts, "string") {
				sc = map[string]any{"type": "string"}
			}
			props[name], depth[name] = sc, d
			req[name] = !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer
		}
	}
	walk(t, 0)
	o := map[string]any{"type": "object", "properties": props}
	var required []string
	for name, r := range req {
		if r {
			required = append(required, name)
		}
	}
	if len(required) > 0 {
		sort.Strings(required)
		o["required"] = required
	}
	return o
}

var errorText = map[string]string{
	hashgrid.EINVALID:      "the request is malformed or out of range",
	hashgrid.EUNAUTHORIZED: "missing or wrong credentials",
	hashgrid.ENOTFOUND:     "nothing known of what was asked for",
	hashgrid.ENOTALLOWED:   "the path does not take this method (the Allow header lists those it takes)",
	hashgrid.ERATELIMITED:  "too many requests from this address; try again later",
	hashgrid.ECONFLICT:     "the request conflicts with the current state (for example, the balance is too low)",
	hashgrid.EUNAVAILABLE:  "the service cannot answer now (not running, too busy)",
	hashgrid.EINTERNAL:     "an internal error; its detail is in the server's log only",
}

// buildOpenAPI writes the document from the route table.
func buildOpenAPI() ([]byte, error) {
	s := &schemas{comps: map[string]any{}}
	s.comps["ErrorReply"] = s.object(reflect.TypeFor[hashgrid.ErrorReply]())
	responses := map[string]any{}
	for code, text := range errorText {
		responses[code] = map[string]any{
			"description": fmt.Sprintf("%d %s: %s (error.code %q)", hashgrid.HTTPStatus(code), http.StatusText(hashgrid.HTTPStatus(code)), text, code),
			"content":     map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/ErrorReply"}}},
		}
	}
	paths := map[string]map[string]any{}
	servedBy := map[string][]string{}
	for _, r := range openAPIRoutes {
		method, path := splitPattern(r.pattern)
		op := map[string]any{"summary": r.summary, "tags": r.services, "operationId": operationID(method, path)}
		if r.desc != "" {
			op["description"] = r.desc
		}
		var params []any
		described := map[string]param{}
		for _, p := range r.params {
			described[p.name+"/"+p.in] = p
		}
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			p, ok := described[m[1]+"/path"]
			if !ok {
				return nil, fmt.Errorf("%s: path parameter %s is not described", r.pattern, m[1])
			}
			params = append(params, paramObject(p, true))
		}
		for _, p := range r.params {
			switch p.in {
			case "query":
				params = append(params, paramObject(p, p.required))
			case "path":
				if !strings.Contains(path, "{"+p.name+"}") {
					return nil, fmt.Errorf("%s: described path parameter %s is not in the path", r.pattern, p.name)
				}
			default:
				return nil, fmt.Errorf("%s: parameter %s in %q", r.pattern, p.name, p.in)
			}
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if r.auth != "" {
			var alts []any // any one of them will do
			for _, a := range strings.Split(r.auth, "|") {
				if a != authPoolAdmin && a != authMarketKey && a != authMarketAdmin {
					return nil, fmt.Errorf("%s: auth %q", r.pattern, a)
				}
				alts = append(alts, map[string]any{a: []string{}})
			}
			op["security"] = alts
		}
		if r.body != nil {
			rb := map[string]any{"required": true,
				"content": map[string]any{"application/json": map[string]any{"schema": s.of(reflect.TypeOf(r.body))}}}
			if r.bodyDesc != "" {
				rb["description"] = r.bodyDesc
			}
			if strings.Contains(path, "{action}") {
				rb["required"] = false
			}
			op["requestBody"] = rb
		}
		status := r.status
		if status == 0 {
			status = http.StatusOK
		}
		ok := map[string]any{"description": http.StatusText(status)}
		switch {
		case r.content != "":
			ok["content"] = map[string]any{r.content: map[string]any{"schema": map[string]any{"type": "string"}}}
		case r.reply != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": s.of(reflect.TypeOf(r.reply))}}
		}
		resps := map[string]any{fmt.Sprint(status): ok}
		if r.pattern == "GET /healthz" {
			resps["503"] = map[string]any{"description": "degraded: the same body, with status degraded and its problems",
				"content": ok["content"]}
		}
		for _, code := range r.errors {
			if _, ok := errorText[code]; !ok {
				return nil, fmt.Errorf("%s: unknown error code %q", r.pattern, code)
			}
			resps[fmt.Sprint(hashgrid.HTTPStatus(code))] = map[string]any{"$ref": "#/components/responses/" + code}
		}
		if r.pattern != "GET /{$}" && !slices.Contains(r.errors, hashgrid.ENOTALLOWED) {
			resps["405"] = map[string]any{"$ref": "#/components/responses/" + hashgrid.ENOTALLOWED}
		}
		op["responses"] = resps
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		for _, svc := range r.services {
			if !slices.Contains(servedBy[path], svc) {
				servedBy[path] = append(servedBy[path], svc)
			}
		}
		if prev, dup := paths[path][method].(map[string]any); dup {
			// Two services serve the same path: one operation tagged with both.
			tags := prev["tags"].([]string)
			if d, ok := prev["description"]; ok {
				prev["description"] = fmt.Sprintf("%s: %v", strings.Join(tags, ", "), d)
			}
			for _, svc := range r.services {
				if slices.Contains(tags, svc) {
					return nil, fmt.Errorf("%s: documented twice for the %s", r.pattern, svc)
				}
				tags = append(tags, svc)
			}
			prev["tags"] = tags
			prev["summary"] = fmt.Sprintf("%s; %s", prev["summary"], r.summary)
			if d, ok := op["description"]; ok {
				prev["description"] = fmt.Sprintf("%v %s: %v", prev["description"], strings.Join(r.services, ", "), d)
			}
			continue
		}
		paths[path][method] = op
	}
	for path, svcs := range servedBy {
		if len(svcs) == 1 { // a path only one service has: point at its server
			paths[path]["servers"] = []any{serverOf(svcs[0])}
		}
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "hashgrid pool and market HTTP API",
			"version": "1",
			"license": map[string]any{"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
			"description": "Every HTTP route of the pool (hashgrid pool, hashgrid demo; default http://127.0.0.1:8080) and of the hashrate market (hashgrid market; default http://127.0.0.1:8081). " +
				"Each operation's tags say which serves it. Every error, including an unknown path or a method a path does not take, is answered as " +
				"{\"error\":{\"code\":CODE,\"message\":TEXT}} with the status of its code: " + codeList() + ". " +
				"Amounts of money are integers in satoshis. The document is generated from the routes and reply types by api/openapi_test.go.",
		},
		"servers": []any{serverOf(svcPool), serverOf(svcMarket)},
		"tags": []any{
			map[string]any{"name": svcPool, "description": "served by hashgrid pool and hashgrid demo"},
			map[string]any{"name": svcMarket, "description": "served by hashgrid market"},
		},
		"paths": paths,
		"components": map[string]any{
			"schemas":   s.comps,
			"responses": responses,
			"securitySchemes": map[string]any{
				authPoolAdmin:   map[string]any{"type": "http", "scheme": "bearer", "description": "the pool's admin token (Authorization: Bearer TOKEN); admin routes are refused when none is configured"},
				authMarketKey:   map[string]any{"type": "http", "scheme": "bearer", "description": "a market account's API key from POST /api/v1/accounts (buyers, compute tenants and compute providers)"},
				authMarketAdmin: map[string]any{"type": "http", "scheme": "bearer", "description": "the market's admin token"},
			},
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func codeList() string {
	var codes []string
	for c := range errorText {
		codes = append(codes, fmt.Sprintf("%s %d", c, hashgrid.HTTPStatus(c)))
	}
	sort.Strings(codes)
	return strings.Join(codes, ", ")
}

func serverOf(svc string) map[string]any {
	if svc == svcMarket {
		return map[string]any{"url": "http://127.0.0.1:8081", "description": "hashgrid market (--api)"}
	}
	return map[string]any{"url": "http://127.0.0.1:8080", "description": "hashgrid pool (--api)"}
}

func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(method)
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '{' || r == '}' || r == '.' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func paramObject(p param, required bool) map[string]any {
	sc := map[string]any{"type": p.typ}
	if len(p.enum) > 0 {
		sc["enum"] = p.enum
	}
	o := map[string]any{"name": p.name, "in": p.in, "required": required, "schema": sc}
	if p.desc != "" {
		o["description"] = p.desc
	}
	return o
}

// payoutFake is a payout service with a marker, so that every conditional payout
// route is registered.
type payoutFake struct{}

func (payoutFake) Miner(ctx context.Context, addr string) (payout.MinerView, error) {
	return payout.MinerView{}, nil
}
func (payoutFake) Payouts(ctx context.Context, addr string) ([]payout.PayoutView, error) {
	return nil, nil
}
func (payoutFake) BlockWindow(ctx context.Context, h chainhash.Hash, after uint64, limit int) (payout.WindowView, error) {
	return payout.WindowView{}, hashgrid.ErrNotFound
}
func (payoutFake) MarkPaid(ctx context.Context, batch int64, txid string) error { return nil }

// fullPool builds the pool's API with every optional part configured, so that every
// route it can serve is registered.
func fullPool(t *testing.T) *api.Server {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sess := &fakeSessions{}
	return api.New(api.Config{Store: store, Pool: fakePool{}, Node: fakeNode{}, Network: "regtest",
		Metrics:   http.NotFoundHandler(),
		Payouts:   payoutFake{},
		Dashboard: api.DashboardConfig{Sessions: sess, Kicker: sess, Banner: &fakeBanner{}, AdminToken: adminToken}})
}

func docPath(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "docs", "openapi.json")
}

func TestOpenAPI(t *testing.T) {
	want, err := buildOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	path := docPath(t)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/openapi.json differs from the route table and reply types; run: go test ./api -run TestOpenAPI -update")
	}

	// Every reference in the document resolves.
	var whole any
	if err := json.Unmarshal(got, &whole); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				var at any = whole
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := at.(map[string]any)
					at = m[part]
				}
				if at == nil {
					t.Errorf("docs/openapi.json: %s does not resolve", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(whole)

	// The document on disk against the routes the two muxes really hold.
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	documented := map[string]map[string]bool{svcPool: {}, svcMarket: {}}
	for p, ops := range doc.Paths {
		for m, raw := range ops {
			if m == "servers" || m == "parameters" {
				continue
			}
			var op struct{ Tags []string }
			json.Unmarshal(raw, &op)
			for _, tag := range op.Tags {
				documented[tag][m+" "+p] = true
			}
		}
	}
	srv := fullPool(t)
	mkt, mh := newMarket(t)
	registered := map[string][]string{svcPool: srv.Patterns(), svcMarket: mh.(interface{ Patterns() []string }).Patterns()}
	for _, svc := range []string{svcPool, svcMarket} {
		seen := map[string]bool{}
		for _, pat := range registered[svc] {
			m, p := splitPattern(pat)
			seen[m+" "+p] = true
			if !documented[svc][m+" "+p] {
				t.Errorf("%s serves %q, which docs/openapi.json lacks (add it to openAPIRoutes in api/openapi_test.go, then -update)", svc, pat)
			}
		}
		for op := range documented[svc] {
			if !seen[op] {
				t.Errorf("docs/openapi.json documents %q for the %s, which does not serve it", op, svc)
			}
		}
	}

	// Both binaries' servers answer the document they were built with.
	pool := httptest.NewServer(srv.Handler())
	defer pool.Close()
	for _, base := range []string{pool.URL, mkt.URL} {
		resp, err := http.Get(base + hashgrid.OpenAPIPath)
		if err != nil {
			t.Fatal(err)
		}
		served, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(served, got) {
			t.Errorf("%s%s: %d %s, %d bytes; want 200 application/json and docs/openapi.json (%d bytes): rebuild after -update",
				base, hashgrid.OpenAPIPath, resp.StatusCode, resp.Header.Get("Content-Type"), len(served), len(got))
		}
	}
}
