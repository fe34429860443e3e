package pihost

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"periph.io/x/conn/v3/driver/driverreg"
)

// TestInitRegistersGenericDrivers checks that Init runs the drivers that
// work on any Linux machine: on this one, which has no GPIO chip and may
// have no I2C bus, each is loaded or skipped, never missing.
func TestInitRegistersGenericDrivers(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	st, _ := driverreg.Init()
	var names []string
	for _, d := range st.Loaded {
		names = append(names, d.String())
	}
	for _, f := range append(st.Skipped, st.Failed...) {
		names = append(names, f.D.String())
	}
	for _, want := range []string{"ioctl-gpio", "sysfs-i2c"} {
		if !slices.Contains(names, want) {
			t.Errorf("driver %s not registered; registered: %q", want, names)
		}
	}
}

// TestPiBuildLinksOnlyPiBoards lists the packages of the ARMv7 edged: the
// Pi's (bcm283x, rpi) are in, the boards periph's host.Init would add are
// not (a driver that calls host.Init again brings them back).
func TestPiBuildLinksOnlyPiBoards(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	cmd := exec.Command("go", "list", "-deps", "github.com/edged/edged/cmd/edged")
	cmd.Env = append(cmd.Environ(), "GOOS=linux", "GOARCH=arm", "GOARM=7", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, want := range []string{"periph.io/x/host/v3/bcm283x", "periph.io/x/host/v3/rpi", "periph.io/x/host/v3/gpioioctl"} {
		if !slices.Contains(deps, want) {
			t.Errorf("the ARMv7 build lacks %s", want)
		}
	}
	for _, unwanted := range []string{"periph.io/x/host/v3", "periph.io/x/host/v3/allwinner", "periph.io/x/host/v3/beagle/bone", "periph.io/x/host/v3/chip", "periph.io/x/host/v3/pine64", "periph.io/x/host/v3/odroidc1"} {
		if slices.Contains(deps, unwanted) {
			t.Errorf("the ARMv7 build links %s (256 KiB of boards edged does not run on)", unwanted)
		}
	}
}
