//go:build !linux

package regtest

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: Stop and Kill are the only cleanup.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
