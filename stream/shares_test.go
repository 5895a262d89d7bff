package stream

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// memStore records AddShares calls; the other ShareStore methods are not used by the
// consumer and are left to the embedded nil interface.
type memStore struct {
	hashgrid.ShareStore
	fail   []error // returned by successive calls, then nil
	shares []hashgrid.Share
}

func (m *memStore) AddShares(ctx context.Context, shares []hashgrid.Share) error {
	if len(m.fail) > 0 {
		err := m.fail[0]
		m.fail = m.fail[1:]
		return err
	}
	m.shares = append(m.shares, shares...)
	return nil
}

func TestAppendShareStoreShares(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := openLog(t, t.TempDir(), Options{})
	in := []hashgrid.Share{
		{Seq: 99, Time: time.Unix(1700000000, 5).UTC(), Address: "bcrt1qa", Worker: "w", JobID: "1", Diff: hashgrid.DiffOne},
		{Time: time.Unix(1700000001, 0).UTC(), Address: "bcrt1qb", JobID: "2", Result: hashgrid.ShareStale},
	}
	for i := range in {
		if err := AppendShare(ctx, l, &in[i]); err != nil {
			t.Fatalf("AppendShare: %v", err)
		}
		if in[i].Seq != uint64(i+1) {
			t.Fatalf("AppendShare set Seq %d, want %d", in[i].Seq, i+1)
		}
	}
	bad := hashgrid.Share{Address: string(make([]byte, hashgrid.MaxShareAddressLen+1))}
	if err := AppendShare(ctx, l, &bad); err == nil || bad.Seq != 0 {
		t.Fatalf("AppendShare of an unencodable share: got %v, seq %d", err, bad.Seq)
	}

	store := &memStore{fail: []error{errors.New("database is locked")}}
	consume := StoreShares(ctx, store)
	err := Tailer{MinBackoff: time.Millisecond}.Run(ctx, l, 0, func(recs []Record) error {
		err := consume(recs)
		if err == nil && recs[len(recs)-1].Seq == 2 {
			cancel()
		}
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if !slices.Equal(store.shares, in) {
		t.Fatalf("stored:\n got %+v\nwant %+v", store.shares, in)
	}
}

func TestStoreSharesPermanentErrors(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, t.TempDir(), Options{})
	mustAppend(t, l, []byte("not a share"))
	err := Tail(ctx, l, 0, 10, StoreShares(ctx, &memStore{}))
	if err == nil || !bytesContains(err.Error(), "record 1: share") {
		t.Fatalf("Tail over an undecodable record: got %v", err)
	}

	l = openLog(t, t.TempDir(), Options{})
	sh := hashgrid.Share{Time: time.Unix(1, 0).UTC()}
	if err := AppendShare(ctx, l, &sh); err != nil {
		t.Fatal(err)
	}
	invalid := hashgrid.Errorf(hashgrid.EINVALID, "time out of range")
	err = Tail(ctx, l, 0, 10, StoreShares(ctx, &memStore{fail: []error{invalid}}))
	if !errors.Is(err, invalid) {
		t.Fatalf("Tail when the store refuses a share as invalid: got %v", err)
	}
}

// FuzzRecoverTail appends arbitrary bytes to a valid segment: Open must never panic,
// must keep every record written before, and the log must take appends afterwards.
func FuzzRecoverTail(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendFrame(nil, 4, []byte("next")))
	f.Add(appendFrame(nil, 4, []byte("next"))[:10])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, garbage []byte) {
		dir := t.TempDir()
		l, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
		for _, w := range want {
			mustAppend(t, l, w)
		}
		l.Close()
		appendToFile(t, tailSegment(t, dir), garbage)
		l, err = Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open after garbage %x: %v", garbage, err)
		}
		defer l.Close()
		got := readAll(t, l, 0, 100)
		if len(got) < 3 {
			t.Fatalf("after garbage %x: %d records kept, want at least 3", garbage, len(got))
		}
		checkRecords(t, got[:3], 1, want)
		seq := mustAppend(t, l, []byte("after"))
		if seq != uint64(len(got)+1) {
			t.Fatalf("Append after recovery: seq %d, want %d", seq, len(got)+1)
		}
	})
}
