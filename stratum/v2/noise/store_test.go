package noise

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateAuthority(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	a1, err := LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a1.PublicKey() != a2.PublicKey() {
		t.Fatalf("authority changed across loads: %s then %s", a1.PublicKey(), a2.PublicKey())
	}
	path := filepath.Join(dir, AuthorityKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if got, want := strings.TrimSpace(string(b)), EncodeSecretKey(a1.SecretKey()); got != want {
		t.Errorf("file holds %q, want %q", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only %s", len(entries), AuthorityKeyFile)
	}
}

// TestKeyFileDamaged: a damaged key is an error, never silently replaced (which would
// change the pool's identity under its users).
func TestKeyFileDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, AuthorityKeyFile), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateAuthority(dir); !errors.Is(err, errKeyFormat) {
		t.Fatalf("err %v, want errKeyFormat", err)
	}
}

// TestKeyFileFromSRI: a secret key as SRI's configuration writes it loads as is.
func TestKeyFileFromSRI(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, AuthorityKeyFile), []byte("mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n\n"), 0o600)
	a, err := LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.PublicKey().String(); got != "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72" {
		t.Fatalf("public key %s", got)
	}
}

func TestLoadOrCreateIdentity(t *testing.T) {
	dir := t.TempDir()
	auth, err := LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	validity := 100 * 24 * time.Hour
	id1, err := LoadOrCreateIdentity(dir, auth, now, validity)
	if err != nil {
		t.Fatal(err)
	}
	c := id1.Certificate
	if err := c.Verify(auth.PublicKey(), xOnly(id1.Static.PubKey()), now, 0); err != nil {
		t.Fatalf("new certificate: %v", err)
	}
	if int64(c.NotValidAfter) != now.Add(validity).Unix() || int64(c.ValidFrom) != now.Add(-certBackdate).Unix() {
		t.Fatalf("window %d..%d", c.ValidFrom, c.NotValidAfter)
	}

	// A restart keeps key and certificate.
	later := now.Add(validity / 2)
	id2, err := LoadOrCreateIdentity(dir, auth, later, validity)
	if err != nil {
		t.Fatal(err)
	}
	if !id2.Static.Key.Equals(&id1.Static.Key) || id2.Certificate != c {
		t.Fatal("restart changed the identity")
	}
	// Without the authority the stored pair is used as it is.
	id3, err := LoadOrCreateIdentity(dir, nil, later, validity)
	if err != nil {
		t.Fatal(err)
	}
	if !id3.Static.Key.Equals(&id1.Static.Key) || id3.Certificate != c {
		t.Fatal("load without authority differs")
	}

	// With under a quarter of the validity left, the same key gets a new certificate.
	renew := now.Add(validity * 3 / 4).Add(time.Minute)
	id4, err := LoadOrCreateIdentity(dir, auth, renew, validity)
	if err != nil {
		t.Fatal(err)
	}
	if !id4.Static.Key.Equals(&id1.Static.Key) {
		t.Fatal("renewal changed the static key")
	}
	if int64(id4.Certificate.NotValidAfter) != renew.Add(validity).Unix() {
		t.Fatalf("renewed certificate ends %d, want %d", id4.Certificate.NotValidAfter, renew.Add(validity).Unix())
	}

	// A new authority (its key replaced) re-signs the server's key.
	other := AuthorityFromKey(newKey(t))
	id5, err := LoadOrCreateIdentity(dir, other, renew, validity)
	if err != nil {
		t.Fatal(err)
	}
	if err := id5.Certificate.Verify(other.PublicKey(), xOnly(id5.Static.PubKey()), renew, 0); err != nil {
		t.Fatalf("certificate after the authority changed: %v", err)
	}

	// The identity serves a handshake that a client checks against the authority.
	sc, cc := newPipe(t)
	_, _, serr, cerr := handshake(t, sc, cc, ServerConfig{Identity: id5},
		ClientConfig{Authority: other.PublicKey(), Now: func() time.Time { return renew }})
	if serr != nil || cerr != nil {
		t.Fatalf("handshake with the stored identity: %v, %v", serr, cerr)
	}
}

func TestLoadIdentityWithoutAuthorityNeedsFiles(t *testing.T) {
	if _, err := LoadOrCreateIdentity(t.TempDir(), nil, time.Now(), 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err %v, want not exist", err)
	}
}
