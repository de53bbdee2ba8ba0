//! Which accelerator a VM runs under: KVM where it works, TCG (qemu's emulator) otherwise.

use std::path::Path;

/// The operator's choice (`--accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when `/dev/kvm` opens and the host is not itself a virtual machine, else TCG.
    Auto,
    /// Always KVM (qemu fails to start the VM if KVM is unusable).
    Kvm,
    /// Always TCG.
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("accelerator must be auto, kvm or tcg, not {other:?}")),
        }
    }
}

/// The accelerator picked and why, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// `kvm` or `tcg`, as qemu's `-accel` takes it.
    pub accel: &'static str,
    pub reason: String,
}

/// Resolve `wanted` on this host. `auto` chooses TCG on a host that is itself a guest (the
/// `hypervisor` CPU flag): nested KVM there is known to hang guests right after the kernel's
/// decompressor, so it is not trusted without `--accel kvm`.
pub fn choose(wanted: Accel) -> Choice {
    choose_on(wanted, Path::new("/dev/kvm"), &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
}

fn choose_on(wanted: Accel, kvm: &Path, cpuinfo: &str) -> Choice {
    let c = |accel, reason: &str| Choice { accel, reason: reason.to_string() };
    match wanted {
        Accel::Kvm => c("kvm", "--accel kvm"),
        Accel::Tcg => c("tcg", "--accel tcg"),
        Accel::Auto => {
            let usable = std::fs::OpenOptions::new().read(true).write(true).open(kvm).is_ok();
            let nested = cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "hypervisor"));
            match (usable, nested) {
                (false, _) => c("tcg", "auto: /dev/kvm cannot be opened read-write"),
                (true, true) => c(
                    "tcg",
                    "auto: /dev/kvm opens, but this host is itself a virtual machine (CPU flag \
                     'hypervisor') and nested KVM guests hang there; pass --accel kvm to force it",
                ),
                (true, false) => c("kvm", "auto: /dev/kvm opens on a bare-metal host"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn auto_trusts_kvm_only_on_bare_metal() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        std::fs::write(&dev, b"").unwrap();
        let metal = "flags\t\t: fpu vme sse2 vmx\n";
        let guest = "flags\t\t: fpu vme sse2 hypervisor\n";
        assert_eq!(choose_on(Accel::Auto, &dev, metal).accel, "kvm");
        let g = choose_on(Accel::Auto, &dev, guest);
        assert_eq!(g.accel, "tcg");
        assert!(g.reason.contains("hypervisor"));
        assert_eq!(choose_on(Accel::Auto, &dir.path().join("none"), metal).accel, "tcg");
        assert_eq!(choose_on(Accel::Kvm, &dir.path().join("none"), guest).accel, "kvm");
        assert_eq!(choose_on(Accel::Tcg, &dev, metal).accel, "tcg");
        assert_eq!("auto".parse::<Accel>().unwrap(), Accel::Auto);
        assert!("xen".parse::<Accel>().is_err());
    }
}
