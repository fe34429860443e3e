package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repoRoot is the checkout this test runs in (cmd/edged's parent's parent).
const repoRoot = "../.."

// makePackage runs `make package ARCH=amd64` into dir, the way `make dist`
// builds each architecture, and returns the .deb and .tar.gz it made.
func makePackage(t *testing.T, dir string) (deb, tgz string) {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "package", "ARCH=amd64", "DIST="+dir)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "edged_*_amd64.deb"))
	tgzs, _ := filepath.Glob(filepath.Join(dir, "edged-*-linux-amd64.tar.gz"))
	if len(debs) != 1 || len(tgzs) != 1 {
		t.Fatalf("make package made %v and %v, want one .deb and one .tar.gz", debs, tgzs)
	}
	return debs[0], tgzs[0]
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gitOut runs git in the checkout.
func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// TestDebPackageIntegration builds the amd64 package as `make dist` does
// (make test builds one architecture; make dist builds all three) and
// checks it: files and modes from `dpkg-deb -x` into a scratch root, the
// conffile, the maintainer scripts, lintian, the packaged binary's
// `edged version` (commit and the commit's time), and that a second build
// is byte for byte the same.
func TestDebPackageIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	requireTool(t, "make", "EDGED_REQUIRE_LINTIAN")
	requireTool(t, "dpkg-deb", "EDGED_REQUIRE_LINTIAN")
	deb, tgz := makePackage(t, t.TempDir())

	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"usr/bin/edged", 0o755},
		{"lib/systemd/system/edged.service", 0o644},
		{"etc/edged/edged.yaml", 0o644}, // 0640 root:edged from postinst's statoverride
		{"usr/share/doc/edged/copyright", 0o644},
		{"usr/share/doc/edged/examples/sim.yaml", 0o644},
		{"usr/share/doc/edged/examples/pi-greenhouse.yaml", 0o644},
		{"usr/share/lintian/overrides/edged", 0o644},
	} {
		fi, err := os.Lstat(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("package lacks /%s: %v", f.path, err)
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != f.mode {
			t.Errorf("/%s: mode %v, want a file with %v", f.path, fi.Mode(), f.mode)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(root, "etc/edged/edged.yaml"))
	if want, _ := os.ReadFile(filepath.Join(repoRoot, "configs/examples/pi-greenhouse.yaml")); len(want) == 0 || !bytes.Equal(conf, want) {
		t.Error("/etc/edged/edged.yaml is not configs/examples/pi-greenhouse.yaml")
	}
	unit, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system/edged.service"))
	for _, want := range []string{"ExecStart=/usr/bin/edged run -c /etc/edged/edged.yaml\n", "ExecStartPre=/usr/bin/edged validate --strict -c /etc/edged/edged.yaml\n", "User=edged\n", "StateDirectory=edged\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the packaged unit lacks %q", want)
		}
	}

	// The binary: the commit it was built from and that commit's time.
	out := run(t, filepath.Join(root, "usr/bin/edged"), "version")
	sec, _ := strconv.ParseInt(gitOut(t, "log", "-1", "--format=%ct"), 10, 64)
	date := time.Unix(sec, 0).UTC().Format(time.RFC3339)
	if want := "(commit " + gitOut(t, "rev-parse", "HEAD") + ", built " + date + "; "; !strings.Contains(out, want) || !strings.HasSuffix(out, " linux/amd64)\n") {
		t.Errorf("packaged edged version = %q, want it to contain %q", out, want)
	}

	// Control: the conffile and the maintainer scripts.
	ctl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctl)
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(b) != "/etc/edged/edged.yaml\n" {
		t.Errorf("conffiles = %q, want /etc/edged/edged.yaml", b)
	}
	info := run(t, "dpkg-deb", "-f", deb, "Package", "Architecture", "Depends")
	if info != "Package: edged\nArchitecture: amd64\nDepends: adduser\n" {
		t.Errorf("control fields:\n%s", info)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		fi, err := os.Stat(filepath.Join(ctl, s))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("maintainer script %s: %v %v, want mode 0755", s, fi, err)
			continue
		}
		run(t, "sh", "-n", filepath.Join(ctl, s))
	}
	post, _ := os.ReadFile(filepath.Join(ctl, "postinst"))
	for _, line := range strings.Split(string(post), "\n") {
		if code, _, _ := strings.Cut(line, "#"); strings.Contains(code, "enable") || strings.Contains(code, " start") {
			t.Errorf("postinst enables or starts the service (%q); it must only try-restart a running one on upgrade", line)
		}
	}

	// The tarball: the same binary, the unit and the examples.
	list := run(t, "tar", "-tzvf", tgz)
	dirName := strings.TrimSuffix(filepath.Base(tgz), ".tar.gz")
	for _, want := range []string{"-rwxr-xr-x 0/0", dirName + "/edged\n", dirName + "/edged.service\n", dirName + "/pi-greenhouse.yaml\n", dirName + "/README.systemd.md\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("tarball lacks %q:\n%s", want, list)
		}
	}

	if lintian := requireTool(t, "lintian", "EDGED_REQUIRE_LINTIAN"); lintian != "" {
		out, err := exec.Command(lintian, "--fail-on", "error,warning,info,pedantic", "-I", "--pedantic", deb).CombinedOutput()
		if err != nil || strings.Contains(string(out), ": edged") {
			t.Errorf("lintian: %v\n%s", err, out)
		}
	}

	// Reproducible: a second build of the same tree is the same bytes.
	deb2, tgz2 := makePackage(t, t.TempDir())
	for _, p := range [][2]string{{deb, deb2}, {tgz, tgz2}} {
		a, _ := os.ReadFile(p[0])
		b, _ := os.ReadFile(p[1])
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of one tree", filepath.Base(p[0]))
		}
	}
}

