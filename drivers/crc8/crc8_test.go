package crc8

import "testing"

func TestChecksum(t *testing.T) {
	tests := []struct {
		name string
		init byte
		in   []byte
		want byte
	}{
		{"SHT3x datasheet 4.12, table 20", 0xFF, []byte{0xBE, 0xEF}, 0x92},
		{"SHT3x 0x6666", 0xFF, []byte{0x66, 0x66}, 0x93},
		{"SHT3x 0x9999", 0xFF, []byte{0x99, 0x99}, 0xBE},
		{"Sensirion zeros", 0xFF, []byte{0x00, 0x00}, 0x81},
		{"Sensirion ones", 0xFF, []byte{0xFF, 0xFF}, 0xAC},
		{"Sensirion empty: the initial value", 0xFF, nil, 0xFF},
		{"HTU21D datasheet CRC example", 0x00, []byte{0xDC}, 0x79},
		{"HTU21D temperature example", 0x00, []byte{0x68, 0x3A}, 0x7C},
		{"HTU21D humidity example", 0x00, []byte{0x4E, 0x85}, 0x6B},
		{"HTU21D zeros", 0x00, []byte{0x00, 0x00}, 0x00},
		{"HTU21D empty", 0x00, nil, 0x00},
	}
	for _, tt := range tests {
		if got := Checksum(tt.init, tt.in); got != tt.want {
			t.Errorf("%s: Checksum(%#02x, % x) = %#02x, want %#02x", tt.name, tt.init, tt.in, got, tt.want)
		}
		if tt.init == 0xFF {
			if got := Sensirion(tt.in); got != tt.want {
				t.Errorf("%s: Sensirion(% x) = %#02x, want %#02x", tt.name, tt.in, got, tt.want)
			}
		}
	}
}
