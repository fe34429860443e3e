package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of systemd/edged.service: systemd-analyze's verdict on it,
// and the sandbox it sets up, as far as this machine can build it without
// systemd as PID 1 (systemd-run needs one): the /proc mount options of
// ProtectProc=/ProcSubset= and the system calls SystemCallFilter= allows.

const unitPath = "../../systemd/edged.service"

// maxExposure is issue 13's bound for systemd-analyze security.
const maxExposure = 2.5

// unitSettings returns the values of each key of the unit, in order.
func unitSettings(t *testing.T) (text string, keys map[string][]string) {
	t.Helper()
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	keys = map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	return string(data), keys
}

// TestUnitVerifyAndExposureIntegration runs `systemd-analyze verify` on the
// unit, with the binary and config paths pointed at a built edged and a
// real config so that they resolve, and requires no complaint (an unknown
// or misspelt key is only a warning to systemd); then it requires
// `systemd-analyze security --offline=true` to rate it maxExposure or
// lower.
func TestUnitVerifyAndExposureIntegration(t *testing.T) {
	bin := edgedBinary(t)
	analyze := requireTool(t, "systemd-analyze", "EDGED_REQUIRE_SYSTEMD")
	text, _ := unitSettings(t)
	cfg, _, _, _ := simConfig(t)
	for _, s := range []string{"/usr/bin/edged", "/etc/edged/edged.yaml"} {
		if !strings.Contains(text, s) {
			t.Fatalf("the unit no longer names %s; update the test", s)
		}
	}
	unit := filepath.Join(t.TempDir(), "edged.service")
	text = strings.ReplaceAll(strings.ReplaceAll(text, "/usr/bin/edged", bin), "/etc/edged/edged.yaml", cfg)
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for edged\.service: (\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in systemd-analyze security's output:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure %.1f", score)
	if score > maxExposure {
		t.Errorf("exposure %.1f, want <= %.1f:\n%s", score, maxExposure, out)
	}
}

// unitFilters are the unit's SystemCallFilter= lines and the filter
// ProtectClock=yes adds (systemd denies the @clock group with it, the
// read-only adjtimex that judges the clock included).
func unitFilters(keys map[string][]string) []string {
	f := keys["SystemCallFilter"]
	if v := keys["ProtectClock"]; len(v) > 0 && v[len(v)-1] == "yes" {
		f = append(slices.Clone(f), "~@clock")
	}
	return f
}

// syscallSet expands the unit's SystemCallFilter= lines the way systemd
// does (an allow list, then ~ lines that take groups away) with
// `systemd-analyze syscall-filter`, which knows the groups of this
// systemd version.
func syscallSet(t *testing.T, analyze string, filters []string) map[string]bool {
	t.Helper()
	if len(filters) == 0 || strings.HasPrefix(filters[0], "~") {
		t.Fatalf("SystemCallFilter= %q: the test expects an allow list first", filters)
	}
	var expand func(group string, seen map[string]bool) []string
	expand = func(group string, seen map[string]bool) []string {
		if seen[group] {
			return nil
		}
		seen[group] = true
		out, err := exec.Command(analyze, "syscall-filter", "--no-pager", group).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", group, err)
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n")[1:] {
			l = strings.TrimSpace(l)
			switch {
			case l == "" || strings.HasPrefix(l, "#"):
			case strings.HasPrefix(l, "@"):
				names = append(names, expand(l, seen)...)
			default:
				names = append(names, l)
			}
		}
		return names
	}
	allowed := map[string]bool{}
	for _, f := range filters {
		deny := strings.HasPrefix(f, "~")
		for _, item := range strings.Fields(strings.TrimPrefix(f, "~")) {
			names := []string{item}
			if strings.HasPrefix(item, "@") {
				names = expand(item, map[string]bool{})
			}
			for _, n := range names {
				allowed[n] = !deny
			}
		}
	}
	return allowed
}

