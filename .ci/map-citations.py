#!/usr/bin/env python3
"""Rewrite code comments that cite the old external protocol notes so they cite docs/ instead.

Until issue 10 the code cited "SEV-REFERENCE x.y", "SEV-REFERENCE.md section x.y",
"SEV-REFERENCE 12 #n", "SEV-REFERENCE 13, "Guest context"" and DESIGN.md "Section": notes that were
never in the repository. This script maps every such citation (and the bare "section x.y" / "12 #n"
follow-ups that refer to the same notes) to a file and anchor under docs/, in one syntax:

    docs/protocol/session.md#kdf

It only touches comment lines (`//`, `///`, `//!`) of .rs files under crates/ and fuzz/, re-wraps a
comment line that the longer citation pushed past 100 columns, and is idempotent: run it again after
merging branches that still carry old citations.

    python3 .ci/map-citations.py          # rewrite in place, print what changed
    python3 .ci/map-citations.py --check  # exit 1 if anything would change

`.ci/check-docs` then verifies that every cited docs/ path and anchor exists.
"""

import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MAX_WIDTH = 100

P = "docs/protocol/"
# Old section number -> new file#anchor. The anchors are defined in docs/ (headings or <a id>).
SECTIONS = {
    "": P + "README.md",
    "0": P + "README.md#conventions",
    "1": P + "abi.md",
    "1.1": P + "abi.md#policy",
    "1.2": P + "abi.md#status-codes",
    "1.3": P + "abi.md#platform-states",
    "1.4": P + "abi.md#guest-states",
    "2": P + "commands.md",
    "2.1": P + "commands.md#command-ids",
    "2.2": P + "commands.md#mailbox",
    "2.3": P + "commands.md#buffers",
    "3": P + "linux.md",
    "3.1": P + "linux.md#dev-sev",
    "3.2": P + "linux.md#kvm",
    "3.3": P + "linux.md#launch-sequence",
    "4": P + "certificates.md",
    "4.1": P + "certificates.md#sev-certificate",
    "4.2": P + "certificates.md#usage-and-algorithms",
    "4.3": P + "certificates.md#amd-ca-certificate",
    "4.4": P + "certificates.md#chain-of-trust",
    "5": P + "session.md",
    "5.1": P + "session.md#key-agreement",
    "5.2": P + "session.md#kdf",
    "5.3": P + "session.md#wrapping",
    "5.4": P + "session.md#firmware-checks",
    "5.5": P + "session.md#session-buffer",
    "6": P + "measurement.md",
    "6.1": P + "measurement.md#launch-measure",
    "6.2": P + "measurement.md#launch-digest",
    "6.3": P + "measurement.md#attestation-report",
    # The old notes numbered the attestation report 6.4 in one cross-reference.
    "6.4": P + "measurement.md#attestation-report",
    "7": P + "secret.md",
    "7.1": P + "secret.md#packet-header",
    "7.2": P + "secret.md#launch-secret",
    "7.3": P + "secret.md#secret-table",
    "7.4": P + "secret.md#secret-area",
    "8": P + "migration.md",
    "8.1": P + "migration.md#flow",
    "8.2": P + "migration.md#send-start",
    "8.3": P + "migration.md#transport-packets",
    "8.4": P + "memory.md#debug-commands",
    "9": P + "memory.md",
    "9.1": P + "memory.md#cpuid",
    "9.2": P + "memory.md#cbitpos",
    "9.3": P + "memory.md#private-and-shared",
    "9.4": P + "memory.md#cipher",
    "10": P + "ovmf.md",
    "10.1": P + "ovmf.md#footer-table",
    "10.2": P + "ovmf.md#kernel-hashes",
    "10.3": P + "ovmf.md#sev-digest",
    "10.4": P + "ovmf.md#seves-digest",
    "11": P + "test-vectors.md",
    "11.1": P + "test-vectors.md#kdf-and-session",
    "11.2": P + "test-vectors.md#ecdh-session",
    "11.3": P + "test-vectors.md#launch-measure",
    "11.4": P + "test-vectors.md#sevctl-measurement",
    "11.5": P + "test-vectors.md#sevctl-secret",
    "11.6": P + "test-vectors.md#launch-digests",
    "11.7": P + "test-vectors.md#chain-checks",
    "12": P + "choices.md",
    "13": P + "emulator.md",
}
# "SEV-REFERENCE 13, "<title>"".
SECTION_13 = {
    "platform context": P + "emulator.md#platform-context",
    "guest context": P + "emulator.md#guest-context",
    "determinism for tests": P + "emulator.md#determinism",
}
# DESIGN.md "<title>".
DESIGN = {
    "": "docs/architecture.md",
    "memory-encryption model": "docs/architecture.md#memory-encryption-model",
    "the emulated platform": "docs/architecture.md#the-emulated-platform",
    "snapshot and migration": "docs/architecture.md#migration",
    "the launch": "docs/architecture.md#launch",
}


