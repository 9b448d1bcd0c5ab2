//! QEMU's own Python QMP library (`qemu.qmp`) drives the attested launch
//! against sevm's socket: query-sev, query-sev-launch-measure,
//! sev-inject-launch-secret (and a refused one), cont, the SHUTDOWN event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

const SCRIPT: &str = r#"
import asyncio, json, sys
from qemu.qmp import QMPClient, ExecuteError

async def main(sock):
    qmp = QMPClient('sevm-test')
    await qmp.connect(sock)
    status = await qmp.execute('query-status')
    sev = await qmp.execute('query-sev')
    measure = await qmp.execute('query-sev-launch-measure')
    caps = await qmp.execute('query-sev-capabilities')
    print(json.dumps({'status': status, 'sev': sev, 'measure': measure['data'],
                      'cbitpos': caps['cbitpos']}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    packet = json.loads(line)
    try:
        await qmp.execute('sev-inject-launch-secret',
                          {'packet-header': 'AAAA', 'secret': packet['secret']})
        refused = None
    except ExecuteError as e:
        refused = str(e)
    await qmp.execute('sev-inject-launch-secret',
                      {'packet-header': packet['header'], 'secret': packet['secret']})
    await qmp.execute('cont')
    events = []
    async for event in qmp.events:
        events.append(event['event'])
        if event['event'] == 'SHUTDOWN':
            shutdown = event['data']
            break
    try:
        await qmp.disconnect()
    except Exception:
        pass
    print(json.dumps({'refused': refused, 'events': events, 'shutdown': shutdown}), flush=True)

asyncio.run(main(sys.argv[1]))
"#;

both_backends!(
    qemu_qmp_launch => qemu_qmp_library_drives_the_attested_launch,
    qemu_qmp_library_drives_the_attested_launch_hardware_under_launcher,
    emulated_without_kvm
);

fn qemu_qmp_launch() {
    const TEST: &str = "qemu_qmp_library_drives_the_attested_launch";
    match Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        _ => {
            sevm_testutil::skip(
                TEST,
                "python3 with qemu.qmp not available (pip install qemu.qmp)",
            );
            return;
        }
    }
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let (pdh, chain) = export_pdh(&platform);
    let owner = owner(d, &pdh, &chain, &amd_chain(&platform), 0x1);
    let sock = d.join("qmp.sock");
    let mut vm = Sevm::spawn(sev_args(
        &fw,
        16,
        &sev_object(&platform, 0x1, Some(&owner), ""),
        Some(&sock),
    ));
    assert!(vm.wait_for_stderr("QMP listening on"));

    let script = d.join("drive.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut py = Command::new("python3")
        .arg(&script)
        .arg(&sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["status"]["status"], "prelaunch");
    assert_eq!(first["sev"]["state"], "launch-secret");
    assert_eq!(first["sev"]["emulated"], !hardware());
    assert_eq!(first["cbitpos"], expected_cbitpos());
    let blob = unb64(first["measure"].as_str().unwrap());
    let image = std::fs::read(&fw).unwrap();
    let ld = sev_proto::ovmf::sev_launch_digest(&image, None).unwrap();
    verify_measurement(&owner, &first["sev"], &blob, &ld).unwrap();

    let guid = "e6f5a162-d67f-4750-a67c-5d065f2a9910";
    let table = sevm_demo::secret_table(&[(guid.parse().unwrap(), b"from qemu.qmp")]);
    let (hdr, secret) = secret_packet(&owner, &blob, &table);
    let mut stdin = py.stdin.take().unwrap();
    writeln!(stdin, "{}", json!({"header": hdr, "secret": secret})).unwrap();
    drop(stdin);
    line.clear();
    out.read_line(&mut line).unwrap();
    let second: Value = serde_json::from_str(&line).unwrap();
    assert!(
        second["refused"]
            .as_str()
            .unwrap()
            .contains("packet-header is 3 bytes"),
        "{second}"
    );
    assert_eq!(second["events"], json!(["RESUME", "SHUTDOWN"]));
    assert_eq!(
        second["shutdown"],
        json!({"guest": true, "reason": "guest-shutdown"})
    );
    assert!(py.wait().unwrap().success());

    let st = vm.wait();
    let serial = vm.stdout_text();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(
        serial.contains(&format!("secret {guid}: from qemu.qmp")),
        "{serial}"
    );
}
