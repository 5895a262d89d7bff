package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/stream"
)

// crashChildEnv names the directory a re-executed test binary runs the pool's share
// path in, until it is killed. With crashPruneEnv set, the child also prunes the store
// all the while, as the pool's retention does.
const (
	crashChildEnv = "HASHGRID_SQLITE_CRASH_CHILD"
	crashPruneEnv = "HASHGRID_SQLITE_CRASH_PRUNE"
)

const (
	crashAppenders = 16
	crashAddresses = 4
	crashSegment   = 64 << 10 // small segments, so the child rotates and prunes
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		if err := crashChild(dir, os.Getenv(crashPruneEnv) != ""); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild does what the pool does with shares: appenders append to the stream and
// report "ack SEQ JOBID" once Append returned nil; a consumer tails the stream into the
// store from its LastSeq and prunes what the store holds. With prune, the store's
// retention prunes one block a transaction, all but the newest few hundred shares,
// and reports "pruned SEQ". It runs until killed.
func crashChild(dir string, prune bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // in case the parent dies
	defer cancel()
	db, err := Open(filepath.Join(dir, "pool.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	last, err := db.LastSeq(ctx)
	if err != nil {
		return err
	}
	log, err := stream.Open(filepath.Join(dir, "stream"), stream.Options{SegmentSize: crashSegment, FirstSeq: last + 1})
	if err != nil {
		return err
	}
	defer log.Close()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		out.Unlock()
	}
	run := os.Getpid()
	var wg sync.WaitGroup
	store := stream.StoreShares(ctx, db)
	wg.Go(func() {
		err := stream.Tail(ctx, log, last, 200, func(recs []stream.Record) error {
			if err := store(recs); err != nil {
				return err
			}
			top := recs[len(recs)-1].Seq
			before := top + 1
			if p := db.pruned.Load(); prune {
				// The stream keeps 500 shares the store has pruned, so that a replay
				// after the kill offers the store shares it no longer holds.
				before = min(before, max(p, 500)-499)
			}
			if _, err := log.Prune(before); err != nil {
				return err
			}
			say("stored %d", top)
			return nil
		})
		say("tail %v", err)
	})
	if prune {
		wg.Go(func() {
			for ctx.Err() == nil {
				last, err := db.LastSeq(ctx)
				if err != nil || last < 300 {
					continue
				}
				r, err := db.Prune(ctx, time.Now(), last-300, 1)
				if err != nil {
					say("prune %v", err)
					return
				}
				if r.Blocks > 0 {
					say("pruned %d", r.Seq)
				}
				// And the minutes of the pruned hours into hours, a few rows at a time.
				if p, err := db.Pruned(ctx); err != nil || p.Seq == 0 {
					continue
				} else if r, err := db.Rollup(ctx, p.Time, 8); err != nil {
					say("rollup %v", err)
					return
				} else if r.Rows > 0 {
					say("rolled %d", r.Rows)
				}
			}
		})
	}
	// Under pruning the shares' times run thirty seconds apart from a fixed start, so
	// that a run spans hours to roll up.
	var clock atomic.Int64
	at := func() time.Time {
		if prune {
			return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(clock.Add(1)) * 30 * time.Second)
		}
		return time.Now()
	}
	for g := range crashAppenders {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				sh := hashgrid.Share{
					Time: at(), Address: fmt.Sprintf("bcrt1qcrash%d", g%crashAddresses), Worker: fmt.Sprint("w", g),
					JobID: fmt.Sprintf("%d-%d-%d", run, g, i), Height: 1000, Diff: hashgrid.DiffOne + hashgrid.Diff(g),
					Actual: hashgrid.DiffOne * 2, UserAgent: "crash-test", Remote: "127.0.0.1:1",
				}
				if i%10 == 0 {
					sh.Result = hashgrid.ShareLowDiff
				}
				if err := stream.AppendShare(ctx, log, &sh); err != nil {
					say("append %v", err)
					return
				}
				say("ack %d %s", sh.Seq, sh.JobID)
			}
		})
	}
	wg.Wait()
	return nil
}

