//! A machine's facts (CPU, memory, disks, NICs, PCI devices, DMI, OS), read from a root
//! path (`/proc`, `/sys`, `/etc/os-release` below it) so that tests run on fixture trees
//! captured from real machines. A missing source is a warning, never a failure. Facts are
//! also seen as eDeploy's 4-tuples `(category, item, attribute, value)`.

mod read;
mod tuples;

use serde::{Deserialize, Serialize};

pub use read::gather;
pub use tuples::{Tuple, to_tuples};

/// Everything strata knows about a machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Processors.
    #[serde(default)]
    pub cpu: Cpu,
    /// Memory.
    #[serde(default)]
    pub memory: Memory,
    /// Block devices (loop, ram and device-mapper devices excluded).
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Network interfaces (`lo` excluded).
    #[serde(default)]
    pub network: Vec<Nic>,
    /// PCI devices.
    #[serde(default)]
    pub pci: Vec<Pci>,
    /// DMI (firmware) data.
    #[serde(default)]
    pub system: System,
    /// The operating system.
    #[serde(default)]
    pub os: Os,
}

/// Processors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Model name of the first processor.
    pub model: String,
    /// Physical packages (sockets).
    pub physical: u32,
    /// Cores in all.
    pub cores: u32,
    /// Hardware threads (logical CPUs).
    pub threads: u32,
}

/// Memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Total, in bytes.
    pub total: u64,
}

/// A block device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`, `vda`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether it spins.
    pub rotational: bool,
    /// Vendor, when the device says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    /// Model, when the device says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Serial number, when the device says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
}

/// A network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    /// Kernel name.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// IPv4 addresses with prefix (`192.168.122.10/24`).
    #[serde(default)]
    pub ipv4: Vec<String>,
    /// IPv6 addresses with prefix.
    #[serde(default)]
    pub ipv6: Vec<String>,
    /// Kernel driver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// Link speed in Mb/s, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u64>,
    /// Whether the link is up.
    pub link: bool,
}

/// A PCI device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pci {
    /// Bus address (`0000:00:1f.2`).
    pub slot: String,
    /// Vendor id (`0x8086`).
    pub vendor: String,
    /// Device id.
    pub device: String,
    /// Class code (`0x010601`).
    pub class: String,
}

/// DMI data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct System {
    /// Manufacturer.
    #[serde(default)]
    pub vendor: String,
    /// Product name.
    #[serde(default)]
    pub product: String,
    /// Serial number.
    #[serde(default)]
    pub serial: String,
    /// Product UUID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
}

/// The operating system, from `/etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Os {
    /// `ID`.
    #[serde(default)]
    pub id: String,
    /// `VERSION_ID`.
    #[serde(default)]
    pub version_id: String,
    /// `PRETTY_NAME`.
    #[serde(default)]
    pub pretty_name: String,
}

/// Why a facts file could not be read.
#[derive(Debug)]
pub struct FactsFileError(pub String);

impl std::fmt::Display for FactsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FactsFileError {}

/// Reads a facts file in either form `strata facts` writes: the JSON object (`--json`)
/// or the array of 4-tuples (`--tuples`).
pub fn read_file(path: &std::path::Path) -> Result<Vec<Tuple>, FactsFileError> {
    Ok(read_file_with_view(path)?.1)
}

/// Like [`read_file`], with the facts as templates see them (`facts.*`): the JSON form
/// as is; tuples nested as `category.item.attribute = value`.
pub fn read_file_with_view(
    path: &std::path::Path,
) -> Result<(serde_json::Value, Vec<Tuple>), FactsFileError> {
    let name = path.display();
    let text = strata_fs::read_to_string(path)
        .map_err(|e| FactsFileError(format!("cannot read facts {name}: {}", e.source)))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| FactsFileError(format!("{name}: not JSON: {e}")))?;
    if value.is_array() {
        let tuples: Vec<Tuple> = serde_json::from_value(value).map_err(|e| {
            FactsFileError(format!(
                "{name}: expected an array of [category, item, attribute, value] strings: {e}"
            ))
        })?;
        return Ok((nest(&tuples), tuples));
    }
    let facts: Facts = serde_json::from_value(value.clone()).map_err(|e| {
        FactsFileError(format!(
            "{name}: not the output of `strata facts --json`: {e}"
        ))
    })?;
    Ok((value, to_tuples(&facts)))
}

/// Tuples as a nested table: `category.item.attribute = value`.
fn nest(tuples: &[Tuple]) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    for [c, i, a, v] in tuples {
        let cat = root
            .entry(c.clone())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        let item = cat
            .as_object_mut()
            .expect("objects only")
            .entry(i.clone())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        item.as_object_mut()
            .expect("objects only")
            .insert(a.clone(), v.clone().into());
    }
    serde_json::Value::Object(root)
}
