// SPDX-License-Identifier: GPL-2.0

//! The VFIO migration uAPI (`include/uapi/linux/vfio.h`) from userspace: a device opened
//! through its VFIO character device and bound to an iommufd, as QEMU opens one, with the
//! migration features and ioctls. Works for any VFIO migration driver, not only rustmig.

use std::ffi::c_ulong;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

extern "C" {
    fn ioctl(fd: i32, request: c_ulong, ...) -> i32;
}

const VFIO_TYPE: c_ulong = b';' as c_ulong;
const VFIO_BASE: c_ulong = 100;

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`: VFIO's ioctls carry no size in their number.
const fn vfio_io(nr: c_ulong) -> c_ulong {
    (VFIO_TYPE << 8) | (VFIO_BASE + nr)
}

const VFIO_DEVICE_RESET: c_ulong = vfio_io(11);
const VFIO_DEVICE_FEATURE: c_ulong = vfio_io(17);
const VFIO_DEVICE_BIND_IOMMUFD: c_ulong = vfio_io(18);
const VFIO_MIG_GET_PRECOPY_INFO: c_ulong = vfio_io(21);

const FEATURE_GET: u32 = 1 << 16;
const FEATURE_SET: u32 = 1 << 17;
const FEATURE_MIGRATION: u32 = 1;
const FEATURE_MIG_DEVICE_STATE: u32 = 2;
const FEATURE_MIG_DATA_SIZE: u32 = 9;

/// `VFIO_MIGRATION_STOP_COPY`, `_P2P`, `_PRE_COPY`: the migration flags' names.
const FLAG_NAMES: [(u64, &str); 3] = [(1, "STOP_COPY"), (2, "P2P"), (4, "PRE_COPY")];

/// A migration state (`enum vfio_device_mig_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Error = 0,
    Stop = 1,
    Running = 2,
    StopCopy = 3,
    Resuming = 4,
    RunningP2p = 5,
    PreCopy = 6,
    PreCopyP2p = 7,
}

impl State {
    const ALL: [State; 8] = [
        State::Error,
        State::Stop,
        State::Running,
        State::StopCopy,
        State::Resuming,
        State::RunningP2p,
        State::PreCopy,
        State::PreCopyP2p,
    ];

    /// The uAPI's name, without `VFIO_DEVICE_STATE_`.
    pub fn name(self) -> &'static str {
        match self {
            State::Error => "ERROR",
            State::Stop => "STOP",
            State::Running => "RUNNING",
            State::StopCopy => "STOP_COPY",
            State::Resuming => "RESUMING",
            State::RunningP2p => "RUNNING_P2P",
            State::PreCopy => "PRE_COPY",
            State::PreCopyP2p => "PRE_COPY_P2P",
        }
    }

    /// Parses a state's name, in any case, with or without `VFIO_DEVICE_STATE_`.
    pub fn parse(s: &str) -> Option<State> {
        let s = s.to_ascii_uppercase();
        let s = s.strip_prefix("VFIO_DEVICE_STATE_").unwrap_or(&s);
        State::ALL.into_iter().find(|st| st.name() == s)
    }

    fn from_raw(raw: u32) -> Option<State> {
        State::ALL.get(usize::try_from(raw).ok()?).copied()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The names of the migration flags set in `flags`, e.g. `STOP_COPY|P2P|PRE_COPY`.
pub fn flag_names(flags: u64) -> String {
    let mut names: Vec<String> = FLAG_NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| (*n).to_string())
        .collect();
    let unknown = flags & !FLAG_NAMES.iter().map(|(b, _)| b).sum::<u64>();
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join("|")
    }
}

/// Where a VFIO device lives in sysfs: a PCI function's address or an mdev's UUID.
pub fn sysfs_dir(name: &str) -> PathBuf {
    let pci = Path::new("/sys/bus/pci/devices").join(name);
    if pci.exists() {
        pci
    } else {
        Path::new("/sys/bus/mdev/devices").join(name)
    }
}

/// The VFIO character device (`/dev/vfio/devices/vfioN`) of device `name`.
pub fn cdev(name: &str) -> Result<PathBuf, String> {
    let dir = sysfs_dir(name);
    if !dir.exists() {
        return Err(format!(
            "{name}: no such device (neither a PCI address such as 0000:04:00.0 nor an mdev's \
             UUID; `rustmig list` shows the VFIO devices)"
        ));
    }
    let entries = fs::read_dir(dir.join("vfio-dev")).map_err(|_| {
        format!(
            "{name}: not bound to a VFIO driver (bind it to vfio-pci or a variant such as \
             rustmig_vfio_pci)"
        )
    })?;
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("vfio") {
            return Ok(Path::new("/dev/vfio/devices").join(n));
        }
    }
    Err(format!("{name}: its driver has no VFIO character device"))
}

