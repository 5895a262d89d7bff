package oci

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The OCI runtime configuration (config.json) that runc reads: only the fields this
// package sets, with the names and JSON keys of the runtime specification.
type (
	rtSpec struct {
		Version  string    `json:"ociVersion"`
		Process  rtProcess `json:"process"`
		Root     rtRoot    `json:"root"`
		Hostname string    `json:"hostname"`
		Mounts   []rtMount `json:"mounts"`
		Linux    rtLinux   `json:"linux"`
	}
	rtProcess struct {
		Terminal        bool      `json:"terminal"`
		User            rtUser    `json:"user"`
		Args            []string  `json:"args"`
		Env             []string  `json:"env"`
		Cwd             string    `json:"cwd"`
		Capabilities    rtCaps    `json:"capabilities"`
		Rlimits         []rtLimit `json:"rlimits"`
		NoNewPrivileges bool      `json:"noNewPrivileges"`
	}
	rtUser struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	}
	// rtCaps lists every set empty: the job has no capability at all.
	rtCaps struct {
		Bounding    []string `json:"bounding"`
		Effective   []string `json:"effective"`
		Inheritable []string `json:"inheritable"`
		Permitted   []string `json:"permitted"`
		Ambient     []string `json:"ambient"`
	}
	rtLimit struct {
		Type string `json:"type"`
		Hard uint64 `json:"hard"`
		Soft uint64 `json:"soft"`
	}
	rtRoot struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	}
	rtMount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type"`
		Source      string   `json:"source"`
		Options     []string `json:"options"`
	}
	rtLinux struct {
		Namespaces    []rtNamespace `json:"namespaces"`
		CgroupsPath   string        `json:"cgroupsPath"`
		Resources     rtResources   `json:"resources"`
		Seccomp       *rtSeccomp    `json:"seccomp,omitempty"`
		MaskedPaths   []string      `json:"maskedPaths"`
		ReadonlyPaths []string      `json:"readonlyPaths"`
	}
	rtNamespace struct {
		Type string `json:"type"`
	}
	rtResources struct {
		Devices []rtDevice `json:"devices"`
		CPU     rtCPU      `json:"cpu"`
		Pids    rtPids     `json:"pids"`
	}
	rtDevice struct {
		Allow  bool   `json:"allow"`
		Access string `json:"access"`
	}
	rtCPU struct {
		Quota  int64  `json:"quota"`
		Period uint64 `json:"period"`
	}
	rtPids struct {
		Limit int64 `json:"limit"`
	}
	rtSeccomp struct {
		DefaultAction string           `json:"defaultAction"`
		Architectures []string         `json:"architectures,omitempty"`
		Syscalls      []rtSyscallGroup `json:"syscalls"`
	}
	rtSyscallGroup struct {
		Names    []string `json:"names"`
		Action   string   `json:"action"`
		ErrnoRet *uint    `json:"errnoRet,omitempty"`
	}
)

// cpuPeriod is the CFS period the CPU quota is set in: cores × cpuPeriod of CPU time
// every cpuPeriod.
const cpuPeriod = 100_000 // µs

// deniedSyscalls are refused with EPERM: a job that computes needs none of them, and
// each is a way to reach the kernel's less exercised corners, other processes, or
// namespaces and mounts (capabilities are dropped too; this is a second wall).
var deniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
	"fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl",
	"kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr",
	"move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
	"perf_event_open", "personality", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
	"query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns", "settimeofday", "stime",
	"swapoff", "swapon", "syslog", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup",
	"vm86", "vm86old",
}

