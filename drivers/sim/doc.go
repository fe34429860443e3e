// Package sim simulates the greenhouse hardware so the whole product (the
// Poller, the control loops, the broker and the uplink) runs on any
// machine: a light sensor that follows a day curve, a thermal plant with a
// climate sensor in it, and on/off and proportional heaters that warm it.
// Faults (errors, a stuck value, slow reads) can be injected to exercise
// the fail-safe paths.
//
// Everything runs on the injected sensors.Clock and seeded generators, so
// tests are exact and never sleep. Devices share a plant by name through a
// Sharer (drivers.Env); the package does no I/O and must not import
// drivers.
package sim
