package cli

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// unitHardening are the settings every unit in packaging/systemd must carry.
var unitHardening = []string{
	"NoNewPrivileges=yes", "CapabilityBoundingSet=", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
	"PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectControlGroups=yes",
	"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces=yes", "RestrictSUIDSGID=yes",
	"LockPersonality=yes", "MemoryDenyWriteExecute=yes", "SystemCallArchitectures=native",
	"SystemCallFilter=@system-service", "DynamicUser=yes", "UMask=0077",
}

// TestSystemdUnits reads the units in packaging/systemd: each runs a hashgrid
// command with flags that command has, carries the hardening settings, and, where
// systemd-analyze is installed, passes systemd-analyze verify without a warning
// (against a binary built from this tree).
func TestSystemdUnits(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	units, err := filepath.Glob(filepath.Join(root, "packaging", "systemd", "*.service"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"hashgrid-pool.service": false, "hashgrid-market.service": false, "hashgrid-power.service": false,
		"hashgrid-frontend.service": false, "hashgrid-accounting.service": false}
	for _, u := range units {
		if _, ok := want[filepath.Base(u)]; ok {
			want[filepath.Base(u)] = true
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("packaging/systemd/%s is missing", name)
		}
	}
	for _, u := range units {
		keys := unitKeys(t, u)
		for _, h := range unitHardening {
			if !keys[h] {
				t.Errorf("%s: no %s", filepath.Base(u), h)
			}
		}
		var exec string
		for k := range keys {
			if v, ok := strings.CutPrefix(k, "ExecStart="); ok {
				exec = v
			}
		}
		args := strings.Fields(exec)
		if len(args) < 2 || args[0] != "/usr/local/bin/hashgrid" {
			t.Errorf("%s: ExecStart=%s does not run /usr/local/bin/hashgrid", filepath.Base(u), exec)
			continue
		}
		// The command is the words before the first flag.
		var cmd, flags []string
		for _, a := range args[1:] {
			if strings.HasPrefix(a, "-") || len(flags) > 0 {
				flags = append(flags, a)
			} else {
				cmd = append(cmd, a)
			}
		}
		checkUnitRole(t, filepath.Base(u), flags)
		_, _, usage := runMain(t, os.Getenv, append(cmd, "-h")...)
		for _, f := range flags {
			name, ok := strings.CutPrefix(f, "--")
			if !ok {
				continue // a flag's value
			}
			name, _, _ = strings.Cut(name, "=")
			if !strings.Contains(usage, "\n  -"+name+" ") && !strings.Contains(usage, "\n  -"+name+"\n") {
				t.Errorf("%s: hashgrid %s has no flag --%s", filepath.Base(u), strings.Join(cmd, " "), name)
			}
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: units checked by the rules above only")
		return
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "hashgrid")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/hashgrid")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var copies []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		c := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(c, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/hashgrid", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, copies...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// unitRoles are the pool roles (--role) of the cluster's units (docs/guides/cluster.md).
var unitRoles = map[string]string{
	"hashgrid-frontend.service":   RoleFrontEnd,
	"hashgrid-accounting.service": RoleAccounting,
}

// unitSecretFlags are flags whose value is a secret: a unit passes the secret's file
// (a systemd credential) instead, because a process listing shows the command line.
var unitSecretFlags = []string{"--postgres", "--admin-token", "--token"}

// checkUnitRole checks that a cluster unit runs its role, and that no unit gives a
// secret on its command line.
func checkUnitRole(t *testing.T, unit string, flags []string) {
	t.Helper()
	role := RoleAll
	for i, f := range flags {
		name, value, hasValue := strings.Cut(f, "=")
		if name == "--role" {
			if !hasValue && i+1 < len(flags) {
				value = flags[i+1]
			}
			role = value
		}
		for _, s := range unitSecretFlags {
			if name == s {
				t.Errorf("%s: %s gives a secret on the command line; give its file (%s-file) as a credential", unit, s, s)
			}
		}
	}
	if want, ok := unitRoles[unit]; ok && role != want {
		t.Errorf("%s: runs --role %s, want --role %s", unit, role, want)
	}
}

// unitKeys returns a unit file's KEY=VALUE lines, comments left out.
func unitKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		keys[l] = true
	}
	return keys
}
