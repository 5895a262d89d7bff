//go:build unix

package stream

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on path, so that two processes never write
// the same log. The kernel drops it when the process dies, so a crash needs no cleanup.
func lockDir(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("in use by another process")
		}
		return nil, err
	}
	return f.Close, nil
}