/// The name of the driver bound to device `name`, if any.
pub fn driver(name: &str) -> Option<String> {
    let link = fs::read_link(sysfs_dir(name).join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// An open VFIO device, bound to its own iommufd.
pub struct Device {
    fd: File,
    // Kept open: the device stays bound to it.
    _iommufd: File,
}

#[repr(C)]
struct BindIommufd {
    argsz: u32,
    flags: u32,
    iommufd: i32,
    out_devid: u32,
}

#[repr(C)]
struct Feature<T> {
    argsz: u32,
    flags: u32,
    data: T,
}

#[repr(C)]
#[derive(Default)]
struct MigState {
    device_state: u32,
    data_fd: i32,
}

#[repr(C)]
#[derive(Default)]
struct PrecopyInfo {
    argsz: u32,
    flags: u32,
    initial_bytes: u64,
    dirty_bytes: u64,
}

/// The size of `T` as a uAPI `argsz`.
fn argsz<T>() -> u32 {
    u32::try_from(std::mem::size_of::<T>()).expect("uAPI structs are small")
}

/// Issues `request` on `fd` with `arg`; the errno on failure.
fn do_ioctl<T>(fd: &impl AsRawFd, request: c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a valid, exclusively borrowed `repr(C)` struct of the layout that the
    // kernel expects for `request`, alive for the call; `argsz` in it bounds what the kernel
    // reads and writes.
    let r = unsafe { ioctl(fd.as_raw_fd(), request, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The errnos the VFIO migration uAPI and the drivers behind it return, by name.
const ERRNOS: [(i32, &str); 22] = [
    (1, "EPERM"),
    (2, "ENOENT"),
    (5, "EIO"),
    (9, "EBADF"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (19, "ENODEV"),
    (22, "EINVAL"),
    (25, "ENOTTY"),
    (28, "ENOSPC"),
    (34, "ERANGE"),
    (42, "ENOMSG"),
    (61, "ENODATA"),
    (71, "EPROTO"),
    (74, "EBADMSG"),
    (75, "EOVERFLOW"),
    (84, "EILSEQ"),
    (93, "EPROTONOSUPPORT"),
    (95, "EOPNOTSUPP"),
];

const ENOTTY: i32 = 25;
const EINVAL: i32 = 22;
/// A PRE_COPY data file's read: no more data now.
pub const ENOMSG: i32 = 42;
/// `VFIO_MIGRATION_PRE_COPY`.
pub const MIGRATION_PRE_COPY: u64 = 4;

/// An errno's symbolic name and text, e.g. `EPROTO (Protocol error)`.
pub fn errno_text(e: &io::Error) -> String {
    let name = e
        .raw_os_error()
        .and_then(|n| ERRNOS.iter().find(|(v, _)| *v == n))
        .map(|(_, name)| *name);
    match name {
        Some(n) => format!("{n} ({})", strip_os_error(e)),
        None => e.to_string(),
    }
}

/// `Protocol error` for `Protocol error (os error 71)`.
fn strip_os_error(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl Device {
    /// Opens device `name` (a PCI address or an mdev UUID) through its VFIO character device
    /// and binds it to a new iommufd.
    pub fn open(name: &str) -> Result<Device, String> {
        let path = cdev(name)?;
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                format!(
                    "{name}: cannot open {}: {} (is it in use, e.g. by QEMU?)",
                    path.display(),
                    errno_text(&e)
                )
            })?;
        let iommufd = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/iommu")
            .map_err(|e| {
                format!(
                    "cannot open /dev/iommu: {} (CONFIG_IOMMUFD)",
                    errno_text(&e)
                )
            })?;
        let mut bind = BindIommufd {
            argsz: argsz::<BindIommufd>(),
            flags: 0,
            iommufd: iommufd.as_raw_fd(),
            out_devid: 0,
        };
        do_ioctl(&fd, VFIO_DEVICE_BIND_IOMMUFD, &mut bind).map_err(|e| {
            format!(
                "{name}: VFIO_DEVICE_BIND_IOMMUFD failed: {} (is it in use?)",
                errno_text(&e)
            )
        })?;
        Ok(Device {
            fd,
            _iommufd: iommufd,
        })
    }

    /// The device's migration flags (`VFIO_DEVICE_FEATURE_MIGRATION`); `None` for a device
    /// that does not support migration (`ENOTTY`).
    pub fn migration_flags(&self) -> io::Result<Option<u64>> {
        let mut f = Feature {
            argsz: argsz::<Feature<u64>>(),
            flags: FEATURE_GET | FEATURE_MIGRATION,
            data: 0u64,
        };
        match do_ioctl(&self.fd, VFIO_DEVICE_FEATURE, &mut f) {
            Ok(()) => Ok(Some(f.data)),
            Err(e) if e.raw_os_error() == Some(ENOTTY) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The device's migration state.
    pub fn state(&self) -> io::Result<State> {
        let mut f = Feature {
            argsz: argsz::<Feature<MigState>>(),
            flags: FEATURE_GET | FEATURE_MIG_DEVICE_STATE,
            data: MigState::default(),
        };
        do_ioctl(&self.fd, VFIO_DEVICE_FEATURE, &mut f)?;
        State::from_raw(f.data.device_state).ok_or_else(|| io::Error::from_raw_os_error(EINVAL))
    }

    /// Moves the device to `state`; returns the data file it hands out, if it does.
    pub fn set_state(&self, state: State) -> io::Result<Option<File>> {
        let mut f = Feature {
            argsz: argsz::<Feature<MigState>>(),
            flags: FEATURE_SET | FEATURE_MIG_DEVICE_STATE,
            data: MigState {
                device_state: state as u32,
                data_fd: -1,
            },
        };
        do_ioctl(&self.fd, VFIO_DEVICE_FEATURE, &mut f)?;
        if f.data.data_fd < 0 {
            return Ok(None);
        }
        // SAFETY: The kernel installed `data_fd` in this process for the caller, who owns it
        // from here.
        Ok(Some(File::from(unsafe {
            OwnedFd::from_raw_fd(f.data.data_fd)
        })))
    }

    /// The bytes a STOP_COPY would read now (`VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`).
    pub fn data_size(&self) -> io::Result<u64> {
        let mut f = Feature {
            argsz: argsz::<Feature<u64>>(),
            flags: FEATURE_GET | FEATURE_MIG_DATA_SIZE,
            data: 0u64,
        };
        do_ioctl(&self.fd, VFIO_DEVICE_FEATURE, &mut f)?;
        Ok(f.data)
    }

    /// Resets the device (`VFIO_DEVICE_RESET`): its migration state returns to RUNNING.
    pub fn reset(&self) -> io::Result<()> {
        // SAFETY: VFIO_DEVICE_RESET takes no argument.
        let r = unsafe { ioctl(self.fd.as_raw_fd(), VFIO_DEVICE_RESET) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// `VFIO_MIG_GET_PRECOPY_INFO` on a PRE_COPY data file: the initial and dirty bytes left.
pub fn precopy_info(data: &File) -> io::Result<(u64, u64)> {
    let mut info = PrecopyInfo {
        argsz: argsz::<PrecopyInfo>(),
        ..Default::default()
    };
    do_ioctl(data, VFIO_MIG_GET_PRECOPY_INFO, &mut info)?;
    Ok((info.initial_bytes, info.dirty_bytes))
}

/// The VFIO devices of the host: the PCI functions and mdevs with a VFIO character device.
pub fn devices() -> Vec<String> {
    let mut v = Vec::new();
    for bus in ["/sys/bus/pci/devices", "/sys/bus/mdev/devices"] {
        let Ok(entries) = fs::read_dir(bus) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().join("vfio-dev").is_dir() {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_uapi_ones() {
        // From include/uapi/linux/vfio.h: _IO(';', 100 + n).
        assert_eq!(VFIO_DEVICE_FEATURE, 0x3b75);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
        assert_eq!(VFIO_MIG_GET_PRECOPY_INFO, 0x3b79);
        assert_eq!(VFIO_DEVICE_RESET, 0x3b6f);
        assert_eq!(std::mem::size_of::<BindIommufd>(), 16);
        assert_eq!(std::mem::size_of::<PrecopyInfo>(), 24);
        assert_eq!(std::mem::size_of::<Feature<MigState>>(), 16);
    }

    #[test]
    fn states_parse_by_name() {
        for s in State::ALL {
            assert_eq!(State::parse(s.name()), Some(s));
            assert_eq!(State::from_raw(s as u32), Some(s));
        }
        assert_eq!(State::parse("stop_copy"), Some(State::StopCopy));
        assert_eq!(
            State::parse("VFIO_DEVICE_STATE_PRE_COPY_P2P"),
            Some(State::PreCopyP2p)
        );
        assert_eq!(State::parse("STOPPED"), None);
        assert_eq!(State::from_raw(8), None);
    }

    #[test]
    fn flags_are_named() {
        assert_eq!(flag_names(7), "STOP_COPY|P2P|PRE_COPY");
        assert_eq!(flag_names(1), "STOP_COPY");
        assert_eq!(flag_names(0), "none");
        assert_eq!(flag_names(0x11), "STOP_COPY|0x10");
    }
}
