//go:build linux

package i2cbus

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// i2c-dev ioctls and SMBus constants (include/uapi/linux/i2c-dev.h and
// i2c.h), as i2cdetect uses them.
const (
	ioctlSlave   = 0x0703 // I2C_SLAVE: set the address; EBUSY if a kernel driver owns it
	ioctlSMBus   = 0x0720 // I2C_SMBUS
	smbusWrite   = 0      // I2C_SMBUS_WRITE
	smbusQuick   = 0      // I2C_SMBUS_QUICK
	errnoNoError = syscall.Errno(0)
)

// smbusIoctlData is struct i2c_smbus_ioctl_data; Go's alignment gives the
// C layout on both 32- and 64-bit (u8, u8, pad, u32, pointer).
type smbusIoctlData struct {
	readWrite uint8
	command   uint8
	size      uint32
	data      uintptr
}

// quick sends SMBus quick writes through an i2c-dev node.
type quick struct {
	mu sync.Mutex
	f  *os.File
}

func openQuick(path string) (*quick, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &quick{f: f}, nil
}

// write selects addr with I2C_SLAVE (not _FORCE: an address a kernel
// driver owns is reported busy, not probed) and sends a quick write.
func (q *quick) write(addr uint16) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	fd := q.f.Fd()
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlSlave, uintptr(addr)); e != errnoNoError {
		if errors.Is(e, syscall.EBUSY) {
			return fmt.Errorf("%w: %#02x", ErrBusy, addr)
		}
		return fmt.Errorf("i2cbus: select address %#02x: %w", addr, e)
	}
	d := smbusIoctlData{readWrite: smbusWrite, size: smbusQuick}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, ioctlSMBus, uintptr(unsafe.Pointer(&d))); e != errnoNoError {
		return fmt.Errorf("i2cbus: quick write %#02x: %w", addr, e)
	}
	return nil
}

func (q *quick) close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.f.Close()
}