// runConfig is the container's configuration: the image's command and environment
// with the order's arguments, on the image's root file system read-only, in new
// namespaces (no network but a loopback of its own), with /proc, a minimal /dev and a
// size-limited /tmp, no capabilities, no new privileges, the seccomp filter above, and
// the lease's CPU quota and a pids limit on its cgroup (memory is limited on the
// parent cgroup, see cgroup.go).
func runConfig(im *Image, s Spec, cgroupsPath string) (rtSpec, error) {
	args := append(append([]string{}, im.Config.Entrypoint...), im.Config.Cmd...)
	if len(s.Args) > 0 {
		args = append(append([]string{}, im.Config.Entrypoint...), s.Args...)
	}
	if len(args) == 0 {
		return rtSpec{}, errors.New("oci: the image names no command (no Entrypoint or Cmd) and the order gives no arguments")
	}
	uid, gid, err := jobUser(im)
	if err != nil {
		return rtSpec{}, err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "TMPDIR=/tmp"}
	env = append(env, im.Config.Env...)
	cwd := im.Config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if !strings.HasPrefix(cwd, "/") {
		return rtSpec{}, fmt.Errorf("oci: image working directory %q is not absolute", cwd)
	}
	rl := []rtLimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}, {Type: "RLIMIT_CORE", Hard: 0, Soft: 0}}
	if s.CPULimit > 0 {
		// Per process: the kernel sends SIGXCPU at the soft limit and SIGKILL a second
		// later. The cgroup's CPU time is what is metered and what stops a job of many
		// processes (Process.watch).
		sec := uint64(math.Ceil(s.CPULimit.Seconds()))
		rl = append(rl, rtLimit{Type: "RLIMIT_CPU", Soft: sec, Hard: sec + 1})
	}
	tmp := s.TmpSize
	if tmp <= 0 {
		tmp = DefaultTmpSize
	}
	pids := s.Pids
	if pids <= 0 {
		pids = DefaultPids
	}
	eperm := uint(1)
	return rtSpec{
		Version:  "1.0.2",
		Hostname: "job",
		Root:     rtRoot{Path: im.Rootfs, Readonly: true},
		Process: rtProcess{
			User: rtUser{UID: uid, GID: gid}, Args: args, Env: env, Cwd: cwd,
			Capabilities:    rtCaps{Bounding: []string{}, Effective: []string{}, Inheritable: []string{}, Permitted: []string{}, Ambient: []string{}},
			Rlimits:         rl,
			NoNewPrivileges: true,
		},
		Mounts: []rtMount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.FormatInt(tmp, 10)}},
		},
		Linux: rtLinux{
			Namespaces:  []rtNamespace{{Type: "pid"}, {Type: "network"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
			CgroupsPath: cgroupsPath,
			Resources: rtResources{
				Devices: []rtDevice{{Allow: false, Access: "rwm"}},
				CPU:     rtCPU{Quota: int64(s.Cores) * cpuPeriod, Period: cpuPeriod},
				Pids:    rtPids{Limit: int64(pids)},
			},
			Seccomp: &rtSeccomp{DefaultAction: "SCMP_ACT_ALLOW",
				Syscalls: []rtSyscallGroup{{Names: deniedSyscalls, Action: "SCMP_ACT_ERRNO", ErrnoRet: &eperm}}},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
				"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}, nil
}

// nobody is the user a job runs as when its image names none, or names root.
const nobody = 65534

// jobUser is the user the job runs as: the image's, when it names a non-root one by
// number ("uid" or "uid:gid"), else nobody. A user named by name would need the
// image's /etc/passwd, which a job's image is not trusted to have right; such an
// image is refused rather than run as root.
func jobUser(im *Image) (uid, gid uint32, err error) {
	u := im.Config.User
	if u == "" || u == "0" || u == "root" || u == "0:0" || u == "root:root" {
		return nobody, nobody, nil
	}
	us, gs, hasGroup := strings.Cut(u, ":")
	n, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("oci: image user %q: give a numeric uid[:gid]", u)
	}
	g := n
	if hasGroup {
		if g, err = strconv.ParseUint(gs, 10, 32); err != nil {
			return 0, 0, fmt.Errorf("oci: image user %q: give a numeric uid[:gid]", u)
		}
	}
	if n == 0 || g == 0 {
		return nobody, nobody, nil
	}
	return uint32(n), uint32(g), nil
}
