package noise

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
)

// Files in the key directory. Secret keys are in SRI's base58-check form so that an
// operator can move them to or from an SRI configuration; the certificate is the hex of
// its 74 wire bytes.
const (
	AuthorityKeyFile = "authority.key"
	ServerKeyFile    = "server.key"
	CertificateFile  = "server.cert"
)

const (
	// DefaultCertValidity is how long a certificate issued by LoadOrCreateIdentity lasts.
	DefaultCertValidity = 365 * 24 * time.Hour
	// certBackdate starts a new certificate's window before now, so that a client whose
	// clock runs behind the server's accepts a certificate issued a moment ago.
	certBackdate = time.Hour
)

// LoadOrCreateAuthority reads the authority's secret key from dir, creating dir and a new
// key when there is none.
func LoadOrCreateAuthority(dir string) (*Authority, error) {
	k, err := loadOrCreateKey(filepath.Join(dir, AuthorityKeyFile))
	if err != nil {
		return nil, err
	}
	return AuthorityFromKey(k), nil
}

// LoadOrCreateIdentity reads the server's static key and certificate from dir. With an
// authority it creates the key if missing and issues a new certificate, valid for
// validity (DefaultCertValidity if zero), when the stored one is missing, was not signed
// by this authority for this key, is not valid at now, or has less than a quarter of
// validity left. Without one (the authority key kept elsewhere) both files must exist
// and the certificate is returned as it is.
//
// Server takes its configuration per connection, so a server that runs for longer than
// three quarters of the validity calls this again and hands the new Identity to the
// connections that follow.
func LoadOrCreateIdentity(dir string, auth *Authority, now time.Time, validity time.Duration) (*Identity, error) {
	keyPath, certPath := filepath.Join(dir, ServerKeyFile), filepath.Join(dir, CertificateFile)
	if auth == nil {
		k, err := loadKey(keyPath)
		if err != nil {
			return nil, err
		}
		c, err := loadCertificate(certPath)
		if err != nil {
			return nil, err
		}
		return &Identity{Static: k, Certificate: c}, nil
	}
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	k, err := loadOrCreateKey(keyPath)
	if err != nil {
		return nil, err
	}
	c, err := loadCertificate(certPath)
	fresh := err == nil &&
		c.Verify(auth.PublicKey(), xOnly(k.PubKey()), now, 0) == nil &&
		now.Add(validity/4).Unix() <= int64(c.NotValidAfter)
	if !fresh {
		c, err = auth.Certify(k.PubKey(), now.Add(-certBackdate), now.Add(validity))
		if err != nil {
			return nil, err
		}
		b := c.Bytes()
		if err := writeFileAtomic(certPath, hex.EncodeToString(b[:])+"\n"); err != nil {
			return nil, err
		}
	}
	return &Identity{Static: k, Certificate: c}, nil
}

func loadKey(path string) (*btcec.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("noise: key: %w", err)
	}
	k, err := ParseSecretKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func loadOrCreateKey(path string) (*btcec.PrivateKey, error) {
	k, err := loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if k, err = btcec.NewPrivateKey(); err != nil {
		return nil, fmt.Errorf("noise: new key: %w", err)
	}
	if err := writeFileAtomic(path, EncodeSecretKey(k)+"\n"); err != nil {
		return nil, err
	}
	return k, nil
}

func loadCertificate(path string) (Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Certificate{}, fmt.Errorf("noise: certificate: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return Certificate{}, fmt.Errorf("noise: certificate %s: %w", path, err)
	}
	return ParseCertificate(raw)
}

// writeFileAtomic writes a file readable by its owner only, through a rename so that a
// crash leaves the old file or the new one, never half of one.
func writeFileAtomic(path, content string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("noise: key dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("noise: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("noise: write %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("noise: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("noise: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("noise: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("noise: write %s: %w", path, err)
	}
	return nil
}
