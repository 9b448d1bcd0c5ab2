//! The SNP firmware command identifiers (docs/protocol/snp.md#snp-commands).

use std::fmt;

macro_rules! snp_commands {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $name:literal; )*) => {
        /// An SNP firmware command id (docs/protocol/snp.md#snp-commands).
        ///
        /// `Display` prints the name and id, e.g. `SNP_INIT_EX (0x085)`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum SnpCommand {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl SnpCommand {
            /// Every SNP command named here, in numeric order.
            pub const ALL: &'static [SnpCommand] = &[$(SnpCommand::$variant,)*];

            /// The command for an id, or `None` for an id that is not one.
            pub const fn from_id(id: u32) -> Option<SnpCommand> {
                match id {
                    $( $id => Some(SnpCommand::$variant), )*
                    _ => None,
                }
            }

            /// The name Linux and the firmware use, e.g. `"SNP_INIT_EX"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( SnpCommand::$variant => $name, )*
                }
            }
        }
    };
}

snp_commands! {
    /// Initialises SNP (the first API; superseded by SNP_INIT_EX).
    Init = 0x081, "SNP_INIT";
    /// Shuts SNP down (superseded by SNP_SHUTDOWN_EX).
    Shutdown = 0x082, "SNP_SHUTDOWN";
    /// The 0x20-byte SNP platform status.
    PlatformStatus = 0x083, "SNP_PLATFORM_STATUS";
    /// Makes the ASIDs of decommissioned guests reusable.
    DfFlush = 0x084, "SNP_DF_FLUSH";
    /// Initialises SNP with flags and a list of hypervisor-fixed ranges.
    InitEx = 0x085, "SNP_INIT_EX";
    /// Shuts SNP down, with IOMMU/x86 teardown flags.
    ShutdownEx = 0x086, "SNP_SHUTDOWN_EX";
    /// Destroys a guest context.
    Decommission = 0x090, "SNP_DECOMMISSION";
    /// Binds a guest context to an ASID.
    Activate = 0x091, "SNP_ACTIVATE";
    /// A guest context's state.
    GuestStatus = 0x092, "SNP_GUEST_STATUS";
    /// Creates a guest context.
    GctxCreate = 0x093, "SNP_GCTX_CREATE";
    /// A guest message (attestation, keys).
    GuestRequest = 0x094, "SNP_GUEST_REQUEST";
    /// Starts a launch with a guest policy.
    LaunchStart = 0x0A0, "SNP_LAUNCH_START";
    /// Encrypts and measures one page.
    LaunchUpdate = 0x0A1, "SNP_LAUNCH_UPDATE";
    /// Finishes a launch (ID block, HOST_DATA).
    LaunchFinish = 0x0A2, "SNP_LAUNCH_FINISH";
    /// Decrypts a guest page (policy DEBUG).
    DbgDecrypt = 0x0B0, "SNP_DBG_DECRYPT";
    /// Encrypts into a guest page (policy DEBUG).
    DbgEncrypt = 0x0B1, "SNP_DBG_ENCRYPT";
    /// Returns a firmware-owned page to the hypervisor.
    PageReclaim = 0x0C7, "SNP_PAGE_RECLAIM";
    /// Sets the reported TCB and the chip id/key masks.
    Config = 0x0C9, "SNP_CONFIG";
    /// Commits the running firmware's version and TCB (anti-rollback).
    Commit = 0x0CB, "SNP_COMMIT";
}

impl SnpCommand {
    /// The command id.
    pub const fn id(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for SnpCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:03X})", self.name(), self.id())
    }
}