// installScript installs, upgrades, removes and purges the package with the
// real dpkg and maintainer scripts, in a private mount namespace whose
// /etc, /usr and /var are overlays on scratch directories: nothing reaches
// the machine. It prints what it finds as key=value lines.
const installScript = `set -eu
deb=$1 scratch=$2
for d in etc usr var; do
	mkdir -p "$scratch/$d.up" "$scratch/$d.work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$scratch/$d.up,workdir=$scratch/$d.work" "/$d"
done
# As on Raspberry Pi OS: a gpio group (i2c left out, as on a box without it).
getent group gpio >/dev/null || addgroup --system gpio >/dev/null
getent group i2c >/dev/null && delgroup --system i2c >/dev/null
dpkg -i "$deb" >/dev/null
echo "user=$(getent passwd edged | cut -d: -f6,7)"
echo "groups=$(id -nG edged)"
echo "conf=$(stat -c '%U:%G %a' /etc/edged/edged.yaml)"
echo "state=$(stat -c '%U:%G %a' /var/lib/edged)"
echo "bin=$(stat -c '%U:%G %a' /usr/bin/edged)"
echo "enabled=$(ls /etc/systemd/system/multi-user.target.wants/edged.service 2>/dev/null || echo no)"
echo "version=$(/usr/bin/edged version | cut -d' ' -f1)"
echo "verify=$(systemd-analyze verify /lib/systemd/system/edged.service 2>&1 && echo ok)"
echo "validate=$(env -u EDGED_CLOUD_PASSWORD /usr/bin/edged validate -c /etc/edged/edged.yaml 2>&1 | grep -c 'warning: password: environment variable EDGED_CLOUD_PASSWORD is not set')"
echo '# edited' >> /etc/edged/edged.yaml
echo sentinel > /var/lib/edged/buffer
dpkg -i "$deb" >/dev/null
echo "upgrade=$(tail -n 1 /etc/edged/edged.yaml) $(cat /var/lib/edged/buffer) $(stat -c '%U:%G %a' /etc/edged/edged.yaml)"
dpkg -r edged >/dev/null
echo "removed=$(ls /usr/bin/edged 2>/dev/null || echo gone) $(tail -n 1 /etc/edged/edged.yaml)"
dpkg -P edged >/dev/null
echo "purged=$(ls /etc/edged/edged.yaml /var/lib/edged 2>/dev/null || echo gone) $(dpkg-statoverride --list /etc/edged/edged.yaml || echo no-override) $(getent passwd edged >/dev/null && echo user-kept)"
`

// TestDebInstallIntegration: the package's maintainer scripts, run by the
// real dpkg (in a throw-away mount namespace, so root only): the system
// user in the gpio group where it exists, the config 0640 root:edged, the
// state directory, no service enabled, the unit passes `systemd-analyze
// verify` (its binary path is the package's); an upgrade keeps the edited config
// and the buffer; remove keeps the conffile; purge removes it and the
// state, and keeps the user.
func TestDebInstallIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: dpkg -i in a private mount namespace")
	}
	requireTool(t, "dpkg", "EDGED_REQUIRE_LINTIAN")
	requireTool(t, "systemd-analyze", "EDGED_REQUIRE_LINTIAN")
	unshare := requireTool(t, "unshare", "EDGED_REQUIRE_LINTIAN")
	deb, _ := makePackage(t, t.TempDir())
	deb, _ = filepath.Abs(deb)
	out, err := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", installScript, "sh", deb, t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("install script: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	for k, want := range map[string]string{
		"user":     "/var/lib/edged:/usr/sbin/nologin",
		"groups":   "edged gpio",
		"conf":     "root:edged 640",
		"state":    "edged:edged 750",
		"bin":      "root:root 755",
		"enabled":  "no",
		"version":  "edged",
		"verify":   "ok",
		"validate": "1",
		"upgrade":  "# edited sentinel root:edged 640",
		"removed":  "gone # edited",
		"purged":   "gone no-override user-kept",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if t.Failed() {
		t.Logf("script output:\n%s", out)
	}
}
