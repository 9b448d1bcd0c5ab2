//! Wrong-state matrix: every guest command in every guest state, checked
//! against the table of docs/protocol/abi.md#guest-states (copied below independently of
//! the implementation). A command the table allows succeeds (it is given
//! valid arguments); any other answers INVALID_GUEST_STATE and leaves the
//! guest's state unchanged. In UNINIT (no context) every command answers
//! INVALID_GUEST, and LAUNCH_START / RECEIVE_START create a guest.

// Test helpers outside #[test] functions unwrap too: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{export, fresh, owner_session, ram, Exported};
use sev_proto::abi::{GuestState, Policy, Status};
use sev_proto::secret::build_launch_secret;
use sev_proto::session::{OwnerSession, TransportKeys};
use sev_psp::memory::VecBacking;
use sev_psp::rng::seeded_rng;
use sev_psp::{FwError, Platform};

use GuestState as S;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Activate,
    Deactivate,
    Decommission,
    GuestStatus,
    LaunchUpdateData,
    LaunchUpdateVmsa,
    LaunchMeasure,
    LaunchSecret,
    LaunchFinish,
    Attestation,
    DbgDecrypt,
    DbgEncrypt,
    SendStart,
    SendUpdateData,
    SendUpdateVmsa,
    SendFinish,
    SendCancel,
    ReceiveUpdateData,
    ReceiveUpdateVmsa,
    ReceiveFinish,
}

const ALL: [Cmd; 20] = [
    Cmd::Activate,
    Cmd::Deactivate,
    Cmd::Decommission,
    Cmd::GuestStatus,
    Cmd::LaunchUpdateData,
    Cmd::LaunchUpdateVmsa,
    Cmd::LaunchMeasure,
    Cmd::LaunchSecret,
    Cmd::LaunchFinish,
    Cmd::Attestation,
    Cmd::DbgDecrypt,
    Cmd::DbgEncrypt,
    Cmd::SendStart,
    Cmd::SendUpdateData,
    Cmd::SendUpdateVmsa,
    Cmd::SendFinish,
    Cmd::SendCancel,
    Cmd::ReceiveUpdateData,
    Cmd::ReceiveUpdateVmsa,
    Cmd::ReceiveFinish,
];

/// docs/protocol/abi.md#guest-states, "Legal guest commands" per state (including the
/// starred reconstructions: DBG_* in LUPDATE/LSECRET, ATTESTATION in
/// LSECRET, GUEST_STATUS in SENT).
fn legal(state: GuestState) -> &'static [Cmd] {
    use Cmd::*;
    match state {
        S::Uninit => &[],
        S::LaunchUpdate => &[
            LaunchUpdateData,
            LaunchUpdateVmsa,
            LaunchMeasure,
            Activate,
            Deactivate,
            Decommission,
            GuestStatus,
            DbgDecrypt,
            DbgEncrypt,
        ],
        S::LaunchSecret => &[
            LaunchSecret,
            LaunchFinish,
            Activate,
            Deactivate,
            Decommission,
            GuestStatus,
            DbgDecrypt,
            DbgEncrypt,
            Attestation,
        ],
        S::Running => &[
            SendStart,
            Activate,
            Deactivate,
            Decommission,
            GuestStatus,
            Attestation,
            DbgDecrypt,
            DbgEncrypt,
        ],
        S::SendUpdate => &[
            SendUpdateData,
            SendUpdateVmsa,
            SendFinish,
            SendCancel,
            Activate,
            Deactivate,
            Decommission,
            GuestStatus,
        ],
        S::ReceiveUpdate => &[
            ReceiveUpdateData,
            ReceiveUpdateVmsa,
            ReceiveFinish,
            Activate,
            Deactivate,
            Decommission,
            GuestStatus,
        ],
        S::Sent => &[Deactivate, Decommission, GuestStatus],
    }
}

/// SEV-ES guests (so the VMSA commands pass the policy check), debugging
/// allowed, any destination.
const POLICY: u32 = Policy::ES;

/// A guest brought into some state, with what valid arguments need.
struct Cell {
    handle: u32,
    asid: u32,
    mem: VecBacking,
    keys: TransportKeys,
    measurement: [u8; 32],
    /// For a guest in RUPDATE: the sending guest and its memory.
    source: Option<(u32, VecBacking)>,
}

struct Ctx {
    p: Platform,
    own: Exported,
    seed: u64,
    /// The session the last SEND_START made (to this platform).
    last_session: [u8; 0x80],
}

