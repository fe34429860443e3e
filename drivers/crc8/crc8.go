// Package crc8 is the CRC-8 that I2C humidity sensors append to their
// data words: polynomial 0x31 (x^8 + x^5 + x^4 + 1), most significant bit
// first, no reflection, no final XOR. Makers differ only in the initial
// value: Sensirion (SHT3x, SHT4x) and Aosong (AHT20) start at 0xFF, TE
// and Silicon Labs (HTU21D, Si7021) at 0x00.
package crc8

// Sensirion is the checksum with initial value 0xFF (SHT3x datasheet
// 4.12): Sensirion([]byte{0xBE, 0xEF}) is 0x92.
func Sensirion(b []byte) byte { return Checksum(0xFF, b) }

// Checksum returns the CRC-8 of b, starting from init.
func Checksum(init byte, b []byte) byte {
	crc := init
	for _, x := range b {
		crc ^= x
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
