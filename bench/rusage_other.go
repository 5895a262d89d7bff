//go:build !unix

package bench

// ProcessUsage returns the zero Usage: it is measured on Unix systems only.
func ProcessUsage() Usage { return Usage{} }