impl Ctx {
    fn launched(&mut self, asid: u32) -> (u32, OwnerSession, VecBacking) {
        self.seed += 1;
        let (owner, godh) = owner_session(&self.own, Policy::from_bits(POLICY), self.seed);
        let h = self
            .p
            .launch_start(
                0,
                Policy::from_bits(POLICY),
                Some(&godh),
                Some(&owner.session_buffer().to_bytes()),
            )
            .unwrap();
        self.p.activate(h, asid).unwrap();
        (h, owner, ram(0x10_0000))
    }

    /// A guest of this platform in `state` (sending to this same platform
    /// for SUPDATE/SENT/RUPDATE).
    fn guest_in(&mut self, state: GuestState) -> Cell {
        if state == S::ReceiveUpdate {
            let src = self.guest_in(S::SendUpdate);
            let source_pdh = self.own.pdh.clone();
            let session = self.last_session;
            let h = self
                .p
                .receive_start(0, Policy::from_bits(POLICY), &source_pdh, &session)
                .unwrap();
            self.p.activate(h, 2).unwrap();
            return Cell {
                handle: h,
                asid: 2,
                mem: ram(0x10_0000),
                keys: TransportKeys::random(&mut seeded_rng(1)),
                measurement: [0; 32],
                source: Some((src.handle, src.mem)),
            };
        }
        let (h, owner, mem) = self.launched(1);
        let mut cell = Cell {
            handle: h,
            asid: 1,
            mem,
            keys: owner.keys().clone(),
            measurement: [0; 32],
            source: None,
        };
        if state == S::LaunchUpdate {
            return cell;
        }
        let mut blob = [0u8; 48];
        self.p.launch_measure(h, &mut blob).unwrap();
        cell.measurement.copy_from_slice(&blob[..32]);
        if state == S::LaunchSecret {
            return cell;
        }
        self.p.launch_finish(h).unwrap();
        if state == S::Running {
            return cell;
        }
        let mut session = [0u8; 0x80];
        self.p
            .send_start(
                h,
                &self.own.pdh,
                &self.own.chain,
                &self.own.amd_certs(),
                &mut session,
            )
            .unwrap();
        self.last_session = session;
        if state == S::SendUpdate {
            return cell;
        }
        assert_eq!(state, S::Sent);
        self.p.send_finish(h).unwrap();
        cell
    }
}

impl std::ops::Deref for Ctx {
    type Target = Platform;
    fn deref(&self) -> &Platform {
        &self.p
    }
}

fn status<T>(r: Result<T, FwError>) -> Status {
    match r {
        Ok(_) => Status::Success,
        Err(e) => e.status,
    }
}

/// Runs `cmd` on the cell's guest with valid arguments.
fn run(ctx: &Ctx, cell: &Cell, cmd: Cmd) -> Status {
    let (p, h, mem) = (&ctx.p, cell.handle, &cell.mem);
    let mut hdr = [0u8; 0x34];
    let mut page = vec![0u8; 4096];
    match cmd {
        Cmd::Activate => status(p.activate(h, cell.asid)),
        Cmd::Deactivate => status(p.deactivate(h)),
        Cmd::Decommission => {
            p.deactivate(h).unwrap();
            status(p.decommission(h))
        }
        Cmd::GuestStatus => status(p.guest_status(h)),
        Cmd::LaunchUpdateData => status(p.launch_update_data(h, mem, 0x1000, 16)),
        Cmd::LaunchUpdateVmsa => status(p.launch_update_vmsa(h, mem, 0x4000, 4096)),
        Cmd::LaunchMeasure => status(p.launch_measure(h, &mut [0; 48])),
        Cmd::LaunchSecret => {
            let (hd, tr) =
                build_launch_secret(&cell.keys, &[5; 16], &[0xee; 16], Some(&cell.measurement));
            status(p.launch_secret(h, mem, &hd.to_bytes(), 0x8000, 16, &tr))
        }
        Cmd::LaunchFinish => status(p.launch_finish(h)),
        Cmd::Attestation => status(p.attestation(h, &[0; 16], &mut [0; 0xd0])),
        Cmd::DbgDecrypt => status(p.dbg_decrypt(h, mem, 0x1000, &mut [0; 16])),
        Cmd::DbgEncrypt => status(p.dbg_encrypt(h, mem, &[1; 16], 0x1000)),
        Cmd::SendStart => status(p.send_start(
            h,
            &ctx.own.pdh,
            &ctx.own.chain,
            &ctx.own.amd_certs(),
            &mut [0; 0x80],
        )),
        Cmd::SendUpdateData => status(p.send_update_data(h, mem, 0x1000, 16, &mut hdr, &mut page)),
        Cmd::SendUpdateVmsa => {
            status(p.send_update_vmsa(h, mem, 0x4000, 4096, &mut hdr, &mut page))
        }
        Cmd::SendFinish => status(p.send_finish(h)),
        Cmd::SendCancel => status(p.send_cancel(h)),
        Cmd::ReceiveUpdateData => {
            let mut trans = vec![0u8; 16];
            if let Some((s, smem)) = &cell.source {
                p.send_update_data(*s, smem, 0x1000, 16, &mut hdr, &mut trans)
                    .unwrap();
            }
            status(p.receive_update_data(h, mem, &hdr, 0x1000, 16, &trans))
        }
        Cmd::ReceiveUpdateVmsa => {
            if let Some((s, smem)) = &cell.source {
                p.send_update_vmsa(*s, smem, 0x4000, 4096, &mut hdr, &mut page)
                    .unwrap();
            }
            status(p.receive_update_vmsa(h, mem, &hdr, 0x4000, 4096, &page))
        }
        Cmd::ReceiveFinish => status(p.receive_finish(h)),
    }
}

