// Package market is hashgrid's hashrate market: buyers place orders (a destination
// pool, a price in satoshis per PH/s per day, a speed limit in TH/s and a budget held in escrow)
// or buy fixed-term contracts; sellers point miners at the market's Stratum port with
// user PAYOUT_ADDRESS.WORKER; the market routes each seller to the highest-priced live
// order that has room, forwards the seller's shares to that order's destination pool
// and measures delivery from the destination's answers only.
//
// Upstream sharing: when the destination gives at least 4 + SellerExtranonce2Size
// bytes of extranonce2 (8 by default), all sellers on one order use one upstream
// connection. The destination's extranonce1 is folded into the coinbase part sent to
// sellers, and the upstream extranonce2 is the seller's market extranonce1 (unique
// per seller connection) followed by the seller's own extranonce2 and zero padding.
// Moving a seller to another such order needs no set_extranonce: a new difficulty
// and a clean job are enough, which every Stratum V1 miner understands.
//
// One connection per seller: a destination that gives fewer bytes (4 is common), but
// at least SellerExtranonce2Size, has no room for a seller's extranonce1. Each seller
// routed to such an order gets a connection of its own to the destination, and is
// sent that connection's extranonce1 with mining.set_extranonce before its first job
// there; its extranonce2 is the destination's, padded with zeros. Only sellers that
// subscribed to it (mining.extranonce.subscribe, or the subscribe-extranonce
// extension of mining.configure) are routed there; the others go to other orders. The
// order's own connection stays open beside them: it keeps the order live and prices
// its shares, and sends no seller its jobs. MaxUpstreamsPerOrder bounds the
// connections an order has open this way, its own included; at the bound, further
// sellers go to other orders or wait. A seller that leaves the order has its
// connection closed once its shares in flight are answered, and is sent its own
// extranonce1 again with its next job elsewhere. Each such connection has its own
// jobs, duplicate sets, version mask (set_version_mask below), in-flight slots and
// reject count; delivery and settlement are the order's, as with one connection. A
// seller's connection that fails takes the seller off the order, which opens none
// for a new seller for dedicatedRetry (10 s). A destination that gives fewer bytes
// than SellerExtranonce2Size pauses its order with a reason saying so.
//
// Time slices: routing gives an order whole sellers while their speeds fit its limit;
// a seller faster than the room left gets a slice of its time there, that room over
// its speed, of every SlicePeriod (30 s by default), and offers the rest to the orders
// below, so an order smaller than one seller fills too. Slices shorter than MinSlice
// are not given (a move costs the work in flight); on a destination that needs a
// connection per seller, a sliced seller opens one for each slice. Each seller's period starts at an offset of its own,
// so sliced sellers move at different moments. A seller moved back to a job it had
// before gets it with a later ntime, so it does not repeat its earlier shares.
//
// Stratum V2 destinations: an order's pool_url may be stratum2+tcp://HOST:PORT/KEY.
// The market then opens one encrypted extended channel (the pool's certificate must be
// signed by KEY, or the order pauses as unreachable) and sees its jobs as V1 ones: the
// coinbase prefix as coinb1, the channel's extranonce prefix as the destination's
// extranonce1, its extranonce size as the extranonce2 size (v2dest.go); forwarded
// shares go as SubmitSharesExtended. Sellers may themselves speak V2 (`hashgrid
// market --stratum-v2`, package stratum/v2/bridge).
//
// Version rolling: a seller is sent mining.set_version_mask, before the job it applies
// to, whenever the mask its job's destination lets the market roll, intersected with
// the mask the seller negotiated, differs from what the seller was last told: a
// destination with a narrower mask, or one that changes it, keeps getting valid
// versions.
//
// Forwarding: a seller's share is checked by re-hashing it, against a per-job
// duplicate set, before anything about it is recorded, and the seller is answered at
// once: its read loop never waits on a destination. A share that also meets the
// destination's difficulty is forwarded on its own goroutine, holding one of the
// upstream's UpstreamInFlight slots; with every slot taken (a slow destination) it is
// not forwarded and the order counts it as dropped, so a slow destination slows only
// its own order.
//
// Anti-griefing: a seller's difficulty never goes below SellerMinDiff (default 1024,
// unless the destination's own difficulty is lower). Duplicate sets are kept per job
// and per seller extranonce1, bounded by MaxSharesPerSellerJob; a seller that fills
// its set has further shares on that job refused, never accepted unrecorded, and a
// reconnection that resumes its extranonce1 finds the set still there. A destination's
// rejection of a share the market found valid is booked to the seller that sent it;
// an order pauses only when rejectsToPause rejections in a row come from at least two
// sellers, and a seller whose shares alone are rejected while others' are accepted is
// dropped.
//
// Money: every charge and every earning is an entry in the ledger (package ledger).
// Sellers earn every valid share at the market's own difficulty, at the price of the
// order whose job it was, whether or not it also met the destination's difficulty;
// buyers pay for the shares their destination accepts, at its difficulty. The market
// carries the difference: each settlement posts the buyer's charge out of the order's
// escrow, the fee (FeeBps of the charge), the sellers' earnings (per worker,
// market:seller:ADDRESS/WORKER) and the rest to market:variance, and sums to zero.
// Amounts accrue exactly as Σ price · hashes (hashes of a share = its difficulty ·
// 2^32, which is the raw value of a hashgrid.Diff) and are posted as cumulative
// floors, so no rounding drifts; an order's escrow is reserved before a share is
// forwarded, so no order is ever charged past its budget, and the ledger refuses any
// entry that would take an escrow below zero.
//
// Paying sellers: in the same transaction as each settlement, a second entry keyed
// market:payable:ORDER:SEQ (the settlement's own key, renamed) moves what it credited
// each worker to miner:ADDRESS:balance, the balance the pool's payout engine (package
// payout) pays above its threshold, exactly as it pays pool miners. The per-worker
// accounts therefore hold nothing between entries: they are the ledger's record of
// which worker earned what (what each settlement credited them, which restarts
// reconcile from), while the money sits where the payout engine pays it from, one
// balance per address. Posting earnings straight to miner:ADDRESS:balance would lose
// that record, and with it the cumulative floors the next settlement is computed from.
// Earnings posted by an older market, which stayed in the per-worker accounts, are
// moved when the market opens (market:payable:ADDRESS/WORKER:upto:ENTRY). For the
// payout engine to pay them, Config.Ledger must be the pool's book (`hashgrid market
// --ledger` or `--postgres`): a market on a book of its own makes earnings payable
// in a book no payout engine reads. The seller's view (GET /api/v1/sellers/ADDRESS)
// shows each worker's earnings and the address's payable, pending and paid balances;
// the payouts, with their transactions, are the pool's payout views.
//
// State: what the ledger does not hold (buyers' accounts, orders' terms, status and
// delivery counters, the id counter) is in a StateStore. A market on a book of its
// own keeps it in files in its data directory (FileStore: market.json, rewritten
// whole, and an accounts journal); a market on the pool's book keeps it in the same
// database, SQLiteState in the pool's ledger.db or postgres.MarketState, one row per
// order and one per worker that earned on it, with versioned migrations run when it
// opens. A save writes only the orders and workers marked changed since the last one,
// in one transaction, at most every
// SettleInterval while shares flow, so a busy market does not rewrite every order
// every second. A market.json left by an earlier run is imported into an empty
// database once, and the log says so. A database store that holds the market's
// ledger (SettleStore) writes each settlement's entries and its order's record in
// one transaction. Otherwise money is posted first, under idempotent keys; either
// way every order is reconciled with its escrow's entries and its settlements' keys
// when the market opens (reconcile), so a crash between a posting and the save after
// it loses no money and counts none twice; counters of shares accepted after the
// last save are lost with the crash.
//
// Exposure: a buyer names the host the market dials, so destinations must resolve to
// public addresses (destpolicy.go), checked when an order is placed and at every
// dial, and a failed dial's detail goes to the log, not to the buyer. Anyone may open
// an account, so account creation is rate-limited per address and appends one line
// to a journal (or one row) instead of rewriting the state file. An order's delivered shares, which
// carry its destination's coinbase, are shown only to its buyer (sellers under
// pseudonyms) and to the operator's admin token. The buyers' page (web/) is served at
// "/" by the same handler.
//
// Standard orders: a spot order needs a budget of at least MinOrderBudget; its price
// may rise at any time and fall at most once per PriceDecreaseInterval, by at most
// MaxPriceDecreaseBps of the price.
//
// Left out: buyers' on-chain deposits and withdrawals (an operator credits
// deposits through the admin endpoint, and must bring the money to the wallet the
// pool pays from, since that wallet pays the sellers); destinations with fewer than
// SellerExtranonce2Size bytes of extranonce2, and sellers without
// mining.set_extranonce on destinations with fewer than 4 + SellerExtranonce2Size;
// several shared connections per order; one transaction for a settlement and its
// order's state when the state is not in the ledger's own database (FileStore, or a
// database store on another database): the market reconciles on start instead.
package market
