//! Firmware command identifiers (docs/protocol/commands.md#command-ids; SEV and
//! SEV-ES only, the SNP commands from 0x081 on are out of scope).

use std::fmt;

macro_rules! commands {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $name:literal, $buffer:literal; )*) => {
        /// A firmware command id (the value in bits 26:16 of the PSP
        /// command register; Linux `enum sev_cmd`).
        ///
        /// `Display` prints the name and id, e.g. `LAUNCH_START (0x030)`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum CommandId {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl CommandId {
            /// Every command, in numeric order.
            pub const ALL: &'static [CommandId] = &[$(CommandId::$variant,)*];

            /// The command for an id, or `None` for an id that is not an SEV
            /// command (including every SNP command).
            pub const fn from_id(id: u32) -> Option<CommandId> {
                match id {
                    $( $id => Some(CommandId::$variant), )*
                    _ => None,
                }
            }

            /// The name used by the AMD spec and sev-tool, e.g.
            /// `"LAUNCH_UPDATE_DATA"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( CommandId::$variant => $name, )*
                }
            }

            /// Whether the command takes a command buffer (docs/protocol/commands.md#command-ids,
            /// column "Buffer?"). Commands without one are issued with
            /// address 0.
            pub const fn has_buffer(self) -> bool {
                match self {
                    $( CommandId::$variant => $buffer, )*
                }
            }
        }
    };
}

commands! {
    Init = 0x001, "INIT", true;
    Shutdown = 0x002, "SHUTDOWN", false;
    /// Linux calls it FACTORY_RESET.
    PlatformReset = 0x003, "PLATFORM_RESET", false;
    /// The command buffer is the 12-byte status output.
    PlatformStatus = 0x004, "PLATFORM_STATUS", true;
    PekGen = 0x005, "PEK_GEN", false;
    PekCsr = 0x006, "PEK_CSR", true;
    PekCertImport = 0x007, "PEK_CERT_IMPORT", true;
    PdhCertExport = 0x008, "PDH_CERT_EXPORT", true;
    PdhGen = 0x009, "PDH_GEN", false;
    DfFlush = 0x00A, "DF_FLUSH", false;
    /// API ≥ 0.15.
    DownloadFirmware = 0x00B, "DOWNLOAD_FIRMWARE", true;
    /// API ≥ 0.16.
    GetId = 0x00C, "GET_ID", true;
    InitEx = 0x00D, "INIT_EX", true;
    /// sev-tool only.
    Nop = 0x00E, "NOP", false;
    /// sev-tool only; no buffer layout in the reference.
    RingBuffer = 0x00F, "RING_BUFFER", true;
    Decommission = 0x020, "DECOMMISSION", true;
    Activate = 0x021, "ACTIVATE", true;
    Deactivate = 0x022, "DEACTIVATE", true;
    GuestStatus = 0x023, "GUEST_STATUS", true;
    /// sev-tool only; no buffer layout in the reference.
    Copy = 0x024, "COPY", true;
    /// sev-tool only; no buffer layout in the reference.
    ActivateEx = 0x025, "ACTIVATE_EX", true;
    LaunchStart = 0x030, "LAUNCH_START", true;
    LaunchUpdateData = 0x031, "LAUNCH_UPDATE_DATA", true;
    /// SEV-ES only.
    LaunchUpdateVmsa = 0x032, "LAUNCH_UPDATE_VMSA", true;
    LaunchMeasure = 0x033, "LAUNCH_MEASURE", true;
    /// Linux calls it LAUNCH_UPDATE_SECRET.
    LaunchSecret = 0x034, "LAUNCH_SECRET", true;
    LaunchFinish = 0x035, "LAUNCH_FINISH", true;
    /// Linux calls it ATTESTATION_REPORT.
    Attestation = 0x036, "ATTESTATION", true;
    SendStart = 0x040, "SEND_START", true;
    SendUpdateData = 0x041, "SEND_UPDATE_DATA", true;
    SendUpdateVmsa = 0x042, "SEND_UPDATE_VMSA", true;
    SendFinish = 0x043, "SEND_FINISH", true;
    SendCancel = 0x044, "SEND_CANCEL", true;
    ReceiveStart = 0x050, "RECEIVE_START", true;
    ReceiveUpdateData = 0x051, "RECEIVE_UPDATE_DATA", true;
    ReceiveUpdateVmsa = 0x052, "RECEIVE_UPDATE_VMSA", true;
    ReceiveFinish = 0x053, "RECEIVE_FINISH", true;
    DbgDecrypt = 0x060, "DBG_DECRYPT", true;
    DbgEncrypt = 0x061, "DBG_ENCRYPT", true;
    /// sev-tool only; no buffer layout in the reference.
    SwapOut = 0x070, "SWAP_OUT", true;
    /// sev-tool only; no buffer layout in the reference.
    SwapIn = 0x071, "SWAP_IN", true;
}

