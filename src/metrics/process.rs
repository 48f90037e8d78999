//! Figures about the process itself.

/// Resident memory in bytes, from `/proc/self/status` (`VmRSS`, which the kernel gives in
/// KiB, so no page size is needed); `None` where there is no procfs.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn resident_memory_is_read_on_linux() {
        let rss = super::resident_memory_bytes().expect("procfs on Linux");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
