//! Snapdisk's VMs: each instance that runs is a `qemu-system-x86_64` process whose disks are
//! the instance's Snapdisk disks, opened over the server's NBD unix socket. This crate knows
//! qemu (command line, QMP, console, pid files) and nothing of ECS or of the storage engine;
//! the control plane decides when a VM runs (`control::machines`), the binary wires the two.

pub mod accel;
pub mod qmp;
pub mod runner;

pub use accel::{Accel, Choice};
pub use runner::{Config, DiskSpec, Exit, MachineSpec, Runner, State, VmError};