impl CommandId {
    /// The numeric id.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// Platform-management commands (ids below 0x020); everything else acts
    /// on one guest.
    pub const fn is_platform_command(self) -> bool {
        self.id() < 0x020
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:03X})", self.name(), self.id())
    }
}

impl From<CommandId> for u32 {
    fn from(c: CommandId) -> u32 {
        c.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol/commands.md#command-ids, every SEV row: id, name, "Buffer?".
    #[test]
    fn ids_names_and_buffers_match_reference_table() {
        let table: &[(u32, &str, bool)] = &[
            (0x001, "INIT", true),
            (0x002, "SHUTDOWN", false),
            (0x003, "PLATFORM_RESET", false),
            (0x004, "PLATFORM_STATUS", true),
            (0x005, "PEK_GEN", false),
            (0x006, "PEK_CSR", true),
            (0x007, "PEK_CERT_IMPORT", true),
            (0x008, "PDH_CERT_EXPORT", true),
            (0x009, "PDH_GEN", false),
            (0x00A, "DF_FLUSH", false),
            (0x00B, "DOWNLOAD_FIRMWARE", true),
            (0x00C, "GET_ID", true),
            (0x00D, "INIT_EX", true),
            (0x00E, "NOP", false),
            (0x00F, "RING_BUFFER", true),
            (0x020, "DECOMMISSION", true),
            (0x021, "ACTIVATE", true),
            (0x022, "DEACTIVATE", true),
            (0x023, "GUEST_STATUS", true),
            (0x024, "COPY", true),
            (0x025, "ACTIVATE_EX", true),
            (0x030, "LAUNCH_START", true),
            (0x031, "LAUNCH_UPDATE_DATA", true),
            (0x032, "LAUNCH_UPDATE_VMSA", true),
            (0x033, "LAUNCH_MEASURE", true),
            (0x034, "LAUNCH_SECRET", true),
            (0x035, "LAUNCH_FINISH", true),
            (0x036, "ATTESTATION", true),
            (0x040, "SEND_START", true),
            (0x041, "SEND_UPDATE_DATA", true),
            (0x042, "SEND_UPDATE_VMSA", true),
            (0x043, "SEND_FINISH", true),
            (0x044, "SEND_CANCEL", true),
            (0x050, "RECEIVE_START", true),
            (0x051, "RECEIVE_UPDATE_DATA", true),
            (0x052, "RECEIVE_UPDATE_VMSA", true),
            (0x053, "RECEIVE_FINISH", true),
            (0x060, "DBG_DECRYPT", true),
            (0x061, "DBG_ENCRYPT", true),
            (0x070, "SWAP_OUT", true),
            (0x071, "SWAP_IN", true),
        ];
        assert_eq!(CommandId::ALL.len(), table.len());
        for (&(id, name, buffer), &c) in table.iter().zip(CommandId::ALL) {
            assert_eq!(c.id(), id);
            assert_eq!(c.name(), name);
            assert_eq!(c.has_buffer(), buffer, "{name}");
            assert_eq!(CommandId::from_id(id), Some(c));
            assert_eq!(c.is_platform_command(), id < 0x20);
        }
    }

    #[test]
    fn snp_and_unassigned_ids_are_none() {
        for id in [
            0x000,
            0x010,
            0x026,
            0x037,
            0x045,
            0x062,
            0x080,
            0x081,
            0x0A0,
            u32::MAX,
        ] {
            assert_eq!(CommandId::from_id(id), None, "{id:#x}");
        }
    }

    #[test]
    fn display_names_the_command() {
        assert_eq!(CommandId::LaunchStart.to_string(), "LAUNCH_START (0x030)");
        assert_eq!(u32::from(CommandId::DbgEncrypt), 0x61);
    }
}