#[test]
fn every_guest_command_in_every_guest_state() {
    let f = fresh(common::Host::A, 1);
    f.p.init(true).unwrap();
    let own = export(&f.p);
    let mut ctx = Ctx {
        p: f.p,
        own,
        seed: 100,
        last_session: [0; 0x80],
    };
    let mut checked = 0;
    for state in GuestState::ALL {
        if state == S::Uninit {
            continue;
        }
        for cmd in ALL {
            let cell = ctx.guest_in(state);
            assert_eq!(ctx.guest_status(cell.handle).unwrap().state, state);
            let allowed = legal(state).contains(&cmd);
            let got = run(&ctx, &cell, cmd);
            if allowed {
                assert_eq!(got, Status::Success, "{cmd:?} in {}", state.fw_name());
            } else {
                assert_eq!(
                    got,
                    Status::InvalidGuestState,
                    "{cmd:?} in {}",
                    state.fw_name()
                );
                assert_eq!(ctx.guest_status(cell.handle).unwrap().state, state);
            }
            checked += 1;
            // Clean up every guest (ASIDs are scarce: four SEV-ES ASIDs).
            let handles: Vec<u32> = [Some(cell.handle), cell.source.as_ref().map(|s| s.0)]
                .into_iter()
                .flatten()
                .collect();
            for h in handles {
                let _ = ctx.deactivate(h);
                let _ = ctx.decommission(h);
            }
            ctx.df_flush().unwrap();
            assert_eq!(ctx.platform_status().unwrap().guest_count, 0);
        }
    }
    assert_eq!(checked, 6 * ALL.len());
}

#[test]
fn uninit_has_no_context() {
    let f = fresh(common::Host::A, 2);
    f.p.init(true).unwrap();
    let own = export(&f.p);
    let mut ctx = Ctx {
        p: f.p,
        own,
        seed: 200,
        last_session: [0; 0x80],
    };
    // A handle no guest has: every command answers INVALID_GUEST.
    let cell = Cell {
        handle: 0xdead,
        asid: 1,
        mem: ram(0x10_0000),
        keys: TransportKeys::random(&mut seeded_rng(2)),
        measurement: [0; 32],
        source: None,
    };
    for cmd in ALL {
        if cmd == Cmd::Decommission {
            assert_eq!(status(ctx.decommission(0xdead)), Status::InvalidGuest);
            continue;
        }
        assert_eq!(run(&ctx, &cell, cmd), Status::InvalidGuest, "{cmd:?}");
    }
    // LAUNCH_START and RECEIVE_START create guests from UNINIT.
    let launched = ctx.guest_in(S::LaunchUpdate);
    assert_eq!(
        ctx.guest_status(launched.handle).unwrap().state,
        S::LaunchUpdate
    );
    ctx.deactivate(launched.handle).unwrap();
    ctx.df_flush().unwrap();
    let received = ctx.guest_in(S::ReceiveUpdate);
    assert_eq!(
        ctx.guest_status(received.handle).unwrap().state,
        S::ReceiveUpdate
    );
}
