//! Where a layout's partitions fall on a disk, and the GPT (with its protective MBR) that
//! describes them, as bytes: 512-byte sectors, partitions aligned on 1 MiB.

use crate::config::{Layout, PartType, Size};

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Partition entries in a GPT.
pub const ENTRIES: usize = 128;
/// Sectors the entry array takes (128 entries of 128 bytes).
const ENTRY_SECTORS: u64 = 32;
/// Partitions start on multiples of this many sectors (1 MiB).
const ALIGN: u64 = 2048;

/// A partition placed on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Its index in the layout.
    pub index: usize,
    /// First sector.
    pub first: u64,
    /// Number of sectors.
    pub sectors: u64,
    /// Its unique GUID (on-disk byte order).
    pub guid: [u8; 16],
}

impl Placed {
    /// Its offset in bytes.
    pub fn offset(&self) -> u64 {
        self.first * SECTOR
    }
    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR
    }
}

/// Places the layout's partitions on a disk of `disk_bytes`; an error says by how much
/// it does not fit.
pub fn place(
    layout: &Layout,
    disk_bytes: u64,
    guid: &mut dyn FnMut() -> [u8; 16],
) -> Result<Vec<Placed>, String> {
    let total = disk_bytes / SECTOR;
    // The backup entries and header take the last 33 sectors.
    let last_usable = total.saturating_sub(ENTRY_SECTORS + 2);
    let fixed: u64 = layout
        .partitions
        .iter()
        .map(|p| match p.size {
            Size::Bytes(b) => b.div_ceil(SECTOR).next_multiple_of(ALIGN),
            Size::Rest => ALIGN,
        })
        .sum();
    let need = ALIGN + fixed + ENTRY_SECTORS + 1;
    if total < need {
        return Err(format!(
            "the layout needs at least {} but the disk has {}",
            human(need * SECTOR),
            human(disk_bytes)
        ));
    }
    // `fixed` counted one alignment unit for the `rest` partition: what is left beyond the
    // others and the first MiB, in whole MiB.
    let others = fixed - ALIGN;
    let rest_sectors = (last_usable + 1 - ALIGN - others) / ALIGN * ALIGN;
    let mut at = ALIGN;
    let mut placed = Vec::new();
    for (index, p) in layout.partitions.iter().enumerate() {
        let sectors = match p.size {
            Size::Bytes(b) => b.div_ceil(SECTOR),
            Size::Rest => rest_sectors,
        };
        placed.push(Placed {
            index,
            first: at,
            sectors,
            guid: guid(),
        });
        at = (at + sectors).next_multiple_of(ALIGN);
    }
    let end = placed.last().map_or(0, |p| p.first + p.sectors - 1);
    if end > last_usable {
        return Err(format!(
            "the layout needs {} but the disk has {}",
            human((end + ENTRY_SECTORS + 2) * SECTOR),
            human(disk_bytes)
        ));
    }
    Ok(placed)
}

/// A size for people: `3.0 GiB`.
pub fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", b / f64::from(1u32 << 30))
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", b / f64::from(1u32 << 20))
    } else {
        format!("{bytes} bytes")
    }
}

/// A GUID's 16 bytes in GPT order from its text form.
fn type_guid(kind: PartType) -> [u8; 16] {
    let text = match kind {
        PartType::BiosGrub => "21686148-6449-6E6F-744E-656564454649",
        PartType::Linux => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        PartType::Swap => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        PartType::Esp => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    };
    guid_bytes(text)
}

