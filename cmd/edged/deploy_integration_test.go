package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSystemctl is the service manager of the deploy test's "Pi": the
// one service of systemd/edged.service (EnvironmentFile, ExecStartPre
// validate --strict, ExecStart run) as a real edged process. There is no
// systemd here to run it; everything else on the Pi side is real. The
// file etc/edged/execstart, if there, names another binary to run, as a
// unit whose ExecStart was changed would.
const fakeSystemctl = `#!/bin/sh
root=ROOT
pidf=$root/run/edged.pid log=$root/var/log/edged.log
exe=$root/usr/bin/edged
[ -f "$root/etc/edged/execstart" ] && exe=$(cat "$root/etc/edged/execstart")
alive() {
	[ -f "$pidf" ] || return 1
	st=$(cut -d' ' -f3 "/proc/$(cat "$pidf")/stat" 2>/dev/null) || return 1
	[ "$st" != Z ]
}
stop() {
	if alive; then
		pid=$(cat "$pidf")
		kill -TERM "$pid"
		i=0
		while alive && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidf"
}
start() {
	(
		set -a; . "$root/etc/edged/env"; set +a
		"$exe" validate --strict -c "$root/etc/edged/edged.yaml" >>"$log" 2>&1 || exit 0
		setsid "$exe" run -c "$root/etc/edged/edged.yaml" </dev/null >>"$log" 2>&1 &
		echo $! >"$pidf"
	)
}
cmd=$1
shift
case $cmd in
start) start ;;
stop) stop ;;
restart) stop; start ;;
is-active) alive ;;
show) if alive; then cat "$pidf"; else echo 0; fi ;;
status) tail -n 20 "$log" ;;
*) echo "fake systemctl: $cmd?" >&2; exit 1 ;;
esac
`

// sshHost is an sshd in a network namespace of its own, for root with a
// key made for the test.
type sshHost struct {
	ns       string // ip netns name
	ssh, scp string // commands with the options that reach it (no timeouts: deploy.sh adds them)
	sshd     *os.Process
}

// startSSHD starts /usr/sbin/sshd in a new network namespace (its own
// loopback, so port 22 is free) and returns how to reach it from inside
// that namespace. Both end with the test.
func startSSHD(t *testing.T) *sshHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace and an sshd that logs in as root")
	}
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		requireTool(t, "sshd", "EDGED_REQUIRE_SSHD")
	}
	for _, tool := range []string{"ssh", "scp", "ssh-keygen", "ip", "curl"} {
		requireTool(t, tool, "EDGED_REQUIRE_SSHD")
	}
	dir := t.TempDir()
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_key"))
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "client_key"))
	pub, err := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1:22
