//go:build race

package sockio

import "syscall"

// Under the race detector the ordinary calls are kept: syscall.Read and
// syscall.Write tell the detector of the happens-before edge through the
// socket and of the kernel's write into p, which a raw call skips (it
// would report false races between the two ends of a connection in one
// process, and miss real ones on reused read buffers). The CPU a raw
// call saves does not matter in a race build.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return result(n, err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return result(n, err)
}

func result(n int, err error) (int, syscall.Errno) {
	if err == nil {
		return n, 0
	}
	if errno, ok := err.(syscall.Errno); ok {
		return 0, errno
	}
	return 0, syscall.EIO
}
