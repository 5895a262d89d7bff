package regtest

import "syscall"

// sysProcAttr kills btcd when the process that started it dies, so a crashed or killed
// test never leaves a node behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
