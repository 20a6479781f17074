"""What every chip backend (target) builds on: the target contract and registry, the per-chip
hw_configs data, explicit integer formats, and fit reports. Targets import from here; this
package imports no target."""
