//! `[provision]` in `strata.toml` and `hardware/layouts/<name>.toml`, read and checked: a
//! mistake is an error naming the file and the field, found before any disk is touched.

use std::path::Path;

use serde::Deserialize;

use crate::error::ProvisionError;

/// `[provision]` in `strata.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The base OS laid down before the node's catalog: `debian:<suite>`.
    pub base: Base,
    /// The layout's name (`hardware/layouts/<name>.toml`).
    pub layout: String,
    /// The kernel and boot loader console (`ttyS0,115200`), if any.
    pub console: Option<Console>,
    /// The Debian mirror debootstrap fetches the base from.
    pub mirror: String,
}

/// A base OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The distribution (only `debian` for now).
    pub distribution: String,
    /// Its suite (`bookworm`).
    pub suite: String,
}

/// A serial console: `ttyS<unit>,<speed>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    /// The device name, `ttyS0`.
    pub device: String,
    /// The serial unit (0 for ttyS0).
    pub unit: u32,
    /// The speed in baud.
    pub speed: u32,
}

/// The default mirror.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteToml {
    provision: Option<RawSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    base: Option<String>,
    layout: Option<String>,
    console: Option<String>,
    mirror: Option<String>,
}

/// Only `[provision]` is read here; the rest of `strata.toml` is strata-core's.
#[derive(Deserialize)]
struct AnySite {
    #[serde(default)]
    provision: Option<toml::Value>,
}

impl Settings {
    /// Reads `[provision]` from `site/strata.toml` (defaults: `debian:bookworm`, layout
    /// `default`, no console).
    pub fn read(site: &Path) -> Result<Settings, ProvisionError> {
        let file = "strata.toml";
        let text = strata_fs::read_to_string(&site.join(file))?;
        let any: AnySite = toml::from_str(&text).map_err(|e| bad(file, "", &e))?;
        let raw = match any.provision {
            None => None,
            Some(v) => {
                let wrapped = toml::Table::from_iter([("provision".to_string(), v)]);
                let s: SiteToml = wrapped
                    .try_into()
                    .map_err(|e: toml::de::Error| bad(file, "provision", &e.message()))?;
                s.provision
            }
        };
        let raw = raw.unwrap_or(RawSettings {
            base: None,
            layout: None,
            console: None,
            mirror: None,
        });
        let base = parse_base(raw.base.as_deref().unwrap_or("debian:bookworm"))
            .map_err(|why| bad(file, "provision.base", &why))?;
        let layout = raw.layout.unwrap_or_else(|| "default".into());
        check_name(&layout).map_err(|why| bad(file, "provision.layout", &why))?;
        let console = raw
            .console
            .as_deref()
            .map(parse_console)
            .transpose()
            .map_err(|why| bad(file, "provision.console", &why))?;
        let mirror = raw.mirror.unwrap_or_else(|| DEBIAN_MIRROR.into());
        if !(mirror.starts_with("http://") || mirror.starts_with("https://"))
            || mirror.chars().any(char::is_whitespace)
        {
            return Err(bad(
                file,
                "provision.mirror",
                &format!("{mirror:?} is not an http:// or https:// URL"),
            ));
        }
        Ok(Settings {
            base,
            layout,
            console,
            mirror,
        })
    }
}

fn bad(file: &str, field: &str, why: &dyn std::fmt::Display) -> ProvisionError {
    ProvisionError::Config {
        file: file.into(),
        field: field.into(),
        message: why.to_string(),
    }
}

fn parse_base(s: &str) -> Result<Base, String> {
    let Some((distribution, suite)) = s.split_once(':') else {
        return Err(format!(
            "{s:?}: expected DISTRIBUTION:SUITE, as debian:bookworm"
        ));
    };
    if distribution != "debian" {
        return Err(format!(
            "{s:?}: unknown distribution {distribution:?} (strata provisions debian)"
        ));
    }
    if suite.is_empty()
        || !suite
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(format!("{s:?}: {suite:?} is not a Debian suite name"));
    }
    Ok(Base {
        distribution: distribution.into(),
        suite: suite.into(),
    })
}