// runCrashChild starts the child on dir, waits until it has acknowledged at least
// minAcks shares and stored some (and, with prune, pruned some), kills it with SIGKILL
// and returns what it acknowledged.
func runCrashChild(t *testing.T, dir string, minAcks int, prune bool) map[uint64]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	if prune {
		cmd.Env = append(cmd.Env, crashPruneEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{}
	stored, pruned, rolled := 0, 0, 0
	killed := false
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "ack":
			seq, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("child: %q", sc.Text())
			}
			if prev, dup := acked[seq]; dup {
				t.Fatalf("child: sequence %d acknowledged for %s and %s", seq, prev, f[2])
			}
			acked[seq] = f[2]
		case len(f) == 2 && f[0] == "stored":
			stored++
		case len(f) == 2 && f[0] == "pruned":
			pruned++
		case len(f) == 2 && f[0] == "rolled":
			rolled++
		default:
			t.Fatalf("child: unexpected line %q", sc.Text())
		}
		// With pruning, the kill waits for some minutes rolled up into hours too (on a
		// loaded machine the child could be killed before its first rollup).
		if !killed && len(acked) >= minAcks && stored >= 3 && (!prune || pruned >= 3 && rolled >= 1) {
			// Mid-run: appenders are waiting on fsyncs and the consumer is mid-batch.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before it was killed (%d acks, %d stored batches): %v", len(acked), stored, err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child exit: got %v, want killed by SIGKILL", cmd.ProcessState)
	}
	return acked
}

// TestCrashRecovery kills a process that appends shares through the stream into the
// store, twice, and checks after each kill that replaying the stream from the store's
// LastSeq leaves every acknowledged share in the store exactly once.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	dir := t.TempDir()
	acked := map[uint64]string{}
	for round := range 2 {
		for seq, job := range runCrashChild(t, dir, 3000, false) {
			acked[seq] = job
		}
		recoverAndCheck(t, dir, acked, round)
	}
}

func recoverAndCheck(t *testing.T, dir string, acked map[uint64]string, round int) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(filepath.Join(dir, "pool.db"))
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	defer db.Close()
	from, err := db.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log, err := stream.Open(filepath.Join(dir, "stream"), stream.Options{SegmentSize: crashSegment})
	if err != nil {
		t.Fatalf("reopen stream: %v", err)
	}
	defer log.Close()
	top := log.LastSeq()
	if top < from {
		t.Fatalf("stream ends at %d, before the store's %d", top, from)
	}

	// Replay from LastSeq until the store has caught up with the stream.
	replay := func(after uint64) {
		t.Helper()
		if after >= top {
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		store := stream.StoreShares(ctx, db)
		err := stream.Tail(ctx, log, after, 500, func(recs []stream.Record) error {
			if err := store(recs); err != nil {
				return err
			}
			if recs[len(recs)-1].Seq >= top {
				cancel()
			}
			return nil
		})
		if err != context.Canceled {
			t.Fatalf("replay: %v", err)
		}
	}
	replay(from)
	if got, _ := db.LastSeq(ctx); got != top {
		t.Fatalf("store LastSeq after replay: got %d, want %d", got, top)
	}

	// Every acknowledged share is stored under its sequence; nothing is stored twice.
	byJob := map[string]uint64{}
	var all []hashgrid.Share
	for a := range crashAddresses {
		ss, err := db.SharesFor(ctx, fmt.Sprintf("bcrt1qcrash%d", a), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ss...)
	}
	bySeq := map[uint64]hashgrid.Share{}
	for _, s := range all {
		if prev, dup := byJob[s.JobID]; dup {
			t.Fatalf("share %s stored twice, as %d and %d", s.JobID, prev, s.Seq)
		}
		byJob[s.JobID] = s.Seq
		bySeq[s.Seq] = s
	}
	if uint64(len(all)) != top {
		t.Fatalf("store holds %d shares, the stream numbered %d", len(all), top)
	}
	for seq, job := range acked {
		s, ok := bySeq[seq]
		if !ok || s.JobID != job {
			t.Fatalf("acknowledged share %d (%s) not in the store (found %q)", seq, job, s.JobID)
		}
	}
	checkCounts := func(what string) {
		t.Helper()
		var acc, rej uint64
		var w hashgrid.Work
		for _, s := range all {
			if s.Result == hashgrid.ShareAccepted {
				acc++
				w = w.Add(s.Diff)
			} else {
				rej++
			}
		}
		checkTotals(t, db, acc, rej, w)
		var sumAcc, sumRej uint64
		for _, wk := range mustWorkers(t, db, "") {
			sumAcc += wk.Accepted
			sumRej += wk.Rejected
		}
		if sumAcc != acc || sumRej != rej {
			t.Fatalf("%s: worker summaries count %d accepted, %d rejected; shares say %d, %d", what, sumAcc, sumRej, acc, rej)
		}
		// The per-minute summaries agree with the stored shares row for row.
		checkMinutes(t, db)
	}
	checkCounts("after replay")

	// Replaying everything the stream still holds counts nothing twice.
	replay(log.FirstSeq() - 1)
	checkCounts("after a full replay")
	t.Logf("round %d: %d shares stored (%d acknowledged; the rest were durable when the kill cut off their reply); "+
		"store had %d, stream kept from %d in %d segments", round, len(all), len(acked), from, log.FirstSeq(), log.Segments())
}