// TestUnitSandboxIntegration runs `edged run` under strace in a mount
// namespace whose /proc has the unit's ProtectProc=/ProcSubset= options,
// with an uplink (its buffer writes and fsyncs) to a cloud that refuses
// connections, serves /healthz and /metrics (the process collector reads
// /proc/self) and a LAN MQTT client, stops it with SIGTERM, and requires
// a clean stop, every system call edged made to be one the unit's
// SystemCallFilter= allows (a call outside it would fail with EPERM under
// systemd), and every socket's family one RestrictAddressFamilies= allows. It runs as root (the mount namespace); strace and unshare come
// from Debian's strace and util-linux. The same check for the ARMv7
// build, under qemu-arm-static's -strace, is TestUnitSyscallsARMIntegration.
// Not built here: User=, DeviceAllow=, ProtectSystem= and the rest that
// need systemd itself.
func TestUnitSandboxIntegration(t *testing.T) {
	bin := edgedBinary(t)
	analyze := requireTool(t, "systemd-analyze", "EDGED_REQUIRE_SYSTEMD")
	strace := requireTool(t, "strace", "EDGED_REQUIRE_STRACE")
	unshare := requireTool(t, "unshare", "EDGED_REQUIRE_STRACE")
	if os.Geteuid() != 0 {
		if os.Getenv("EDGED_REQUIRE_STRACE") == "1" {
			t.Fatal("EDGED_REQUIRE_STRACE=1 but not root: the test mounts a /proc in a mount namespace")
		}
		t.Skip("not root: the test mounts a /proc in a mount namespace")
	}
	_, keys := unitSettings(t)
	allowed := syscallSet(t, analyze, unitFilters(keys))
	procOpts := []string{}
	if v := keys["ProtectProc"]; len(v) > 0 && v[len(v)-1] != "default" {
		procOpts = append(procOpts, "hidepid="+v[len(v)-1])
	}
	if v := keys["ProcSubset"]; len(v) > 0 && v[len(v)-1] == "pid" {
		procOpts = append(procOpts, "subset=pid")
	}
	dir := t.TempDir()
	trace := filepath.Join(dir, "strace.txt")
	// strace -D: the tracer is a detached grandchild and edged keeps the
	// process the test started, so the test signals edged itself.
	wrapper := filepath.Join(dir, "sandboxed-edged")
	mount := "mount -t proc proc /proc"
	if len(procOpts) > 0 {
		mount = "mount -t proc -o " + strings.Join(procOpts, ",") + " proc /proc"
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s --mount --propagation private sh -c '%s && exec %s -D -f -q -o %s %s \"$@\"' sh \"$@\"\n",
		unshare, mount, strace, trace, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cloud := freePort(t)
	var httpAddr, mqttAddr string
	d := startReady(t, wrapper, func() (string, []string) {
		cfg, m, ws, h := simConfig(t)
		editFile(t, cfg, fastSim(uplinkYAML(cloud, "")))
		httpAddr, mqttAddr = h, m
		return cfg, []string{m, ws, h}
	})
	for _, path := range []string{"/healthz", "/metrics"} {
		if code, body := getBody(t, httpAddr, path); code != 200 {
			t.Errorf("GET %s in the sandbox: %d %s", path, code, body)
		}
	}
	if code, body := getBody(t, httpAddr, "/metrics"); !strings.Contains(body, "process_resident_memory_bytes") {
		t.Errorf("/metrics in the sandbox (%d) has no process_resident_memory_bytes: /proc/self unreadable?", code)
	}
	exerciseAndStop(t, d, mqttAddr)
	checkCalls(t, tracedCalls(t, trace, bin), allowed, unitFilters(keys))
	// RestrictAddressFamilies=: every socket edged opened is of a family
	// the unit allows (socket() fails with EAFNOSUPPORT otherwise).
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	families := callNames(string(data), regexp.MustCompile(`(?m)^\d+ +socket\((AF_[A-Z0-9]+)`))
	if len(families) == 0 {
		t.Fatal("no socket() in the trace")
	}
	var allowedFamilies []string
	for _, v := range keys["RestrictAddressFamilies"] {
		allowedFamilies = append(allowedFamilies, strings.Fields(v)...)
	}
	for _, f := range families {
		if !slices.Contains(allowedFamilies, f) {
			t.Errorf("edged opened an %s socket; the unit's RestrictAddressFamilies=%q refuses it", f, allowedFamilies)
		}
	}
}

// TestUnitSyscallsARMIntegration is TestUnitSandboxIntegration's system
// call check for the Pi 2 build, traced by qemu-arm-static -strace (the
// ARM calls: mmap2, fstat64 and the like, not the host's): what edged
// asks of the Pi's kernel.
func TestUnitSyscallsARMIntegration(t *testing.T) {
	bin := armv7Binary(t) // skipped under -short
	analyze := requireTool(t, "systemd-analyze", "EDGED_REQUIRE_SYSTEMD")
	qemu := requireTool(t, "qemu-arm-static", "EDGED_REQUIRE_QEMU")
	_, keys := unitSettings(t)
	allowed := syscallSet(t, analyze, unitFilters(keys))
	wrapper := filepath.Join(t.TempDir(), "traced-edged")
	if err := os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %s -strace %s \"$@\"\n", qemu, bin)), 0o755); err != nil {
		t.Fatal(err)
	}
	cloud := freePort(t)
	var httpAddr, mqttAddr string
	d := startReady(t, wrapper, func() (string, []string) {
		cfg, m, ws, h := simConfig(t)
		editFile(t, cfg, fastSim(uplinkYAML(cloud, "")))
		httpAddr, mqttAddr = h, m
		return cfg, []string{m, ws, h}
	})
	if code, body := getBody(t, httpAddr, "/metrics"); code != 200 {
		t.Errorf("GET /metrics: %d %s", code, body)
	}
	exerciseAndStop(t, d, mqttAddr)
	// qemu writes the trace to stderr, between edged's own lines.
	checkCalls(t, callNames(d.logs.String(), regexp.MustCompile(`(?m)^\d+ ([a-z0-9_]+)\(`)), allowed, unitFilters(keys))
}