fn parse_console(s: &str) -> Result<Console, String> {
    let (device, speed) = s.split_once(',').unwrap_or((s, "115200"));
    let unit = device
        .strip_prefix("ttyS")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n < 4)
        .ok_or_else(|| format!("{s:?}: expected a serial console ttyS0…ttyS3, as ttyS0,115200"))?;
    let speed = speed
        .parse::<u32>()
        .ok()
        .filter(|b| [9600, 19200, 38400, 57600, 115_200].contains(b))
        .ok_or_else(|| format!("{s:?}: {speed:?} is not a serial speed (9600…115200)"))?;
    Ok(Console {
        device: device.into(),
        unit,
        speed,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a layout name (letters, digits, - and _)"
        ))
    }
}

/// How a machine boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// A PC BIOS: GRUB in the MBR and in a `bios_grub` partition.
    Bios,
    /// UEFI: an EFI system partition (not provisioned yet).
    Uefi,
}

/// What a partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartType {
    /// GRUB's core image on a BIOS machine.
    BiosGrub,
    /// A Linux file system.
    Linux,
    /// Swap.
    Swap,
    /// The EFI system partition.
    Esp,
}

/// A file system strata can make and fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    /// ext4 (`mke2fs -t ext4`).
    Ext4,
    /// ext3.
    Ext3,
    /// ext2.
    Ext2,
}

impl Fs {
    /// Its name for `mke2fs -t` and fstab.
    pub fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Ext3 => "ext3",
            Fs::Ext2 => "ext2",
        }
    }
}

/// A partition's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Exactly this many bytes (a multiple of 512).
    Bytes(u64),
    /// What the other partitions leave.
    Rest,
}

/// One partition of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its size.
    pub size: Size,
    /// Its type.
    pub kind: PartType,
    /// Where it is mounted, if it holds a file system.
    pub mount: Option<String>,
    /// Its file system.
    pub fs: Option<Fs>,
}

/// A layout: how a disk is cut and what each part holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The layout's file, relative to the site.
    pub file: String,
    /// How the machine boots.
    pub boot: Boot,
    /// The partitions, in disk order.
    pub partitions: Vec<Partition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    boot: Option<String>,
    #[serde(default)]
    partition: Vec<RawPartition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    size: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    mount: Option<String>,
    fs: Option<String>,
}

impl Layout {
    /// Reads and checks `site/hardware/layouts/<name>.toml`.
    pub fn read(site: &Path, name: &str) -> Result<Layout, ProvisionError> {
        let file = format!("hardware/layouts/{name}.toml");
        let path = site.join(&file);
        if !strata_fs::exists(&path) {
            return Err(bad(
                "strata.toml",
                "provision.layout",
                &format!("no layout {name:?}: {file} does not exist"),
            ));
        }
        let text = strata_fs::read_to_string(&path)?;
        Layout::parse(&file, &text)
    }