// TestCrashDuringPrune kills a process that appends shares through the stream into the
// store while retention prunes the store block by block and rolls the summaries of
// pruned hours up into hours, twice, and checks after each
// kill that nothing was lost: after replaying the stream from the store's LastSeq, the
// store holds exactly the shares after its pruned prefix, every acknowledged one among
// them, and the summaries count every share the stream numbered exactly once, pruned
// or not, also after the whole stream is replayed again.
func TestCrashDuringPrune(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	dir := t.TempDir()
	acked := map[uint64]string{}
	for round := range 2 {
		for seq, job := range runCrashChild(t, dir, 3000, true) {
			acked[seq] = job
		}
		recoverPrunedAndCheck(t, dir, acked, round)
	}
}

func recoverPrunedAndCheck(t *testing.T, dir string, acked map[uint64]string, round int) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(filepath.Join(dir, "pool.db"))
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	defer db.Close()
	from, err := db.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log, err := stream.Open(filepath.Join(dir, "stream"), stream.Options{SegmentSize: crashSegment})
	if err != nil {
		t.Fatalf("reopen stream: %v", err)
	}
	defer log.Close()
	top := log.LastSeq()
	if top < from {
		t.Fatalf("stream ends at %d, before the store's %d", top, from)
	}
	replay := func(after uint64) {
		t.Helper()
		if after >= top {
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		store := stream.StoreShares(ctx, db)
		err := stream.Tail(ctx, log, after, 500, func(recs []stream.Record) error {
			if err := store(recs); err != nil {
				return err
			}
			if recs[len(recs)-1].Seq >= top {
				cancel()
			}
			return nil
		})
		if err != context.Canceled {
			t.Fatalf("replay: %v", err)
		}
	}
	check := func(what string) {
		t.Helper()
		p, err := db.Pruned(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Seq == 0 {
			t.Fatalf("%s: nothing pruned", what)
		}
		// Exactly the shares after the pruned prefix are stored, each once.
		stored := storedSeqs(t, db)
		if uint64(len(stored)) != top-p.Seq || stored[0] != p.Seq+1 || stored[len(stored)-1] != top {
			t.Fatalf("%s: store holds %d shares (%d..%d); pruned through %d, stream ends at %d",
				what, len(stored), stored[0], stored[len(stored)-1], p.Seq, top)
		}
		if p.Shares != p.Seq {
			t.Fatalf("%s: %d shares pruned through %d", what, p.Shares, p.Seq)
		}
		bySeq := map[uint64]string{}
		for a := range crashAddresses {
			ss, err := db.SharesFor(ctx, fmt.Sprintf("bcrt1qcrash%d", a), 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range ss {
				bySeq[s.Seq] = s.JobID
			}
		}
		for seq, job := range acked {
			if seq > p.Seq && bySeq[seq] != job {
				t.Fatalf("%s: acknowledged share %d (%s) not in the store (found %q)", what, seq, job, bySeq[seq])
			}
		}
		// Every share the stream numbered is counted once: in the totals, the
		// workers and the minutes, whether its raw share is pruned or not.
		acc, rej, _, err := db.Totals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if acc+rej != top {
			t.Fatalf("%s: totals count %d accepted and %d rejected shares, the stream numbered %d", what, acc, rej, top)
		}
		var wAcc, wRej uint64
		for _, w := range mustWorkers(t, db, "") {
			wAcc, wRej = wAcc+w.Accepted, wRej+w.Rejected
		}
		sums, err := db.Summaries(ctx, "", time.Unix(0, 0), time.Now().Add(time.Hour), maxSummaries)
		if err != nil {
			t.Fatal(err)
		}
		var mAcc, mRej uint64
		for _, s := range sums {
			mAcc, mRej = mAcc+s.Accepted, mRej+s.Rejected
		}
		if wAcc != acc || wRej != rej || mAcc != acc || mRej != rej {
			t.Fatalf("%s: totals %d/%d, workers %d/%d, minutes %d/%d accepted/rejected", what, acc, rej, wAcc, wRej, mAcc, mRej)
		}
	}
	replay(from)
	check("after replay")
	if p, _ := db.Pruned(ctx); log.FirstSeq() > p.Seq {
		t.Fatalf("the stream keeps shares from %d, the store pruned through %d: a full replay offers no pruned share", log.FirstSeq(), p.Seq)
	}
	replay(log.FirstSeq() - 1)
	check("after a full replay")
	p, _ := db.Pruned(ctx)
	var hours int
	db.r.QueryRow(`SELECT COUNT(*) FROM work_hours`).Scan(&hours)
	if hours == 0 {
		t.Fatalf("round %d: no summary rolled up into hours", round)
	}
	t.Logf("round %d: stream numbered %d shares, store pruned through %d and had %d before replay; %d rows of work_hours",
		round, top, p.Seq, from, hours)
}