def choice(n):
    """Section 12 item n: an UNCERTAIN point and what the project chose."""
    return P + "choices.md#u" + n


# A continuation between two list items may cross a comment line break.
BR = r"(?:\s*\n\s*//[/!]?)?\s*"
NUM = r"\d+(?:\.\d+)?"
ITEM = NUM + r"(?:\s+step\s+\d+)?(?:" + BR + r"#\d+(?:" + BR + r",\s*#\d+)*)?" + r'(?:,' + BR + r'"(?:[^"\n]|\n\s*//[/!]?)+")?'
LIST = ITEM + r"(?:" + BR + r"(?:,|and|/)" + BR + r"(?:" + ITEM + r"|#\d+))*"
OLD_REF = re.compile(
    r"`?(?:\.\./shared/)?SEV-REFERENCE(?:\.md)?`?"
    r"(?:(?P<sep>" + BR + r"(?:sections?|section|§)?" + BR + r")(?P<list>" + LIST + r"))?"
)
# Follow-ups that cite the old notes without naming them ("(section 8.3)", "(12 #9)").
BARE_SECTION = re.compile(r"(?<!IEEE 1619 )(?<!RFC \d{4} )\bsections? (?P<list>" + LIST + r")")
BARE_CHOICE = re.compile(r"\b12 #(?P<n>\d+)")
DESIGN_REF = re.compile(r'DESIGN\.md(?:(?P<sep>' + BR + r')"(?P<title>[^"]+)")?')


def expand(lst):
    """The targets one reference list names, in order, without repeats."""
    out = []
    last_section = None
    # Tokens: a number, "#n", or a quoted title; separators are dropped.
    for tok in re.findall(r'step\s+\d+|#\d+|' + NUM + r'|"[^"]+"', lst):
        if tok.startswith("step"):
            out[-1] += " (" + " ".join(tok.split()) + ")"
            continue
        if tok.startswith("#"):
            out.append(choice(tok[1:]))
            continue
        if tok.startswith('"'):
            title = " ".join(re.sub(r"\n\s*//[/!]?", " ", tok.strip('"')).split()).lower()
            if last_section == "13" and title in SECTION_13:
                if out and out[-1] == SECTIONS["13"]:
                    out.pop()
                out.append(SECTION_13[title])
            elif out:
                out[-1] += ', "' + " ".join(tok.strip('"').split()) + '"'
            continue
        last_section = tok
        if tok == "12" and re.search(r"12" + BR + r"#", lst):
            continue  # "12 #n": the items carry the anchor
        target = SECTIONS.get(tok)
        if target is None:
            raise SystemExit(f"map-citations: no docs/ target for old section {tok!r} in {lst!r}")
        out.append(target)
    seen = []
    for t in out:
        if t not in seen:
            seen.append(t)
    return seen


def join(targets):
    return ", ".join(targets)


def rewrite_comment_text(text):
    text = OLD_REF.sub(lambda m: join(expand(m.group("list") or "") or [SECTIONS[""]]), text)

    def design(m):
        title = " ".join(re.sub(r"\n\s*//[/!]?", " ", m.group("title") or "").split()).lower()
        if title not in DESIGN:
            raise SystemExit(f"map-citations: no docs/ target for DESIGN.md {title!r}")
        return DESIGN[title]

    text = DESIGN_REF.sub(design, text)
    text = text.replace("launch flow of docs/architecture.md ", "launch flow of docs/architecture.md#launch ")
    return text