    /// Parses and checks a layout's text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Layout, ProvisionError> {
        let raw: RawLayout = toml::from_str(text).map_err(|e| bad(file, "", &e))?;
        let boot = match raw.boot.as_deref() {
            None => return Err(bad(file, "boot", &"missing: \"bios\" or \"uefi\"")),
            Some("bios") => Boot::Bios,
            Some("uefi") => Boot::Uefi,
            Some(other) => {
                return Err(bad(
                    file,
                    "boot",
                    &format!("{other:?}: expected \"bios\" or \"uefi\""),
                ));
            }
        };
        if raw.partition.is_empty() {
            return Err(bad(file, "partition", &"the layout has no [[partition]]"));
        }
        if raw.partition.len() > crate::gpt::ENTRIES {
            return Err(bad(file, "partition", &"more than 128 partitions"));
        }
        let mut partitions = Vec::new();
        for (i, p) in raw.partition.iter().enumerate() {
            let at = |field: &str| format!("partition[{}].{field}", i + 1);
            let size = match p.size.as_deref() {
                None => {
                    return Err(bad(
                        file,
                        &at("size"),
                        &"missing (as \"512MiB\" or \"rest\")",
                    ));
                }
                Some(s) => parse_size(s).map_err(|why| bad(file, &at("size"), &why))?,
            };
            let kind = match p.kind.as_deref().unwrap_or("linux") {
                "bios_grub" => PartType::BiosGrub,
                "linux" => PartType::Linux,
                "swap" => PartType::Swap,
                "esp" => PartType::Esp,
                other => {
                    return Err(bad(
                        file,
                        &at("type"),
                        &format!("{other:?}: expected bios_grub, linux, swap or esp"),
                    ));
                }
            };
            let fs = match p.fs.as_deref() {
                None => None,
                Some("ext4") => Some(Fs::Ext4),
                Some("ext3") => Some(Fs::Ext3),
                Some("ext2") => Some(Fs::Ext2),
                Some(other) => {
                    return Err(bad(
                        file,
                        &at("fs"),
                        &format!("{other:?}: unknown file system (strata makes ext4, ext3, ext2)"),
                    ));
                }
            };
            if let Some(m) = &p.mount {
                check_mount(m).map_err(|why| bad(file, &at("mount"), &why))?;
            }
            match (kind, &p.mount, fs) {
                (PartType::Linux, Some(_), None) => {
                    return Err(bad(
                        file,
                        &at("fs"),
                        &"missing: a mounted partition needs one",
                    ));
                }
                (PartType::Linux, None, Some(_)) => {
                    return Err(bad(
                        file,
                        &at("mount"),
                        &"missing: a file system needs a mount point",
                    ));
                }
                (PartType::BiosGrub | PartType::Swap, Some(_), _)
                | (PartType::BiosGrub | PartType::Swap, _, Some(_)) => {
                    return Err(bad(
                        file,
                        &at("type"),
                        &"a bios_grub or swap partition has no file system or mount point",
                    ));
                }
                _ => {}
            }
            partitions.push(Partition {
                size,
                kind,
                mount: p.mount.clone(),
                fs,
            });
        }
        check_whole(file, boot, &partitions)?;
        Ok(Layout {
            file: file.into(),
            boot,
            partitions,
        })
    }
}

fn check_whole(file: &str, boot: Boot, parts: &[Partition]) -> Result<(), ProvisionError> {
    if parts.iter().filter(|p| p.size == Size::Rest).count() > 1 {
        return Err(bad(
            file,
            "partition",
            &"more than one partition has size \"rest\"",
        ));
    }
    let mut mounts: Vec<&str> = parts.iter().filter_map(|p| p.mount.as_deref()).collect();
    mounts.sort_unstable();
    if let Some(w) = mounts.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(
            file,
            "partition",
            &format!("{:?} is mounted twice", w[0]),
        ));
    }
    if !mounts.contains(&"/") {
        return Err(bad(file, "partition", &"no partition is mounted on \"/\""));
    }
    let bios_grub = parts
        .iter()
        .filter(|p| p.kind == PartType::BiosGrub)
        .count();
    match boot {
        Boot::Bios if bios_grub != 1 => Err(bad(
            file,
            "partition",
            &"a bios layout needs exactly one partition of type \"bios_grub\" (1MiB is enough)",
        )),
        Boot::Uefi if !parts.iter().any(|p| p.kind == PartType::Esp) => Err(bad(
            file,
            "partition",
            &"a uefi layout needs a partition of type \"esp\"",
        )),
        _ => Ok(()),
    }
}

fn check_mount(m: &str) -> Result<(), String> {
    let ok = m.starts_with('/')
        && (m == "/" || !m.ends_with('/'))
        && !m.split('/').any(|c| c == "." || c == "..")
        && !m.contains("//")
        && m.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!("{m:?} is not an absolute mount point"))
    }
}