HostKey %[1]s/host_key
AuthorizedKeysFile %[1]s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile %[1]s/sshd.pid
Subsystem sftp internal-sftp
LogLevel ERROR
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd's privilege separation directory (the package makes it at boot).
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("edged-deploy-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	run(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

	logs := &syncBuffer{}
	cmd := exec.Command("ip", "netns", "exec", ns, sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})
	opts := fmt.Sprintf("-i %s/client_key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR", dir)
	h := &sshHost{ns: ns, ssh: "ssh " + opts, scp: "scp " + opts, sshd: cmd.Process}
	// Up when a login works (bounded: 100 tries, 10 s).
	for i := 0; ; i++ {
		err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", h.ssh+" -o ConnectTimeout=5 root@127.0.0.1 true").Run()
		if err == nil {
			return h
		}
		select {
		case <-done:
			t.Fatalf("sshd exited:\n%s", logs.String())
		default:
		}
		if i == 100 {
			t.Fatalf("no ssh login to the test sshd: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inNS runs a command in the namespace and returns its output and exit code.
func (h *sshHost) inNS(t *testing.T, env []string, dir string, name string, args ...string) (string, int) {
	t.Helper()
	out, code, err := h.run(5*time.Minute, env, dir, name, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	return out, code
}

// run runs a command in the namespace, in a process group of its own
// that is killed (by the group's id, the PID we started) after within,
// and returns its output and exit code; err is for anything but an exit
// code. It may be called from any goroutine.
func (h *sshHost) run(within time.Duration, env []string, dir string, name string, args ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), -1, fmt.Errorf("still running after %v: killed", within)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestDeployIntegration runs systemd/deploy.sh (and `make deploy`) over a
// real sshd, against a "Pi" that is a scratch root where real edged
// binaries run as the service. In turn: a file that is no binary for the
// Pi, and a config the new binary refuses, are rejected before the swap
// (installed binary, running process and BIN.prev untouched); a good build
// becomes ready and runs with the old binary kept as BIN.prev; a build
// that starts but never becomes ready (the failpoint build with the air
// sensor's schedule stuck: /readyz 503 for ever) is rolled back and the
// previous binary runs again, while a second deploy to the same Pi is
// refused by the Pi's deploy lock; a build that is ready and then
// crashes (EDGED_CRASH_AFTER) is rolled back; a broken installed binary
// (not ready) never becomes BIN.prev, through two failed deploys in a
// row; a service that runs another path than BIN is not called deployed;
// and a Pi whose sshd does not answer fails the deploy in seconds.
func TestDeployIntegration(t *testing.T) {
	old := edgedBinary(t)
	stuck := failpointBinary(t)
	h := startSSHD(t)

	// The Pi: the sim example as its config, the old binary running.
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "etc/edged", "run", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath, _, _, httpAddr := simConfig(t)
	conf := filepath.Join(root, "etc/edged/edged.yaml")
	copyFile(t, cfgPath, conf)
	// The stall reaches only the failpoint build; release builds lack the code.
	if err := os.WriteFile(filepath.Join(root, "etc/edged/env"), []byte("EDGED_STALL=sensor/air@0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	systemctl := filepath.Join(root, "usr/bin/systemctl")
	if err := os.WriteFile(systemctl, []byte(strings.Replace(fakeSystemctl, "root=ROOT", "root="+root, 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "usr/bin/edged")
	copyFile(t, old, bin)
	pidOf := func() int {
		b, _ := os.ReadFile(filepath.Join(root, "run/edged.pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "exec", h.ns, systemctl, "stop").Run()
		if pid := pidOf(); pid > 0 {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(root, "var/log/edged.log"))
			t.Logf("the Pi's edged log:\n%s", b)
		}
	})
	if out, code := h.inNS(t, nil, "", systemctl, "start"); code != 0 {
		t.Fatalf("start: exit %d\n%s", code, out)
	}

	env := []string{
		"SSH=" + h.ssh, "SCP=" + h.scp,
		"DEPLOY_BIN=" + bin, "DEPLOY_CONFIG=" + conf,
		"DEPLOY_ENV_FILE=" + filepath.Join(root, "etc/edged/env"),
		"DEPLOY_SYSTEMCTL=" + systemctl,
		"DEPLOY_READY_URL=http://" + httpAddr + "/readyz",
		"DEPLOY_TIMEOUT=30",
		"DEPLOY_SETTLE=2",
		"DEPLOY_LOCK=" + filepath.Join(root, "run/edged-deploy.lock"),
	}
	deploy := func(binary string, extra ...string) (string, int) {
		return h.inNS(t, append(env, extra...), repoRoot, "sh", "systemd/deploy.sh", "root@127.0.0.1", binary)
	}
	// running is the binary the service's process runs (its /proc exe,
	// which stays readable after a rename replaced the file).
	running := func() [32]byte { return sha(t, fmt.Sprintf("/proc/%d/exe", pidOf())) }
	ready := func() bool {
		_, code := h.inNS(t, nil, "", "curl", "-fsS", "-m", "2", "-o", "/dev/null", "http://"+httpAddr+"/readyz")
		return code == 0
	}
	for i := 0; !ready(); i++ {
		if i == 300 {
			t.Fatal("the old edged never became ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	oldSum := sha(t, bin)
	prev := bin + ".prev"

	unchanged := func(what string, pid int) {
		t.Helper()
		if sha(t, bin) != oldSum || running() != oldSum || pidOf() != pid {
			t.Errorf("%s: the installed or running binary changed", what)
		}
		if _, err := os.Stat(prev); err == nil {
			t.Errorf("%s: %s exists", what, prev)
		}
		if left, _ := filepath.Glob("/tmp/edged-deploy.*"); len(left) > 0 {
			t.Errorf("%s: temp files left on the Pi: %v", what, left)
		}
	}

	t.Run("not a binary for the Pi", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "edged")
		if err := os.WriteFile(junk, []byte("\x7fELF but not really\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		pid := pidOf()
		out, code := deploy(junk)
		if code != 3 || !strings.Contains(out, "rejected: the new binary does not run here or refuses") {
			t.Fatalf("exit %d, want 3 (rejected):\n%s", code, out)
		}
		unchanged("junk binary", pid)
	})

	t.Run("config the new binary refuses", func(t *testing.T) {
		good, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, append(append([]byte{}, good...), "\nno_such_key: 1\n"...), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(conf, good, 0o644)
		// The secrets file is read as systemd reads it, literally: a
		// value with & or ; runs nothing (it was sourced as shell, as root).
		envFile := filepath.Join(root, "etc/edged/env")
		envWas, err := os.ReadFile(envFile)
		if err != nil {
			t.Fatal(err)
		}
		pwned := filepath.Join(root, "pwned")
		if err := os.WriteFile(envFile, append(append([]byte{}, envWas...), "EDGED_SECRET=a&b;touch "+pwned+"\n"...), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(envFile, envWas, 0o600)
		pid := pidOf()
		out, code := deploy(old)
		if code != 3 || !strings.Contains(out, "no_such_key") || !strings.Contains(out, "rejected") {
			t.Fatalf("exit %d, want 3 naming the unknown key:\n%s", code, out)
		}
		if _, err := os.Stat(pwned); err == nil {
			t.Errorf("a ; in the secrets file ran a command on the Pi")
		}
		unchanged("refused config", pid)
	})

	// make deploy builds the new binary (version: git describe) and runs
	// the script.
	var newSum [32]byte
	t.Run("good deploy becomes ready", func(t *testing.T) {
		buildDir := t.TempDir()
		pid := pidOf()
		out, code := h.inNS(t, env, repoRoot, "make", "--no-print-directory", "deploy", "HOST=root@127.0.0.1", "ARCH=amd64", "BIN="+buildDir, "DEPLOY_TIMEOUT=30")
		if code != 0 || !strings.Contains(out, "deploy: ready: edged runs the new binary") {
			t.Fatalf("make deploy: exit %d:\n%s", code, out)
		}
		if !strings.Contains(out, "kept "+bin+" as "+prev+": the running service is ready on it") {
			t.Errorf("the deploy does not say it kept the proven binary:\n%s", out)
		}
		newSum = sha(t, filepath.Join(buildDir, "edged-linux-amd64"))
		if sha(t, bin) != newSum || running() != newSum || pidOf() == pid {
			t.Error("the new binary is not the one installed and running")
		}
		if sha(t, prev) != oldSum {
			t.Errorf("%s is not the previous binary", prev)
		}
		if !ready() {
			t.Error("not ready after a deploy that said so")
		}
		if v := run(t, bin, "version"); strings.HasPrefix(v, "edged dev ") {
			t.Errorf("installed edged version %q: not the Makefile's build", v)
		}
	})

	// rolledBack checks that the service runs want from bin again, the
	// proven binary that BIN.prev still holds, and is ready.
	rolledBack := func(t *testing.T, pid int, want [32]byte) {
		t.Helper()
		if sha(t, bin) != want || running() != want || pidOf() == pid {
			t.Error("after the rollback the previous binary is not the one installed and running")
		}
		if sha(t, prev) != want {
			t.Errorf("%s is not the proven binary that ran before", prev)
		}
		if !ready() {
			t.Error("not ready after the rollback")
		}
	}
	lock := filepath.Join(root, "run/edged-deploy.lock")

	t.Run("never ready is rolled back; a second deploy meanwhile is refused", func(t *testing.T) {
		if newSum == ([32]byte{}) {
			t.Skip("needs the good deploy")
		}
		pid := pidOf()
		var out string
		var code int
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			out, code, err = h.run(5*time.Minute, append(env, "DEPLOY_TIMEOUT=10"), repoRoot, "sh", "systemd/deploy.sh", "root@127.0.0.1", stuck)
		}()
		// The second deploy comes once the first holds the Pi's lock,
		// seen in /proc/locks: a probe with flock -n would take the lock
		// itself for an instant, and a first deploy trying it then
		// fails at once as busy (exit 6; seen in CI at 023d853, and
		// likely the "never took the lock" of 580589e). The first copies
		// the binary over ssh before it locks: bounded at 2 minutes, and
		// a first deploy that ends without the lock fails with its output.
		for i := 0; !flocked(lock); i++ {
			select {
			case <-done:
				t.Fatalf("the first deploy ended (exit %d, %v) before it took the lock:\n%s", code, err, out)
			default:
			}
			if i == 1200 {
				t.Fatal("the first deploy did not take the lock within 2 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
		out2, code2 := deploy(old)
		if code2 != 6 || !strings.Contains(out2, "another deploy to this Pi is running") {
			t.Errorf("second deploy: exit %d, want 6 (busy):\n%s", code2, out2)
		}
		<-done
		if err != nil {
			t.Fatal(err)
		}
		if code != 4 || !strings.Contains(out, "not ready within 10s") || !strings.Contains(out, "rolled back: edged runs the previous binary again") {
			t.Fatalf("exit %d, want 4 (rolled back):\n%s", code, out)
		}
		rolledBack(t, pid, newSum)
	})

	t.Run("ready then crashes is rolled back", func(t *testing.T) {
		if newSum == ([32]byte{}) {
			t.Skip("needs the good deploy")
		}
		envFile := filepath.Join(root, "etc/edged/env")
		envWas, err := os.ReadFile(envFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(envFile, []byte("EDGED_CRASH_AFTER=4s\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(envFile, envWas, 0o600)
		pid := pidOf()
		out, code := deploy(stuck, "DEPLOY_SETTLE=15")
		if code != 4 || !strings.Contains(out, "ready, but did not stay up for 15s") || !strings.Contains(out, "rolled back: edged runs the previous binary again") {
			t.Fatalf("exit %d, want 4 (rolled back after the crash):\n%s", code, out)
		}
		rolledBack(t, pid, newSum)
	})

	t.Run("a binary that is not good never becomes prev", func(t *testing.T) {
		if newSum == ([32]byte{}) {
			t.Skip("needs the good deploy")
		}
		// The installed binary does not become ready (as after a deploy
		// whose rollback failed, or one put there by hand); BIN.prev is
		// the proven one.
		proven := sha(t, prev)
		tmp := bin + ".test"
		copyFile(t, stuck, tmp)
		if err := os.Rename(tmp, bin); err != nil {
			t.Fatal(err)
		}
		if out, code := h.inNS(t, nil, "", systemctl, "restart"); code != 0 {
			t.Fatalf("restart: exit %d\n%s", code, out)
		}
		// Two failed deploys in a row: each must roll back to the proven
		// binary, which stays BIN.prev.
		for i, want := range []string{"is not proven good now (http://" + httpAddr + "/readyz does not answer 200): " + prev + " stays the rollback target", "kept " + bin + " as " + prev} {
			pid := pidOf()
			out, code := deploy(stuck, "DEPLOY_TIMEOUT=6")
			if code != 4 || !strings.Contains(out, want) || !strings.Contains(out, "rolled back: edged runs the previous binary again") {
				t.Fatalf("failed deploy %d: exit %d, want 4 (rolled back) and %q:\n%s", i+1, code, want, out)
			}
			rolledBack(t, pid, proven)
		}
	})

	t.Run("the service runs another binary", func(t *testing.T) {
		if newSum == ([32]byte{}) {
			t.Skip("needs the good deploy")
		}
		other := filepath.Join(root, "usr/local/bin/edged")
		if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, old, other)
		execstart := filepath.Join(root, "etc/edged/execstart")
		if err := os.WriteFile(execstart, []byte(other), 0o644); err != nil {
			t.Fatal(err)
		}
		defer func() {
			os.Remove(execstart)
			h.inNS(t, nil, "", systemctl, "restart")
		}()
		if out, code := h.inNS(t, nil, "", systemctl, "restart"); code != 0 {
			t.Fatalf("restart: exit %d\n%s", code, out)
		}
		out, code := deploy(old)
		if code != 4 || !strings.Contains(out, "runs "+other+", not "+bin) {
			t.Fatalf("exit %d, want 4 naming %s:\n%s", code, other, out)
		}
		if sha(t, bin) != sha(t, prev) {
			t.Errorf("%s is not %s after the rollback", bin, prev)
		}
	})

	t.Run("a Pi that does not answer fails fast", func(t *testing.T) {
		// A stopped sshd: the kernel still accepts the TCP connection,
		// nothing answers on it, as on a wedged Pi.
		if err := h.sshd.Signal(syscall.SIGSTOP); err != nil { // by PID: the sshd we started
			t.Fatal(err)
		}
		defer h.sshd.Signal(syscall.SIGCONT)
		out, code, err := h.run(60*time.Second, append(env, "DEPLOY_CONNECT_TIMEOUT=2"), repoRoot, "sh", "systemd/deploy.sh", "root@127.0.0.1", old)
		if err != nil || code != 1 || !strings.Contains(out, "cannot reach root@127.0.0.1 over ssh") {
			t.Fatalf("exit %d (%v), want 1 (cannot reach) within the hang guard:\n%s", code, err, out)
		}
	})
}

// flocked reports whether a process holds a flock on path, from
// /proc/locks (whose sixth field is MAJOR:MINOR:INODE), without taking
// it.
func flocked(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return false
	}
	suffix := ":" + strconv.FormatUint(st.Ino, 10)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && strings.HasSuffix(f[5], suffix) {
			return true
		}
	}
	return false
}