// exerciseAndStop waits for a reading over MQTT, then stops edged with
// SIGTERM and requires a clean stop.
func exerciseAndStop(t *testing.T, d *daemonProc, mqttAddr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", mqttAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	msgs := mqttClient(t, conn, "edged/sim-01/sensor/#")
	select {
	case <-msgs:
	case <-time.After(20 * time.Second):
		t.Error("no reading over MQTT within 20 s")
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("edged did not stop within 30 s of SIGTERM")
	}
	if d.err != nil {
		t.Errorf("edged exited with %v", d.err)
	}
}

// checkCalls requires every traced system call to be allowed.
func checkCalls(t *testing.T, calls []string, allowed map[string]bool, filters []string) {
	t.Helper()
	if len(calls) < 20 {
		t.Fatalf("only %d distinct system calls traced (%q): the trace is not edged's", len(calls), calls)
	}
	var denied []string
	for _, c := range calls {
		if !allowed[c] {
			denied = append(denied, c)
		}
	}
	t.Logf("%d distinct system calls: %s", len(calls), strings.Join(calls, " "))
	if len(denied) > 0 {
		t.Errorf("edged made system calls the unit's SystemCallFilter=%q does not allow (EPERM under systemd): %s", filters, strings.Join(denied, " "))
	}
}

// tracedCalls waits until strace has written the exit of the process
// that executed bin (the tracer is detached: it may finish after edged),
// and returns the distinct system calls in the trace, sorted.
func tracedCalls(t *testing.T, trace, bin string) []string {
	t.Helper()
	execRe := regexp.MustCompile(`(?m)^(\d+) +execve\("` + regexp.QuoteMeta(bin) + `"`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(trace)
		if m := execRe.FindSubmatch(data); m != nil && regexp.MustCompile(`(?m)^`+string(m[1])+` +\+\+\+ exited with `).Match(data) {
			return callNames(string(data), regexp.MustCompile(`(?m)^\d+ +([a-z0-9_]+)\(`))
		}
		if time.Now().After(deadline) {
			tail := string(data[max(len(data)-2000, 0):])
			t.Fatalf("strace did not record the exit of %s within 10 s (%v); the trace ends:\n%s", bin, err, tail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func callNames(trace string, re *regexp.Regexp) []string {
	set := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(trace, -1) {
		set[m[1]] = true
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