/// Parses `512MiB`, `20GiB`, `1M`, `1048576` (bytes) or `rest`.
pub fn parse_size(s: &str) -> Result<Size, String> {
    if s == "rest" {
        return Ok(Size::Rest);
    }
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size (as \"512MiB\", \"20GiB\" or \"rest\")"))?;
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (KiB, MiB, GiB or TiB; K, M, G, T are the same)"
            ));
        }
    };
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|b| *b < (1 << 60))
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("{s:?}: a partition cannot be empty"));
    }
    if bytes % 512 != 0 {
        return Err(format!("{s:?} is not a whole number of 512-byte sectors"));
    }
    Ok(Size::Bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "boot = \"bios\"\n[[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
                        [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n";

    fn err(text: &str) -> String {
        Layout::parse("hardware/layouts/x.toml", text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_contracts_layout_parses() {
        let l = Layout::parse("hardware/layouts/default.toml", GOOD).unwrap();
        assert_eq!(l.boot, Boot::Bios);
        assert_eq!(l.partitions.len(), 2);
        assert_eq!(l.partitions[0].size, Size::Bytes(1 << 20));
        assert_eq!(l.partitions[1].size, Size::Rest);
        assert_eq!(l.partitions[1].fs, Some(Fs::Ext4));
    }

    #[test]
    fn sizes_in_every_unit_and_bad_ones_named() {
        assert_eq!(parse_size("2GiB"), Ok(Size::Bytes(2 << 30)));
        assert_eq!(parse_size("512M"), Ok(Size::Bytes(512 << 20)));
        assert_eq!(parse_size("4096"), Ok(Size::Bytes(4096)));
        for bad in [
            "", "MiB", "1.5GiB", "10 GiB", "0MiB", "100", "5PiB", "-1M", "1GB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn each_mistake_names_the_file_and_the_field() {
        let e = err(&GOOD.replace("\"rest\"", "\"lots\""));
        assert!(
            e.contains("hardware/layouts/x.toml") && e.contains("partition[2].size"),
            "{e}"
        );
        let e = err(&GOOD.replace("ext4", "zfs"));
        assert!(
            e.contains("partition[2].fs") && e.contains("\"zfs\""),
            "{e}"
        );
        let e = err(&GOOD.replace("bios_grub", "bios-grub"));
        assert!(e.contains("partition[1].type"), "{e}");
        let e = err(&GOOD.replace("\"bios\"", "\"efi\""));
        assert!(e.contains(": boot:"), "{e}");
        let e = err(&GOOD.replace("mount = \"/\"", "mount = \"root\""));
        assert!(e.contains("partition[2].mount"), "{e}");
        let e = err(&GOOD.replace("mount = \"/\"", "mount = \"/srv\""));
        assert!(e.contains("no partition is mounted on \"/\""), "{e}");
        let e = err(&GOOD.replace("type = \"bios_grub\"\n", ""));
        assert!(e.contains("bios_grub"), "{e}");
        let e = err(&GOOD.replace("size = \"1MiB\"", "size = \"rest\""));
        assert!(e.contains("more than one"), "{e}");
        let e = err(&format!("{GOOD}colour = \"red\"\n"));
        assert!(e.contains("colour"), "{e}");
        let e = err(&GOOD.replace("fs = \"ext4\"\n", ""));
        assert!(
            e.contains("partition[2].fs") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn provision_settings_default_and_reject_what_they_cannot_use() {
        let t = tempfile::tempdir().unwrap();
        let write = |s: &str| {
            strata_fs::write_new(&t.path().join("strata.toml"), s.as_bytes()).unwrap();
        };
        write("[site]\nname = \"t\"\n");
        let s = Settings::read(t.path()).unwrap();
        assert_eq!(s.base.suite, "bookworm");
        assert_eq!(s.layout, "default");
        assert_eq!(s.console, None);
        write("[site]\nname = \"t\"\n[provision]\nconsole = \"ttyS1,9600\"\nlayout = \"big\"\n");
        let s = Settings::read(t.path()).unwrap();
        assert_eq!(
            s.console.as_ref().map(|c| (c.unit, c.speed)),
            Some((1, 9600))
        );
        assert_eq!(s.layout, "big");
        for (toml, field) in [
            ("base = \"ubuntu:noble\"", "provision.base"),
            ("base = \"bookworm\"", "provision.base"),
            ("console = \"tty0\"", "provision.console"),
            ("console = \"ttyS0,115201\"", "provision.console"),
            ("layout = \"../x\"", "provision.layout"),
            ("mirror = \"ftp://x\"", "provision.mirror"),
            ("disk = \"/dev/sda\"", "provision"),
        ] {
            write(&format!("[site]\nname = \"t\"\n[provision]\n{toml}\n"));
            let e = Settings::read(t.path()).unwrap_err().to_string();
            assert!(
                e.contains("strata.toml") && e.contains(field),
                "{toml}: {e}"
            );
        }
    }
}