def rewrite_followups(line):
    """Bare "section x.y" and "12 #n" in a comment line that cites no docs/ file there yet."""
    if "//" not in line:
        return line
    code, _, comment = line.partition("//")
    comment = BARE_SECTION.sub(lambda m: join(expand(m.group("list"))), comment)
    comment = BARE_CHOICE.sub(lambda m: choice(m.group("n")), comment)
    return code + "//" + comment


COMMENT = re.compile(r"^(\s*//[/!]?\s?)(.*)$")
LIST_ITEM = re.compile(r"(\*|-|\d+\.)\s+")


def rewrap(lines):
    """Re-wrap comment lines that a docs/ citation pushed past MAX_WIDTH into the next line."""
    carried = set()
    fence = False  # inside a ``` block of a doc comment: never re-wrapped
    i = 0
    while i < len(lines):
        line = lines[i]
        m = COMMENT.match(line)
        if m and m.group(2).lstrip().startswith("```"):
            fence = not fence
        wide = m and len(line) > MAX_WIDTH and ("docs/" in line or i in carried)
        if wide and not fence and "```" not in line and not m.group(2).startswith("|"):
            prefix, body = m.group(1), m.group(2)
            words = body.split(" ")
            keep = []
            for w in words:
                if keep and len(prefix) + len(" ".join(keep + [w])) > MAX_WIDTH:
                    break
                keep.append(w)
            rest = " ".join(words[len(keep):]).strip()
            if rest:
                lines[i] = (prefix + " ".join(keep)).rstrip()
                nxt = COMMENT.match(lines[i + 1]) if i + 1 < len(lines) else None
                joinable = (
                    nxt
                    and nxt.group(1) == prefix
                    and nxt.group(2).strip()
                    and not LIST_ITEM.match(nxt.group(2))
                    and not nxt.group(2).startswith(("```", "|", "#"))
                )
                if joinable:
                    lines[i + 1] = prefix + rest + " " + nxt.group(2)
                else:
                    lm = LIST_ITEM.match(body)
                    indent = " " * len(lm.group(0)) if lm else ""
                    lines.insert(i + 1, prefix + indent + rest)
                carried.add(i + 1)
        i += 1
    return lines


def process(path):
    with open(path, encoding="utf-8") as f:
        old = f.read()
    for m in re.finditer(r"SEV-REFERENCE|SNP-REFERENCE|DESIGN\.md", old):
        line_start = old.rfind("\n", 0, m.start()) + 1
        if "//" not in old[line_start:m.start()]:
            raise SystemExit(f"map-citations: {path}: citation outside a comment: {old[line_start:m.end()]!r}")
    if "SNP-REFERENCE" in old:
        raise SystemExit(f"map-citations: {path}: cites SNP-REFERENCE: no SNP notes in docs/ yet, map it by hand")
    text = old.replace("(not in SEV-REFERENCE)", "(not in the protocol notes, SEV-REFERENCE)")
    # Citations may span a comment line break (the list continues only through comment markers).
    text = rewrite_comment_text(text)
    lines = [rewrite_followups(l) if OLDISH.search(l) else l for l in text.split("\n")]
    return old, "\n".join(rewrap(lines))


# Lines that may carry a bare follow-up citation of the old notes.
OLDISH = re.compile(r"//.*(\bsections? \d+\.\d+|\b12 #\d+)")


def rust_files():
    for top in ("crates", "fuzz"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d not in ("target", "corpus", "artifacts")]
            for name in filenames:
                if name.endswith(".rs"):
                    yield os.path.join(dirpath, name)


def main():
    check = "--check" in sys.argv[1:]
    touched = 0
    results = [(path, *process(path)) for path in sorted(rust_files())]
    for path, old, new in results:
        if old != new:
            touched += 1
            rel = os.path.relpath(path, ROOT)
            if check:
                print(f"{rel}: old citations left")
            else:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
                print(f"rewrote {rel}")
    if check and touched:
        sys.exit(1)
    print(f"map-citations: {touched} file(s) {'to rewrite' if check else 'rewritten'}")


if __name__ == "__main__":
    main()