/// A GUID's on-disk bytes: the first three fields little-endian, the rest as written.
pub fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .split('-')
        .flat_map(|s| {
            (0..s.len())
                .step_by(2)
                .map(move |i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        })
        .collect();
    let mut out = [0u8; 16];
    out[..16].copy_from_slice(&hex[..16]);
    out[0..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    out
}

/// A random version-4 GUID in on-disk order, from 16 random bytes.
pub fn random_guid(mut r: [u8; 16]) -> [u8; 16] {
    // Version 4 and the RFC 4122 variant, in text order (bytes 6 and 8), which on disk are
    // byte 7 (the third field is little-endian) and byte 8.
    r[7] = (r[7] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    r
}

/// The GPT of a disk of `total` sectors: the protective MBR (with `boot_code`, up to 440
/// bytes, in front), the primary header and entries (sectors 1–33), and the backup
/// entries and header (the last 33 sectors), as (sector, bytes) to write.
pub fn table(
    layout: &Layout,
    placed: &[Placed],
    total: u64,
    disk_guid: [u8; 16],
    boot_code: &[u8],
) -> Vec<(u64, Vec<u8>)> {
    let mut entries = vec![0u8; ENTRIES * 128];
    for p in placed {
        let e = &mut entries[p.index * 128..(p.index + 1) * 128];
        e[0..16].copy_from_slice(&type_guid(layout.partitions[p.index].kind));
        e[16..32].copy_from_slice(&p.guid);
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&(p.first + p.sectors - 1).to_le_bytes());
        let name = match layout.partitions[p.index].mount.as_deref() {
            Some("/") => "root".to_string(),
            Some(m) => m.trim_start_matches('/').replace('/', "-"),
            None => format!("{:?}", layout.partitions[p.index].kind).to_lowercase(),
        };
        for (i, unit) in name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let header = |me: u64, other: u64, entries_at: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&me.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(total - ENTRY_SECTORS - 2).to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries_at.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let last = total - 1;
    let mut mbr = vec![0u8; SECTOR as usize];
    let code = boot_code.len().min(440);
    mbr[..code].copy_from_slice(&boot_code[..code]);
    // One partition of type 0xEE over the whole disk (or as much as 32 bits say).
    let pe = &mut mbr[446..462];
    pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    pe[4] = 0xEE;
    pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    pe[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(total - 1).unwrap_or(u32::MAX);
    pe[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    // Backups first, the primary after, the MBR (what a BIOS boots) last.
    vec![
        (last - ENTRY_SECTORS, entries.clone()),
        (last, header(last, 1, last - ENTRY_SECTORS)),
        (2, entries),
        (1, header(1, last, 2)),
        (0, mbr),
    ]
}

/// The sectors a new provisioning wipes first (both tables and the boot code), so that a
/// disk whose provisioning stopped halfway neither boots nor shows partitions.
pub fn wiped(total: u64) -> [(u64, u64); 2] {
    [
        (0, 2 + ENTRY_SECTORS),
        (total - ENTRY_SECTORS - 1, ENTRY_SECTORS + 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(rest_last: bool) -> Layout {
        let text = if rest_last {
            "boot = \"bios\"\n[[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
             [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n"
        } else {
            "boot = \"bios\"\n[[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
             [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n\
             [[partition]]\ntype = \"swap\"\nsize = \"100MiB\"\n"
        };
        Layout::parse("l.toml", text).unwrap()
    }

    #[test]
    fn partitions_are_aligned_and_rest_takes_what_is_left() {
        let mut n = 0u8;
        let mut g = || {
            n += 1;
            [n; 16]
        };
        let p = place(&layout(true), 1 << 30, &mut g).unwrap();
        assert_eq!((p[0].first, p[0].sectors), (2048, 2048));
        assert_eq!(p[1].first, 4096);
        let end = p[1].first + p[1].sectors;
        assert!(end <= (1 << 30) / 512 - 33, "{end}");
        assert!(end > (1 << 30) / 512 - 33 - 2048, "{end}");
        let p = place(&layout(false), 1 << 30, &mut g).unwrap();
        assert_eq!(p[2].sectors, 100 * 2048);
        assert!(p[2].first + p[2].sectors <= (1 << 30) / 512 - 33);
        assert_eq!(p[2].first % 2048, 0);
    }

    #[test]
    fn a_disk_too_small_says_how_much_is_needed() {
        let e = place(&layout(false), 64 << 20, &mut || [0; 16]).unwrap_err();
        assert!(
            e.contains("needs at least") && e.contains("64.0 MiB"),
            "{e}"
        );
    }

    #[test]
    fn the_table_checks_out_as_gpt_says() {
        let l = layout(true);
        let total = (1u64 << 30) / 512;
        let p = place(&l, 1 << 30, &mut || random_guid([7; 16])).unwrap();
        let t = table(&l, &p, total, [9; 16], &[0xEB; 440]);
        let get = |s: u64| t.iter().find(|(at, _)| *at == s).unwrap().1.clone();
        let h = get(1);
        assert_eq!(&h[0..8], b"EFI PART");
        let mut check = h[..92].to_vec();
        check[16..20].fill(0);
        assert_eq!(
            crc32fast::hash(&check).to_le_bytes(),
            h[16..20],
            "header CRC"
        );
        assert_eq!(crc32fast::hash(&get(2)).to_le_bytes(), h[88..92]);
        let backup = get(total - 1);
        assert_eq!(
            u64::from_le_bytes(backup[24..32].try_into().unwrap()),
            total - 1
        );
        let mbr = get(0);
        assert_eq!(
            (mbr[450], mbr[510], mbr[511], mbr[0]),
            (0xEE, 0x55, 0xAA, 0xEB)
        );
        assert_eq!(t.last().unwrap().0, 0, "the MBR is written last");
        assert_eq!(
            guid_bytes("21686148-6449-6E6F-744E-656564454649")[..4],
            [0x48, 0x61, 0x68, 0x21]
        );
    }
}
